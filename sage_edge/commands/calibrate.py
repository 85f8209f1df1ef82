"""sage-edge calibrate --ir IMG --vis IMG (--points FILE | --interactive | --auto) -o H.json"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from sage_edge.errors import SageEdgeError


def load_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Matched points: JSON ``{"ir": [[x, y], ...], "vis": [[x, y], ...]}`` or
    ``[[x_ir, y_ir, x_vis, y_vis], ...]``, or CSV/whitespace text with four numbers per line
    (``x_ir y_ir x_vis y_vis``; ``#`` comments and one header line allowed)."""
    if not path.is_file():
        raise SageEdgeError(f"{path}: no such points file")
    text = path.read_text()
    rows: list[list[float]] = []
    try:
        if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
            if isinstance(data, dict):
                ir, vis = np.asarray(data["ir"], np.float64), np.asarray(data["vis"], np.float64)
                if ir.ndim != 2 or ir.shape[1] != 2 or ir.shape != vis.shape:
                    raise ValueError("'ir' and 'vis' must be equally long lists of [x, y]")
                return ir, vis
            rows = [[float(v) for v in row] for row in data]
        else:
            for number, line in enumerate(text.splitlines()):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                values = line.replace(",", " ").split()
                try:
                    rows.append([float(v) for v in values])
                except ValueError:
                    if number == 0 or not rows:
                        continue  # a header line
                    raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SageEdgeError(f"{path}: cannot read matched points ({exc})") from None
    array = np.asarray(rows, np.float64) if rows else np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise SageEdgeError(f"{path}: each point needs four numbers: x_ir y_ir x_vis y_vis")
    return array[:, :2], array[:, 2:]


