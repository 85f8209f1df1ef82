"""sage-edge fuse IR VIS -o OUT"""
from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np

from sage_edge.commands.options import backend_option, model_option
from sage_edge.errors import SageEdgeError
from sage_edge.imageio import check_writable_extension, read_ir, read_visible, write_image
from sage_edge.pairs import resolve_pairs
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.zoo import resolve_model_for_backend


def register_pair(ir, vis, search: float):
    """``--register auto``: refine the pair's alignment within ``search`` x width; returns (IR on the visible
    grid, one line describing the correction). A pair that cannot be registered is left as it is."""
    from sage_edge.runtime.auto_registration import corner_distance, estimate_homography
    from sage_edge.runtime.registration import describe_correction

    size = (vis.shape[1], vis.shape[0])
    sx, sy = size[0] / ir.shape[1], size[1] / ir.shape[0]  # the dataset's alignment: a plain resize (cv2.resize)
    identity = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    reach = search * size[0]
    try:
        estimate = estimate_homography(ir, vis, initial=identity, search_px=reach)
    except SageEdgeError as exc:
        return None, f"registration: kept as it is ({exc})"
    if corner_distance(estimate.matrix, identity, (ir.shape[1], ir.shape[0])) > 2 * reach:
        return None, (f"registration: kept as it is (the correction found is larger than the search range "
                      f"{reach:.0f} px; raise --register-range if the pair is that far off)")
    correction = describe_correction(estimate.matrix @ np.linalg.inv(identity), size)
    warped = cv2.warpPerspective(ir, estimate.matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    dx, dy = correction["shift_px"]
    return warped, (f"registration: shift ({dx:+.1f}, {dy:+.1f}) px, rotation {correction['rotation_deg']:+.2f} deg, "
                    f"scale {correction['scale']:.4f}; corners moved up to {correction['corner_shift_px']:.1f} px "
                    f"(confidence {estimate.confidence:.2f})")


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
@click.option("--resize", is_flag=True, help="Resize IR to the visible size instead of failing on a mismatch.")
@click.option("--ext", default=".png", show_default=True, help="Output extension for directory outputs.")
@click.option("--homography", type=click.Path(path_type=Path),
              help="IR->visible homography JSON from `sage-edge calibrate` (a rig's pairs): IR is warped onto the "
                   "visible image and both are cropped to the common field, as `run --homography`.")
@click.option("--no-crop", is_flag=True, help="With --homography: keep the whole visible image (no crop).")
@click.option("--register", "register", type=click.Choice(["none", "auto"]), default="none", show_default=True,
              help="auto: refine each pair's alignment (IR warped onto the visible image) and print the correction.")
@click.option("--register-range", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.03, show_default=True,
              help="--register auto: largest correction searched, as a fraction of the image width.")
def fuse(ir: Path, vis: Path | None, output: Path, model: str, backend: str, resize: bool, ext: str,
         homography: Path | None, no_crop: bool, register: str, register_range: float) -> None:
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
    registration = None
    if homography is not None:
        from sage_edge.runtime.registration import Registration, load_homography

        registration = Registration(load_homography(homography), crop=not no_crop)
    model_path = resolve_model_for_backend(model, backend)
    with open_backend(model_path, backend) as engine:
        fuser = Fuser(engine)
        from tqdm import tqdm

        for pair, target in tqdm(list(zip(pairs, targets)), desc="fuse", unit="pair", disable=single):
            ir_image, vis_image = load_pair(pair.ir, pair.vis, resize and register == "none" and registration is None)
            if registration is not None:
                ir_image, vis_image = registration(ir_image, vis_image)
            if register == "auto":
                if ir_image.shape[:2] != vis_image.shape[:2] and not resize:
                    raise SageEdgeError(f"{pair.ir.name}: IR is {ir_image.shape[1]}x{ir_image.shape[0]} but visible is "
                                        f"{vis_image.shape[1]}x{vis_image.shape[0]}; add --resize")
                warped, note = register_pair(ir_image, vis_image, register_range)
                if warped is None and ir_image.shape[:2] != vis_image.shape[:2]:
                    warped = cv2.resize(ir_image, (vis_image.shape[1], vis_image.shape[0]), interpolation=cv2.INTER_LINEAR)
                ir_image = ir_image if warped is None else warped
                (click.echo if single else tqdm.write)(f"{pair.stem}: {note}")
            try:
                fused = fuser.fuse(ir_image, vis_image)
            except SageEdgeError as exc:
                raise SageEdgeError(f"{pair.ir.name}: {exc}") from None
            write_image(target, fused)
    if single:
        click.echo(f"wrote {output}")
    else:
        click.echo(f"wrote {len(pairs)} fused images to {output}/")
