"""Registration: warp IR into the visible camera's frame with a homography.

The homography file (JSON, written by ``sage-edge calibrate``)::

    {
      "format": "sage-edge-homography", "version": 1,
      "ir_to_visible": [[h00, h01, h02], [h10, h11, h12], [h20, h21, h22]],
      "ir_size": [W_ir, H_ir],          # the IR resolution the points were picked at
      "output_size": [W_vis, H_vis],    # the visible resolution: IR is warped onto this grid
      "crop": [x, y, w, h]              # optional: the field both cameras see, in output pixels
    }

The matrix maps IR pixel coordinates to visible pixel coordinates
(``[x_v, y_v, 1]^T ~ H [x_ir, y_ir, 1]^T``). When a camera runs at another
resolution than at calibration, the matrix is rescaled for it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sage_edge.atomic import write_bytes_atomic
from sage_edge.errors import SageEdgeError

FORMAT = "sage-edge-homography"


@dataclass
class Homography:
    matrix: np.ndarray  # 3 x 3 float64, IR -> visible
    ir_size: tuple[int, int]  # (W, H)
    output_size: tuple[int, int]  # (W, H) of the visible frame
    crop: tuple[int, int, int, int] | None = None

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "ir_to_visible": [[float(v) for v in row] for row in self.matrix],
            "ir_size": list(self.ir_size),
            "output_size": list(self.output_size),
            "crop": None if self.crop is None else list(self.crop),
        }

    def scaled(self, ir_size: tuple[int, int], vis_size: tuple[int, int]) -> np.ndarray:
        """The matrix for frames of ``ir_size`` and ``vis_size`` (W, H), rescaled from calibration sizes."""
        s_ir = np.diag([ir_size[0] / self.ir_size[0], ir_size[1] / self.ir_size[1], 1.0])
        s_vis = np.diag([vis_size[0] / self.output_size[0], vis_size[1] / self.output_size[1], 1.0])
        return s_vis @ self.matrix @ np.linalg.inv(s_ir)


def save_homography(path: str | os.PathLike, homography: Homography) -> None:
    write_bytes_atomic(path, (json.dumps(homography.to_json(), indent=2) + "\n").encode())


def load_homography(path: str | os.PathLike) -> Homography:
    path = Path(path)
    if not path.is_file():
        raise SageEdgeError(f"{path}: no such homography file (make one with `sage-edge calibrate`)")
    try:
        data = json.loads(path.read_text())
        matrix = np.asarray(data["ir_to_visible"], dtype=np.float64)
        ir_size = tuple(int(v) for v in data["ir_size"])
        output_size = tuple(int(v) for v in data["output_size"])
        crop = data.get("crop")
        crop = None if crop is None else tuple(int(v) for v in crop)
    except (ValueError, KeyError, TypeError) as exc:
        raise SageEdgeError(f"{path}: not a sage-edge homography file ({type(exc).__name__}: {exc})") from None
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise SageEdgeError(f"{path}: 'ir_to_visible' must be a finite, invertible 3x3 matrix")
    if len(ir_size) != 2 or len(output_size) != 2 or min(ir_size + output_size) <= 0:
        raise SageEdgeError(f"{path}: 'ir_size' and 'output_size' must be [width, height]")
    if crop is not None and (len(crop) != 4 or crop[2] <= 0 or crop[3] <= 0):
        raise SageEdgeError(f"{path}: 'crop' must be [x, y, width, height]")
    return Homography(matrix, ir_size, output_size, crop)  # type: ignore[arg-type]


def common_field(matrix: np.ndarray, ir_size: tuple[int, int], vis_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest axis-aligned rectangle (x, y, w, h) inside both the warped IR frame and the visible frame.

    Found on a pixel mask (the IR footprint warped by ``matrix``), so any homography works.
    """
    import cv2

    w, h = vis_size
    mask = cv2.warpPerspective(np.full((ir_size[1], ir_size[0]), 255, np.uint8), matrix, (w, h),
                               flags=cv2.INTER_NEAREST, borderValue=0) > 0
    if not mask.any():
        raise SageEdgeError("the homography maps the IR frame entirely outside the visible frame")
    # start from the bounding box and shrink the side with the most uncovered pixels until all are covered
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    while x1 - x0 > 1 and y1 - y0 > 1:
        sub = mask[y0:y1, x0:x1]
        if sub.all():
            break
        bad = {
            "top": (~sub[0]).sum() / sub.shape[1], "bottom": (~sub[-1]).sum() / sub.shape[1],
            "left": (~sub[:, 0]).sum() / sub.shape[0], "right": (~sub[:, -1]).sum() / sub.shape[0],
        }
        side = max(bad, key=bad.get)
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