def pick_points(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Click matching points: left-click a point in the IR window, then the same point in the visible
    window; repeat (>= 4). Backspace undoes, Enter/Space finishes, Esc cancels."""
    import cv2

    from sage_edge.runtime.outputs import opencv_has_gui

    if not opencv_has_gui():
        raise SageEdgeError("interactive calibration needs OpenCV with a GUI: pip install 'sage-edge[gui]' "
                            "(or give --points FILE)")
    import os

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SageEdgeError("interactive calibration needs a display (DISPLAY is not set); give --points FILE instead")
    ir_pts: list[tuple[float, float]] = []
    vis_pts: list[tuple[float, float]] = []

    def on_ir(event: int, x: int, y: int, *_: object) -> None:
        if event == cv2.EVENT_LBUTTONDOWN and len(ir_pts) == len(vis_pts):
            ir_pts.append((x, y))

    def on_vis(event: int, x: int, y: int, *_: object) -> None:
        if event == cv2.EVENT_LBUTTONDOWN and len(ir_pts) == len(vis_pts) + 1:
            vis_pts.append((x, y))

    cv2.namedWindow("IR", cv2.WINDOW_NORMAL)
    cv2.namedWindow("visible", cv2.WINDOW_NORMAL)
    cv2.setMouseCallback("IR", on_ir)
    cv2.setMouseCallback("visible", on_vis)
    try:
        while True:
            ir_view = cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR)
            vis_view = vis.copy() if vis.ndim == 3 else cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR)
            for i, p in enumerate(ir_pts):
                cv2.drawMarker(ir_view, (int(p[0]), int(p[1])), (0, 255, 0), cv2.MARKER_CROSS, 12, 2)
                cv2.putText(ir_view, str(i + 1), (int(p[0]) + 5, int(p[1]) - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
            for i, p in enumerate(vis_pts):
                cv2.drawMarker(vis_view, (int(p[0]), int(p[1])), (0, 255, 0), cv2.MARKER_CROSS, 12, 2)
                cv2.putText(vis_view, str(i + 1), (int(p[0]) + 5, int(p[1]) - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
            cv2.imshow("IR", ir_view)
            cv2.imshow("visible", vis_view)
            key = cv2.waitKey(30) & 0xFF
            if key in (13, 10, 32) and len(vis_pts) >= 4:
                break
            if key == 27:
                raise SageEdgeError("calibration cancelled")
            if key == 8:
                if len(ir_pts) > len(vis_pts):
                    ir_pts.pop()
                elif vis_pts:
                    vis_pts.pop()
                    ir_pts.pop()
    finally:
        cv2.destroyAllWindows()
    return np.asarray(ir_pts[: len(vis_pts)], np.float64), np.asarray(vis_pts, np.float64)


def parse_hfov(text: str | None) -> float | None:
    """'50,70' (IR and visible horizontal fields of view, degrees) -> IR/visible footprint width ratio."""
    if text is None:
        return None
    import math

    try:
        ir_deg, vis_deg = (float(v) for v in text.split(","))
    except ValueError:
        raise SageEdgeError(f"bad --hfov '{text}'; give the IR and visible horizontal fields of view in degrees, "
                            "e.g. --hfov 50,70") from None
    if not (0 < ir_deg < 180 and 0 < vis_deg < 180):
        raise SageEdgeError(f"bad --hfov '{text}'; angles must be between 0 and 180 degrees")
    return math.tan(math.radians(ir_deg) / 2) / math.tan(math.radians(vis_deg) / 2)


def is_image_file(spec: str) -> bool:
    from sage_edge.imageio import IMAGE_EXTENSIONS

    return "://" not in spec and Path(spec).suffix.lower() in IMAGE_EXTENSIONS


def load_auto_pairs(ir_specs: tuple[str, ...], vis_specs: tuple[str, ...], frames: int, every: float,
                    ir_format: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frame pairs for --auto: each --ir/--vis couple is two images, or two videos/URIs sampled --frames times."""
    from sage_edge.imageio import as_ir, as_visible, read_ir, read_visible
    from sage_edge.runtime.pair_sampler import sample_frame_pairs

    pairs = []
    for ir_spec, vis_spec in zip(ir_specs, vis_specs):
        if is_image_file(ir_spec) and is_image_file(vis_spec):
            pairs.append((read_ir(ir_spec), read_visible(vis_spec)))
        else:
            for ir_raw, vis_raw in sample_frame_pairs(ir_spec, vis_spec, frames, every, ir_format):
                pairs.append((as_ir(ir_raw), as_visible(vis_raw)))
    sizes = {(ir.shape[:2], vis.shape[:2]) for ir, vis in pairs}
    if len(sizes) > 1:
        raise SageEdgeError("all --ir frames must have one size, and all --vis frames another (one rig)")
    return pairs


def describe_rejected(ir_pts: np.ndarray, vis_pts: np.ndarray, inliers: np.ndarray, matrix: np.ndarray) -> list[str]:
    """One line per point RANSAC rejected: its number in the file, both positions, and how far off it is."""
    from sage_edge.runtime.registration import reprojection_errors

    lines = []
    for index in np.flatnonzero(~inliers):
        error = reprojection_errors(matrix, ir_pts[index:index + 1], vis_pts[index:index + 1])[0]
        lines.append(f"rejected point {index + 1}: IR ({ir_pts[index][0]:.1f}, {ir_pts[index][1]:.1f}) -> visible "
                     f"({vis_pts[index][0]:.1f}, {vis_pts[index][1]:.1f}) is {error:.1f} px from where the "
                     "homography of the other points puts it")
    return lines


@click.command()
@click.option("--ir", "ir_specs", required=True, multiple=True, metavar="IMAGE|VIDEO|URI",
              help="An IR image from the IR camera (--auto: repeat for several pairs, or give a video / stream URI).")
@click.option("--vis", "vis_specs", required=True, multiple=True, metavar="IMAGE|VIDEO|URI",
              help="A visible image taken at the same time (--auto: one per --ir).")
@click.option("--points", type=click.Path(path_type=Path),
              help="Matched points: 'x_ir y_ir x_vis y_vis' per line (CSV/whitespace) or JSON {\"ir\": [[x,y]...], \"vis\": [...]}.")
@click.option("--interactive", is_flag=True, help="Click the matched points yourself (needs a display).")
@click.option("--auto", "auto", is_flag=True,
              help="Find the homography from the images alone (edges and their directions; no points).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Homography JSON to write (H.json).")
@click.option("--preview", type=click.Path(path_type=Path),
              help="Preview image to check by eye [default: OUTPUT with suffix _preview.png].")
@click.option("--preview-layout", type=click.Choice(["overlay", "checkerboard"]), default="overlay", show_default=True,
              help="overlay: warped IR in false colour over the visible image; checkerboard: alternating tiles.")
@click.option("--ransac-threshold", type=click.FloatRange(min=0.0, min_open=True), default=3.0, show_default=True,
              help="Points: RANSAC inlier threshold in visible pixels.")
@click.option("--frames", type=click.IntRange(min=1), default=5, show_default=True,
              help="--auto with videos or stream URIs: frame pairs to use.")
@click.option("--every", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="--auto with videos or streams: seconds between the frame pairs used.")
@click.option("--hfov", metavar="IR,VIS",
              help="--auto: the two cameras' horizontal fields of view in degrees (e.g. 50,70) to narrow the search.")
@click.option("--ir-format", type=click.Choice(["auto", "gray8", "y16"]), default="auto", show_default=True,
              help="--auto with a V4L2 IR camera: its pixel format (as for `run`).")
@click.option("--no-crop", is_flag=True, help="Do not store the common field of view as the crop.")
def calibrate(ir_specs: tuple[str, ...], vis_specs: tuple[str, ...], points: Path | None, interactive: bool,
              auto: bool, output: Path, preview: Path | None, preview_layout: str, ransac_threshold: float,
              frames: int, every: float, hfov: str | None, ir_format: str, no_crop: bool) -> None:
    """Compute the IR->visible homography for `run --homography` and `fuse`: from >= 4 matched points
    (RANSAC), or automatically from the images (--auto)."""
    from sage_edge.atomic import check_writable
    from sage_edge.imageio import check_writable_extension, read_pair, write_image
    from sage_edge.runtime.registration import (Homography, checkerboard, common_field, fit_homography,
                                                overlay_preview, reprojection_errors, save_homography)

    if output.suffix.lower() != ".json":
        raise SageEdgeError(f"{output}: the homography file must end in .json")
    preview = preview or output.with_name(output.stem + "_preview.png")
    check_writable_extension(preview)
    check_writable(output)
    check_writable(preview)
    if sum((points is not None, interactive, auto)) != 1:
        raise SageEdgeError("give one of --points FILE, --interactive (click the points) or --auto")
    if len(ir_specs) != len(vis_specs):
        raise SageEdgeError(f"{len(ir_specs)} --ir but {len(vis_specs)} --vis; give them in pairs")
    if not auto and len(ir_specs) > 1:
        raise SageEdgeError("several --ir/--vis pairs work with --auto only; points belong to one pair")
    messages = []
    if auto:
        from sage_edge.runtime.auto_registration import estimate_from_pairs

        pairs = load_auto_pairs(ir_specs, vis_specs, frames, every, ir_format)
        estimate = estimate_from_pairs(pairs, fov_ratio=parse_hfov(hfov))
        matrix = estimate.matrix
        ir, vis = pairs[0]
        messages.append(f"automatic registration from {len(pairs)} frame pair{'s' if len(pairs) > 1 else ''}: "
                        f"{estimate.summary()}")
        warning = estimate.warning()
        if warning is not None:
            messages.append(warning)
    else:
        ir, vis = read_pair(Path(ir_specs[0]), Path(vis_specs[0]))
        ir_pts, vis_pts = pick_points(ir, vis) if interactive else load_points(points)  # type: ignore[arg-type]
        matrix, inliers = fit_homography(ir_pts, vis_pts, ransac_threshold)
        errors = reprojection_errors(matrix, ir_pts[inliers], vis_pts[inliers])
        messages.append(f"{int(inliers.sum())}/{len(inliers)} points inliers, reprojection error mean "
                        f"{errors.mean():.2f} px, max {errors.max():.2f} px")
        messages.extend(describe_rejected(ir_pts, vis_pts, inliers, matrix))
    ir_size, vis_size = (ir.shape[1], ir.shape[0]), (vis.shape[1], vis.shape[0])
    crop = None if no_crop else common_field(matrix, ir_size, vis_size)
    homography = Homography(matrix, ir_size, vis_size, crop)
    if preview_layout == "checkerboard":
        import cv2

        image = checkerboard(cv2.warpPerspective(ir, matrix, vis_size), vis)
    else:
        image = overlay_preview(ir, vis, matrix)
    save_homography(output, homography)
    write_image(preview, image)
    field = f"; common field {crop[2]}x{crop[3]} at ({crop[0]}, {crop[1]})" if crop else ""
    click.echo(f"wrote {output} ({messages[0]}{field})")
    for line in messages[1:]:
        click.echo(line)
    click.echo(f"wrote {preview} (check the {preview_layout}: edges should line up)")
