"""sage-edge fuse IR VIS -o OUT  |  sage-edge fuse --demo -o OUT"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import cv2
import numpy as np

from sage_edge.atomic import check_writable, check_writable_dir
from sage_edge.commands.options import backend_option, border_pad_option, model_option
from sage_edge.errors import SageEdgeError
from sage_edge.imageio import check_writable_extension, read_pair, write_image
from sage_edge.pairs import resolve_pairs, unpaired_note
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.zoo import resolve_model_for_backend


def load_pair(ir_path: Path, vis_path: Path, resize: bool):
    """Decode one pair (checked not to be swapped); with ``resize``, IR is resized to the visible size."""
    ir, vis = read_pair(ir_path, vis_path)
    if resize and ir.shape[:2] != vis.shape[:2]:
        ir = cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_LINEAR)
    return ir, vis


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


@click.command()
@click.argument("ir", type=click.Path(path_type=Path), required=False)
@click.argument("vis", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output image (.png/.jpg), or a directory when fusing directories.")
@click.option("--demo", is_flag=True,
              help="Fuse the demo pair shipped in the package (MSRS 00858N, a night street; MIT) instead of IR VIS.")
@model_option
@backend_option
@border_pad_option
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
def fuse(ir: Path | None, vis: Path | None, output: Path, demo: bool, model: str, backend: str,
         border_pad: int | None, resize: bool, ext: str, homography: Path | None, no_crop: bool, register: str,
         register_range: float) -> None:
    """Fuse an IR/visible pair, or directories of pairs matched by file stem.

    IR and VIS are two image files, two directories (ir/ and vis/, or SAGE's Ir/ and Vis/),
    or VIS is omitted and IR is a dataset folder holding ir/ and vis/. Files without a partner
    are listed and skipped; in a directory, a pair that cannot be read is reported and the
    others are still fused (the exit status is then 1).

    \b
    Try it with no data of your own:
      sage-edge fuse --demo -o fused.png
    """
    if demo:
        if ir is not None or vis is not None:
            raise SageEdgeError("--demo fuses the bundled pair: give either IR VIS or --demo, not both")
        from sage_edge.samples import demo_pair

        ir, vis = demo_pair()
    elif ir is None:
        raise SageEdgeError("give an IR and a visible image (sage-edge fuse IR VIS -o fused.png), "
                            "or try the bundled pair: sage-edge fuse --demo -o fused.png")
    pairs = resolve_pairs(ir, vis)
    note = unpaired_note(pairs)
    if note:
        click.echo(note, err=True)
    single = len(pairs) == 1 and not ir.is_dir()
    if single:
        check_writable_extension(output)
        check_writable(output)
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            raise SageEdgeError(f"{output}: is a file; give a directory for directory inputs")
        ext = ext if ext.startswith(".") else f".{ext}"
        targets = [output / f"{pair.stem}{ext}" for pair in pairs]
        check_writable_extension(targets[0])
        check_writable_dir(output)
    registration = None
    if homography is not None:
        from sage_edge.runtime.registration import Registration, load_homography

        registration = Registration(load_homography(homography), crop=not no_crop)
    model_path = resolve_model_for_backend(model, backend)
    failed: list[str] = []
    with open_backend(model_path, backend, border_pad=border_pad) as engine:
        fuser = Fuser(engine)
        from tqdm import tqdm

        for pair, target in tqdm(list(zip(pairs, targets)), desc="fuse", unit="pair", disable=single):
            try:
                plain_resize = resize and register == "none" and registration is None
                ir_image, vis_image = load_pair(pair.ir, pair.vis, plain_resize)
                if registration is not None:
                    ir_image, vis_image = registration(ir_image, vis_image)
                if register == "auto":
                    if ir_image.shape[:2] != vis_image.shape[:2] and not resize:
                        raise SageEdgeError(f"{pair.ir.name}: IR is {ir_image.shape[1]}x{ir_image.shape[0]} but "
                                            f"visible is {vis_image.shape[1]}x{vis_image.shape[0]}; add --resize")
                    warped, correction = register_pair(ir_image, vis_image, register_range)
                    if warped is None and ir_image.shape[:2] != vis_image.shape[:2]:
                        warped = cv2.resize(ir_image, (vis_image.shape[1], vis_image.shape[0]),
                                            interpolation=cv2.INTER_LINEAR)
                    ir_image = ir_image if warped is None else warped
                    (click.echo if single else tqdm.write)(f"{pair.stem}: {correction}")
                try:
                    fused = fuser.fuse(ir_image, vis_image)
                except SageEdgeError as exc:
                    raise SageEdgeError(f"{pair.ir.name}: {exc}") from None
            except SageEdgeError as exc:
                if single:
                    raise
                failed.append(f"{pair.stem}: {exc}")
                tqdm.write(f"skipped {pair.stem}: {exc}", file=sys.stderr)
                continue
            write_image(target, fused)  # an output that cannot be written stops the whole run (one line)
    if single:
        click.echo(f"wrote {output}" + (f" (the demo pair {ir.parent.parent}/{{ir,vis}}/{ir.name}, see NOTICE.md "
                                        "there)" if demo else ""))
        return
    done = len(pairs) - len(failed)
    if failed:
        raise SageEdgeError(f"{len(failed)} of {len(pairs)} pairs could not be fused (first: {failed[0]}); "
                            f"the other {done} are in {output}/")
    click.echo(f"wrote {done} fused images to {output}/")