class Registration:
    """Applies a ``Homography`` to frame pairs: IR warped onto the visible grid, both cropped if asked."""

    def __init__(self, homography: Homography, crop: bool = True) -> None:
        self.homography = homography
        self.crop = crop
        self._cache: dict[tuple, tuple[np.ndarray, tuple[int, int, int, int] | None]] = {}

    def _for(self, ir_size: tuple[int, int], vis_size: tuple[int, int]):
        key = (ir_size, vis_size)
        if key not in self._cache:
            matrix = self.homography.scaled(ir_size, vis_size)
            rect = None
            if self.crop:
                if self.homography.crop is not None and vis_size == self.homography.output_size:
                    rect = self.homography.crop
                else:
                    rect = common_field(matrix, ir_size, vis_size)
            self._cache[key] = (matrix, rect)
        return self._cache[key]

    def warp_ir(self, ir: np.ndarray, vis_size: tuple[int, int]) -> np.ndarray:
        import cv2

        matrix, _ = self._for((ir.shape[1], ir.shape[0]), vis_size)
        return cv2.warpPerspective(ir, matrix, vis_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def __call__(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vis_size = (vis.shape[1], vis.shape[0])
        warped = self.warp_ir(ir, vis_size)
        _, rect = self._for((ir.shape[1], ir.shape[0]), vis_size)
        if rect is None:
            return warped, vis
        x, y, w, h = rect
        return np.ascontiguousarray(warped[y:y + h, x:x + w]), np.ascontiguousarray(vis[y:y + h, x:x + w])


def fit_homography(ir_points: np.ndarray, vis_points: np.ndarray, threshold: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """IR -> visible homography from >= 4 matched points with RANSAC. Returns (matrix, inlier mask)."""
    import cv2

    ir_points = np.asarray(ir_points, np.float64).reshape(-1, 2)
    vis_points = np.asarray(vis_points, np.float64).reshape(-1, 2)
    if len(ir_points) != len(vis_points):
        raise SageEdgeError(f"{len(ir_points)} IR points but {len(vis_points)} visible points; they must match")
    if len(ir_points) < 4:
        raise SageEdgeError(f"a homography needs at least 4 matched points, got {len(ir_points)}")
    matrix, inliers = cv2.findHomography(ir_points, vis_points, cv2.RANSAC, threshold)
    if matrix is None:
        raise SageEdgeError("could not fit a homography (points collinear or repeated?)")
    inliers = inliers.ravel().astype(bool)
    if inliers.sum() < 4:
        raise SageEdgeError(f"only {int(inliers.sum())} points agree on one homography; check the point matches")
    # refine on the inliers with least squares (RANSAC's estimate is from a minimal sample)
    refined, _ = cv2.findHomography(ir_points[inliers], vis_points[inliers], 0)
    if refined is not None:
        matrix = refined
    return matrix / matrix[2, 2], inliers


def reprojection_errors(matrix: np.ndarray, ir_points: np.ndarray, vis_points: np.ndarray) -> np.ndarray:
    import cv2

    projected = cv2.perspectiveTransform(np.asarray(ir_points, np.float64).reshape(-1, 1, 2), matrix).reshape(-1, 2)
    return np.linalg.norm(projected - np.asarray(vis_points, np.float64).reshape(-1, 2), axis=1)


def overlay_preview(ir: np.ndarray, vis: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Visible image with the warped IR blended in false colour, for checking a calibration by eye."""
    import cv2

    vis_bgr = vis if vis.ndim == 3 else cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR)
    warped = cv2.warpPerspective(ir, matrix, (vis_bgr.shape[1], vis_bgr.shape[0]))
    coloured = cv2.applyColorMap(warped, cv2.COLORMAP_INFERNO)
    footprint = cv2.warpPerspective(np.full(ir.shape[:2], 255, np.uint8), matrix, (vis_bgr.shape[1], vis_bgr.shape[0]))
    blended = cv2.addWeighted(vis_bgr, 0.5, coloured, 0.5, 0)
    out = np.where(footprint[..., None] > 0, blended, vis_bgr)
    contours, _ = cv2.findContours(footprint, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    return out


def checkerboard(ir: np.ndarray, vis: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Registered IR and visible frames (same size) in alternating tiles, BGR: an edge that runs across
    a tile border unbroken is registered there; a jog at the border is the misregistration, in pixels."""
    import cv2

    def bgr(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image

    if ir.shape[:2] != vis.shape[:2]:
        raise SageEdgeError(f"checkerboard needs frames of one size, got {ir.shape[:2]} and {vis.shape[:2]}")
    h, w = vis.shape[:2]
    side = max(8, max(h, w) // tiles)
    ys, xs = np.mgrid[0:h, 0:w]
    use_ir = ((ys // side + xs // side) % 2 == 0)[..., None]
    return np.where(use_ir, bgr(ir), bgr(vis))


def describe_correction(matrix: np.ndarray, size: tuple[int, int]) -> dict:
    """A homography near identity on a frame of ``size`` (W, H) in words: shift of the centre (px),
    rotation (degrees) and scale there, and the largest movement of a frame corner (px)."""
    w, h = size
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    corners = np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])

    def apply(points: np.ndarray) -> np.ndarray:
        p = np.c_[points, np.ones(len(points))] @ matrix.T
        return p[:, :2] / p[:, 2:3]

    # the affine part at the centre, from two small steps
    c0 = apply(centre[None])[0]
    jx = (apply((centre + (1.0, 0.0))[None])[0] - c0)
    jy = (apply((centre + (0.0, 1.0))[None])[0] - c0)
    jacobian = np.stack([jx, jy], axis=1)
    return {
        "shift_px": (float(c0[0] - centre[0]), float(c0[1] - centre[1])),
        "rotation_deg": float(np.degrees(np.arctan2(jacobian[1, 0] - jacobian[0, 1], jacobian[0, 0] + jacobian[1, 1]))),
        "scale": float(np.sqrt(abs(np.linalg.det(jacobian)))),
        "corner_shift_px": float(np.linalg.norm(apply(corners) - corners, axis=1).max()),
    }
