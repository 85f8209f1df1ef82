"""sage-edge fuse IR VIS -o OUT"""
from __future__ import annotations

from pathlib import Path

import click
import cv2

from sage_edge.commands.options import backend_option, border_pad_option, model_option
from sage_edge.errors import SageEdgeError
from sage_edge.imageio import check_writable_extension, read_ir, read_visible, write_image
from sage_edge.pairs import resolve_pairs
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.zoo import resolve_model_for_backend


def load_pair(ir_path: Path, vis_path: Path, resize: bool):
    """Decode one pair; with ``resize``, IR is resized to the visible size."""
    ir, vis = read_ir(ir_path), read_visible(vis_path)
    if resize and ir.shape[:2] != vis.shape[:2]:
        ir = cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_LINEAR)
    return ir, vis


@click.command()
@click.argument("ir", type=click.Path(path_type=Path))
@click.argument("vis", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output image (.png/.jpg), or a directory when fusing directories.")
@model_option
@backend_option
@border_pad_option
@click.option("--resize", is_flag=True, help="Resize IR to the visible size instead of failing on a mismatch.")
@click.option("--ext", default=".png", show_default=True, help="Output extension for directory outputs.")
def fuse(ir: Path, vis: Path | None, output: Path, model: str, backend: str, border_pad: int | None, resize: bool,
         ext: str) -> None:
    """Fuse an IR/visible pair, or directories of pairs matched by file stem.

    IR and VIS are two image files, two directories (ir/ and vis/, or SAGE's Ir/ and Vis/),
    or VIS is omitted and IR is a dataset folder holding ir/ and vis/.
    """
    pairs = resolve_pairs(ir, vis)
    single = len(pairs) == 1 and not ir.is_dir()
    if single:
        check_writable_extension(output)
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            raise SageEdgeError(f"{output}: is a file; give a directory for directory inputs")
        ext = ext if ext.startswith(".") else f".{ext}"
        targets = [output / f"{pair.stem}{ext}" for pair in pairs]
        check_writable_extension(targets[0])
    model_path = resolve_model_for_backend(model, backend)
    with open_backend(model_path, backend, border_pad=border_pad) as engine:
        fuser = Fuser(engine)
        from tqdm import tqdm

        for pair, target in tqdm(list(zip(pairs, targets)), desc="fuse", unit="pair", disable=single):
            ir_image, vis_image = load_pair(pair.ir, pair.vis, resize)
            try:
                fused = fuser.fuse(ir_image, vis_image)
            except SageEdgeError as exc:
                raise SageEdgeError(f"{pair.ir.name}: {exc}") from None
            write_image(target, fused)
    if single:
        click.echo(f"wrote {output}")
    else:
        click.echo(f"wrote {len(pairs)} fused images to {output}/")
