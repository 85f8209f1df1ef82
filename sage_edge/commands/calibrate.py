"""sage-edge calibrate --ir IMG --vis IMG (--points FILE | --interactive) -o H.json"""
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


@click.command()
@click.option("--ir", "ir_path", required=True, type=click.Path(path_type=Path), help="An IR image from the IR camera.")
@click.option("--vis", "vis_path", required=True, type=click.Path(path_type=Path), help="A visible image taken at the same time.")
@click.option("--points", type=click.Path(path_type=Path),
              help="Matched points: 'x_ir y_ir x_vis y_vis' per line (CSV/whitespace) or JSON {\"ir\": [[x,y]...], \"vis\": [...]}.")
@click.option("--interactive", is_flag=True, help="Click the matched points yourself (needs a display).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Homography JSON to write (H.json).")
@click.option("--preview", type=click.Path(path_type=Path),
              help="Overlay preview image [default: OUTPUT with suffix _preview.png].")
@click.option("--ransac-threshold", type=click.FloatRange(min=0.0, min_open=True), default=3.0, show_default=True,
              help="RANSAC inlier threshold in visible pixels.")
@click.option("--no-crop", is_flag=True, help="Do not store the common field of view as the crop.")
def calibrate(ir_path: Path, vis_path: Path, points: Path | None, interactive: bool, output: Path,
              preview: Path | None, ransac_threshold: float, no_crop: bool) -> None:
    """Compute the IR->visible homography from >= 4 matched points (RANSAC), for `run --homography`."""
    from sage_edge.atomic import check_writable
    from sage_edge.imageio import check_writable_extension, read_pair, write_image
    from sage_edge.runtime.registration import (Homography, common_field, fit_homography, overlay_preview,
                                                reprojection_errors, save_homography)

    if output.suffix.lower() != ".json":
        raise SageEdgeError(f"{output}: the homography file must end in .json")
    preview = preview or output.with_name(output.stem + "_preview.png")
    check_writable_extension(preview)
    check_writable(output)
    check_writable(preview)
    if (points is None) == (not interactive):
        raise SageEdgeError("give --points FILE, or --interactive to click the points (not both)")
    ir, vis = read_pair(ir_path, vis_path)
    ir_pts, vis_pts = pick_points(ir, vis) if interactive else load_points(points)  # type: ignore[arg-type]
    matrix, inliers = fit_homography(ir_pts, vis_pts, ransac_threshold)
    errors = reprojection_errors(matrix, ir_pts[inliers], vis_pts[inliers])
    ir_size, vis_size = (ir.shape[1], ir.shape[0]), (vis.shape[1], vis.shape[0])
    crop = None if no_crop else common_field(matrix, ir_size, vis_size)
    homography = Homography(matrix, ir_size, vis_size, crop)
    image = overlay_preview(ir, vis, matrix)
    save_homography(output, homography)
    write_image(preview, image)
    click.echo(
        f"wrote {output} ({int(inliers.sum())}/{len(inliers)} points inliers, reprojection error "
        f"mean {errors.mean():.2f} px, max {errors.max():.2f} px"
        + (f"; common field {crop[2]}x{crop[3]} at ({crop[0]}, {crop[1]})" if crop else "") + ")"
    )
    click.echo(f"wrote {preview} (check the overlay: edges should line up)")
