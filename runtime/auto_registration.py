"""Automatic IR -> visible registration: the homography from the images alone, no picked points.

Used by ``sage-edge calibrate --auto``, ``sage-edge fuse --register auto`` and the drift tracker of
``sage-edge run --register auto``. numpy + OpenCV only (no torch), so it runs on a Jetson.

Why not plain ECC or SIFT: a thermal and a visible image of one scene do not share intensities (a warm
wall is bright in IR and grey in daylight; edges can even flip polarity), and keypoint descriptors
built on intensity patterns rarely match across the two (``benchmarks/bench_registration.py`` measures
both). What the two cameras do share is *where the edges are and which way they run*. So:

1. **Structure maps.** Each frame becomes a 2-channel map of its gradient orientation in the double-angle
   form ``(gx^2 - gy^2, 2 gx gy) / (|g|^2 + eps^2)``: invariant to contrast and to polarity (an edge that
   is dark-to-bright in IR and bright-to-dark in visible gives the same vector), near zero where there is
   no structure (``eps`` is half the frame's median gradient, so noise counts little). Areas of exactly
   constant value (black padding around a warped image, a clipped sky) carry no data and are zeroed with
   a 3-pixel band, so their border is not taken for a scene edge.
2. **Coarse search** on a pyramid level about ``coarse_width`` pixels wide: for each hypothesis of the IR
   footprint's scale and rotation, the IR map is placed centred on the visible map and correlated with
   it at every shift within ``search`` x width (``cv2.matchTemplate``: the whole frame's structure votes
   at once). The best (scale, rotation, shift) starts the refinement.
3. **Refinement, coarse to fine**: at each level the IR map is warped by the current homography, every
   structured patch finds its sub-pixel shift against the visible map (``cv2.matchTemplate``, parabola
   peak), and a correction homography is fitted to all shifts by Gauss-Newton with a Huber loss
   (parametrised by the displacement of the four frame corners). Repeat until the correction is below
   ``tolerance_px``, then go one level finer.
4. **Confidence**: at the result, patches search again with a wide radius (``check_radius``), blind to
   the estimate; the *confidence* is the fraction of structured patches whose independent best match
   falls within ``confirm_px`` of where the homography puts them. Chance agreement is ~``(confirm_px /
   check_radius)^2`` (about 3 %); a registered pair scores far higher. Too few confirming patches,
   too little overlap, or a flat frame: ``RegistrationRefused`` (a ``SageEdgeError``, one line).

Several frame pairs of one rig (``estimate_from_pairs``) share the homography: the refinement pools
their patches, and the per-pair spread of the corners is reported as their agreement.

Homographies map IR pixel coordinates to visible pixel coordinates, as ``runtime.registration``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from sage_edge.errors import SageEdgeError

# Footprint-width hypotheses for the coarse search when nothing is known about the two lenses: the IR
# image covers 42 % to 119 % of the visible image's width (2^(k/4) steps, 1.0 included).
DEFAULT_FOOTPRINT_RATIOS = tuple(2.0 ** (k / 4.0) for k in range(-5, 2))


class RegistrationRefused(SageEdgeError):
    """The frames cannot be registered (flat, unrelated, not overlapping); the message says why."""


@dataclass
class AutoRegistrationConfig:
    """Settings of the estimator. The defaults are what the benchmark and the tests use."""

    coarse_width: int = 192  # the coarse search runs on the pyramid level about this wide
    max_width: int = 800  # finest level used: frames wider than this are refined at half size (or less)
    footprint_ratios: tuple[float, ...] = DEFAULT_FOOTPRINT_RATIOS  # IR footprint width / visible width
    search: float = 0.15  # coarse search radius, as a fraction of the visible width
    coarse_angles: tuple[float, ...] = tuple(range(-8, 9, 2))  # rotations tried by the coarse search, degrees
    coarse_patch: int = 24
    patch: int = 32  # patch side at the finest level (24 in between)
    final_step: int = 24  # patch grid step at the finest level (half a patch in between)
    level_radius: int = 8  # shift searched per patch on intermediate levels (pixels of that level)
    final_radius: int = 5  # ... and on the finest level
    min_patch_score: float = 0.2  # patches whose best correlation is lower are ignored
    robust_px: float = 1.5  # Cauchy scale of the fit, pixels of the level (wrong matches get ~no weight)
    homography_levels: int = 2  # the finest levels fit a full homography; coarser ones an affine map
    max_iterations: int = 5  # per level
    tolerance_px: float = 0.05  # a level is done when the correction moves no corner by more than this
    check_radius: int = 12  # confidence: blind search radius at the confirmation level
    confirm_px: float = 2.0  # ... and how close a blind match must land to confirm
    min_confidence: float = 0.15  # refuse below this fraction of confirming patches
    # ... and warn below this: on the shared real pairs, estimates under 0.25 missed the pair's own
    # registration by a median 7 px, 5 of 12 by more than 10 px (0.25 to 0.5: median 2.6 px; see
    # benchmarks/RESULTS.md)
    low_confidence: float = 0.25
    min_confirmed: int = 12  # ... or fewer confirming patches than this
    min_overlap: float = 0.2  # refuse when IR covers less than this fraction of the visible frame


@dataclass
class Estimate:
    """An IR -> visible homography at full resolution and the evidence for it."""

    matrix: np.ndarray
    ir_size: tuple[int, int]  # (W, H)
    vis_size: tuple[int, int]
    confidence: float  # fraction of structured patches whose blind best match confirms the homography
    confirmed: int  # how many patches confirm it
    patches: int  # structured patches examined
    residual_px: float  # median distance of the confirming matches from the homography, visible pixels
    overlap: float  # fraction of the visible frame that the IR footprint covers
    alignment: float = 0.0  # mean zero-shift correlation of the structure maps (``alignment_score``)
    pairs: int = 1  # frame pairs used
    agreement_px: float | None = None  # largest corner spread of the per-pair estimates (several pairs)
    per_pair_confidence: list = field(default_factory=list)

    def warning(self, config: AutoRegistrationConfig | None = None) -> str | None:
        """One line when the confidence is low enough that the estimate may be pixels off, else None."""
        threshold = (config or AutoRegistrationConfig()).low_confidence
        if self.confidence >= threshold:
            return None
        return (f"warning: low confidence ({self.confidence:.2f} < {threshold:.2f}): estimates this weak are often "
                "several pixels off; check the preview, add frame pairs of other scenes, or calibrate by points")

    def summary(self) -> str:
        text = (f"confidence {self.confidence:.2f} ({self.confirmed}/{self.patches} patches confirm within "
                f"the tolerance, median residual {self.residual_px:.2f} px), IR covers {self.overlap:.0%} of "
                f"the visible frame")
        if self.agreement_px is not None:
            text += f", {self.pairs} pairs agree within {self.agreement_px:.2f} px"
        return text


# --------------------------------------------------------------------------------------------- maps


def grey_float(image: np.ndarray) -> np.ndarray:
    """uint8 grey or BGR (the imageio conventions) -> H x W float32 in [0, 1]."""
    from sage_edge.colour import gray_from_bgr_image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        image = gray_from_bgr_image(image[..., :3])
    if image.dtype != np.uint8:
        raise SageEdgeError(f"registration expects 8-bit frames, got {image.dtype}")
    return image.astype(np.float32) / 255.0


def no_data_mask(grey: np.ndarray, band: int = 3) -> np.ndarray:
    """True where the frame is exactly constant over 5 x 5 pixels (padding, clipping), widened by ``band``."""
    import cv2

    kernel = np.ones((5, 5), np.uint8)
    flat = (cv2.dilate(grey, kernel) - cv2.erode(grey, kernel)) == 0
    return cv2.dilate(flat.astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8)) > 0


def structure_map(grey: np.ndarray) -> np.ndarray:
    """H x W float32 grey -> H x W x 2 float32 double-angle orientation map (see the module docstring)."""
    import cv2

    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    missing = no_data_mask(grey)
    gx[missing] = 0.0
    gy[missing] = 0.0
    magnitude2 = gx * gx + gy * gy
    eps = 0.5 * float(np.median(np.sqrt(magnitude2))) + 1e-6
    denominator = magnitude2 + eps * eps
    orientation = cv2.merge([(gx * gx - gy * gy) / denominator, 2.0 * gx * gy / denominator])
    return cv2.GaussianBlur(orientation, (0, 0), 1.0)


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel dot product of two H x W x 2 maps (numpy's sum over a last axis of 2 is slow)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]


def structure_energy(maps: np.ndarray) -> float:
    """RMS length of the orientation vectors: ~0 for a flat frame, ~0.3-0.5 for a structured one."""
    return float(np.sqrt(dot(maps, maps).mean()))


@dataclass
class _Frames:
    """One frame pair as pyramids of structure maps (index 0 = the finest level used)."""

    ir_maps: list
    vis_maps: list
    base_factor: float  # full-resolution pixels per pixel of level 0 (1, or 2^k when capped by max_width)
    ir_size: tuple[int, int]
    vis_size: tuple[int, int]


def _prepare(ir: np.ndarray, vis: np.ndarray, config: AutoRegistrationConfig) -> _Frames:
    import cv2

    ir_grey, vis_grey = grey_float(ir), grey_float(vis)
    for name, grey in (("IR", ir_grey), ("visible", vis_grey)):
        if min(grey.shape) < 32:
            raise RegistrationRefused(f"the {name} frame is {grey.shape[1]}x{grey.shape[0]}; registration "
                                      "needs at least 32x32 pixels")
        if float(grey.std()) * 255.0 < 2.0:
            raise RegistrationRefused(f"the {name} frame is flat (no structure to register: lens cap, "
                                      "black frame, or a uniform scene); point both cameras at a scene "
                                      "with edges")
    base = 0
    while vis_grey.shape[1] / 2 ** base > config.max_width:
        base += 1
    levels = base
    # coarsest level: about coarse_width wide, but at least half that high (wide frames keep their rows)
    while (vis_grey.shape[1] / 2 ** (levels + 1) >= config.coarse_width
           and vis_grey.shape[0] / 2 ** (levels + 1) >= config.coarse_width / 2
           and min(ir_grey.shape) / 2 ** (levels + 1) >= 32):
        levels += 1
    ir_pyr, vis_pyr = [ir_grey], [vis_grey]
    for _ in range(levels):
        ir_pyr.append(cv2.pyrDown(ir_pyr[-1]))
        vis_pyr.append(cv2.pyrDown(vis_pyr[-1]))
    ir_maps = [structure_map(g) for g in ir_pyr[base:]]
    vis_maps = [structure_map(g) for g in vis_pyr[base:]]
    for name, maps in (("IR", ir_maps), ("visible", vis_maps)):
        if structure_energy(maps[0]) < 0.02:
            raise RegistrationRefused(f"the {name} frame has almost no edges to register; point both "
                                      "cameras at a scene with structure")
    return _Frames(ir_maps, vis_maps, float(2 ** base), (ir.shape[1], ir.shape[0]), (vis.shape[1], vis.shape[0]))


# --------------------------------------------------------------------------------------------- geometry


def _scale(factor: float) -> np.ndarray:
    return np.diag([factor, factor, 1.0])


def to_level(matrix: np.ndarray, factor: float) -> np.ndarray:
    """A full-resolution homography expressed on a level ``factor`` times smaller (both images)."""
    return _scale(1.0 / factor) @ matrix @ _scale(factor)


def from_level(matrix: np.ndarray, factor: float) -> np.ndarray:
    return _scale(factor) @ matrix @ _scale(1.0 / factor)


def project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.c_[points, np.ones(len(points))] @ matrix.T
    return p[:, :2] / p[:, 2:3]


def frame_corners(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])


def corner_distance(a: np.ndarray, b: np.ndarray, size: tuple[int, int]) -> float:
    """Largest distance between where ``a`` and ``b`` put the corners of a frame of ``size``."""
    corners = frame_corners(size)
    return float(np.linalg.norm(project(a, corners) - project(b, corners), axis=1).max())


def centred_similarity(scale: float, ir_size: tuple[int, int], vis_size: tuple[int, int]) -> np.ndarray:
    """IR centre onto the visible centre, scaled by ``scale``, no rotation."""
    (wi, hi), (wv, hv) = ir_size, vis_size
    return (np.array([[1.0, 0.0, (wv - 1) / 2], [0.0, 1.0, (hv - 1) / 2], [0.0, 0.0, 1.0]]) @ _scale(scale)
            @ np.array([[1.0, 0.0, -(wi - 1) / 2], [0.0, 1.0, -(hi - 1) / 2], [0.0, 0.0, 1.0]]))


def footprint_overlap(matrix: np.ndarray, ir_size: tuple[int, int], vis_size: tuple[int, int]) -> float:
    """Fraction of the visible frame covered by the IR frame's footprint."""
    import cv2

    corners = project(matrix, frame_corners(ir_size)).astype(np.float32)
    if not np.all(np.isfinite(corners)):
        return 0.0
    frame = frame_corners(vis_size).astype(np.float32)
    area, _ = cv2.intersectConvexConvex(corners, frame)
    return float(max(area, 0.0) / ((vis_size[0] - 1) * (vis_size[1] - 1)))


# --------------------------------------------------------------------------------------------- matching


def _warp(ir_map: np.ndarray, matrix: np.ndarray, vis_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The IR map on the visible grid, and where it has data."""
    import cv2

    size = (vis_shape[1], vis_shape[0])
    warped = cv2.warpPerspective(ir_map, matrix, size, flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.full(ir_map.shape[:2], 255, np.uint8), matrix, size, flags=cv2.INTER_NEAREST)
    return warped, valid


def _parabola_peak(response: np.ndarray, x: int, y: int) -> tuple[float, float]:
    dx = dy = 0.0
    a, b, c = response[y, x - 1], response[y, x], response[y, x + 1]
    if a - 2 * b + c < 0:
        dx = 0.5 * (a - c) / (a - 2 * b + c)
    a, c = response[y - 1, x], response[y + 1, x]
    if a - 2 * b + c < 0:
        dy = 0.5 * (a - c) / (a - 2 * b + c)
    return x + float(dx), y + float(dy)


def match_patches(warped: np.ndarray, valid: np.ndarray, vis_map: np.ndarray, patch: int, radius: int,
                  min_energy: float, subpixel: bool = True, step: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each structured patch of ``warped`` (on the visible grid) searches ``vis_map`` within ``radius``.

    Patches lie on a grid of ``step`` (default half a patch), entirely where ``valid`` is set, with a
    structure energy of at least ``min_energy``. Returns (centres, matched centres, correlation) as
    N x 2, N x 2, N arrays, in pixels of this level. With ``subpixel``, the peak is refined by a parabola
    and patches whose peak lies on the search border (the true shift may be outside) are dropped.
    """
    import cv2

    h, w = vis_map.shape[:2]
    step = step or max(1, patch // 2)
    # per-patch energy and coverage from box filters, so the loop below only visits useful patches
    power = cv2.boxFilter(dot(warped, warped), cv2.CV_32F, (patch, patch), anchor=(0, 0),
                          normalize=True, borderType=cv2.BORDER_CONSTANT)
    cover = cv2.boxFilter((valid > 0).astype(np.float32), cv2.CV_32F, (patch, patch), anchor=(0, 0),
                          normalize=True, borderType=cv2.BORDER_CONSTANT)
    ys = np.arange(0, h - patch + 1, step)
    xs = np.arange(0, w - patch + 1, step)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    useful = (cover[grid_y, grid_x] > 0.999) & (power[grid_y, grid_x] >= min_energy * min_energy)
    padded = cv2.copyMakeBorder(vis_map, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    src, dst, scores = [], [], []
    last = 2 * radius
    for y0, x0 in zip(grid_y[useful].tolist(), grid_x[useful].tolist()):
        template = warped[y0:y0 + patch, x0:x0 + patch]
        window = padded[y0:y0 + patch + 2 * radius, x0:x0 + patch + 2 * radius]
        response = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (px, py) = cv2.minMaxLoc(response)
        if subpixel:
            if px in (0, last) or py in (0, last):
                continue
            fx, fy = _parabola_peak(response, px, py)
        else:
            fx, fy = float(px), float(py)
        centre = (x0 + (patch - 1) / 2.0, y0 + (patch - 1) / 2.0)
        src.append(centre)
        dst.append((centre[0] + fx - radius, centre[1] + fy - radius))
        scores.append(best)
    return (np.asarray(src, np.float64).reshape(-1, 2), np.asarray(dst, np.float64).reshape(-1, 2),
            np.asarray(scores, np.float64))


def _robust_weights(distance: np.ndarray, scale_px: float) -> np.ndarray:
    """Cauchy weights: a match ``scale_px`` off counts half, one 5x off about 4 %; far outliers vanish."""
    return 1.0 / (1.0 + (distance / scale_px) ** 2)


def fit_correction(src: np.ndarray, dst: np.ndarray, weights: np.ndarray, size: tuple[int, int],
                   scale_px: float, model: str = "homography", iterations: int = 10) -> np.ndarray:
    """The transform near identity taking ``src`` to ``dst``: weighted, robust (Cauchy loss, starting
    from the identity, so matches far from the current estimate are outvoted by those near it).

    ``model``: ``affine`` (closed-form weighted least squares) or ``homography`` (Gauss-Newton,
    parametrised by the displacement of the frame's four corners: every parameter is in pixels and the
    normal equations stay well conditioned at any image size).
    """
    import cv2

    if model == "affine":
        design = np.c_[src, np.ones(len(src))]
        matrix = np.eye(3)
        for _ in range(iterations):
            distance = np.linalg.norm(project(matrix, src) - dst, axis=1)
            wts = weights * _robust_weights(distance, scale_px)
            lhs = design.T @ (wts[:, None] * design) + 1e-9 * np.eye(3)
            solution = np.linalg.solve(lhs, design.T @ (wts[:, None] * dst))  # 3 x 2
            updated = np.vstack([solution.T, [0.0, 0.0, 1.0]])
            done = np.abs(updated - matrix).max() < 1e-7
            matrix = updated
            if done:
                break
        return matrix

    corners = frame_corners(size).astype(np.float32)

    def homography(u: np.ndarray) -> np.ndarray:
        return cv2.getPerspectiveTransform(corners, (corners + u.reshape(4, 2)).astype(np.float32)).astype(np.float64)

    u = np.zeros(8)
    for _ in range(iterations):
        residual = (project(homography(u), src) - dst).ravel()
        jacobian = np.empty((len(residual), 8))
        for k in range(8):
            step = np.zeros(8)
            step[k] = 0.01
            jacobian[:, k] = ((project(homography(u + step), src) - dst).ravel() - residual) / 0.01
        distance = np.linalg.norm(residual.reshape(-1, 2), axis=1)
        wts = np.repeat(weights * _robust_weights(distance, scale_px), 2)
        normal = jacobian.T @ (wts[:, None] * jacobian) + 1e-6 * np.eye(8)
        delta = np.linalg.solve(normal, -(jacobian.T @ (wts * residual)))
        u = u + delta
        if np.abs(delta).max() < 1e-3:
            break
    return homography(u)


# --------------------------------------------------------------------------------------------- stages


def rotate_orientation(maps: np.ndarray, degrees: float) -> np.ndarray:
    """The orientation map of an image turned by ``degrees``: double-angle vectors turn by twice that."""
    c, s = np.cos(np.radians(2.0 * degrees)), np.sin(np.radians(2.0 * degrees))
    a, b = maps[..., 0], maps[..., 1]
    return np.stack([c * a - s * b, s * a + c * b], axis=-1).astype(np.float32)


def _turn_about_centre(degrees: float, size: tuple[int, int]) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    cx, cy = (size[0] - 1) / 2.0, (size[1] - 1) / 2.0
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])


def _shift_scores(ir_map: np.ndarray, padded: np.ndarray, padded_energy: np.ndarray, start: np.ndarray,
                  radius: int) -> np.ndarray:
    """Normalised correlation of the whole IR map (placed by ``start``) with the visible map (``padded``
    by ``radius`` zeros; ``padded_energy`` its squared length per pixel), for every shift within
    ``radius`` pixels: a (2 radius + 1)^2 array, shift (0, 0) in the middle.

    The visible energy under the footprint is floored at its mean over the shifts, so a footprint
    pushed mostly off the frame (onto zero padding) does not score high on little evidence.
    """
    import cv2

    shape = (padded.shape[0] - 2 * radius, padded.shape[1] - 2 * radius)
    warped, valid = _warp(ir_map, start, shape)
    correlation = cv2.matchTemplate(padded, warped, cv2.TM_CCORR)
    under = cv2.matchTemplate(padded_energy, (valid > 0).astype(np.float32), cv2.TM_CCORR)
    under = np.maximum(under, under.mean())
    return correlation / np.sqrt(float(np.vdot(warped, warped)) * under + 1e-12)


def _coarse_search(frames: Sequence[_Frames], config: AutoRegistrationConfig, scales: Sequence[float]
                   ) -> np.ndarray:
    """The best similarity over footprint scales x rotations x shifts, on the coarsest level.

    For each (scale, rotation) the IR map is placed centred on the visible map and correlated with it
    at every shift within ``search`` x width at once (``cv2.matchTemplate``; all the structure of the
    frame votes, which a sparse scene needs). With several pairs the correlation surfaces are summed.
    """
    import cv2

    level = len(frames[0].vis_maps) - 1
    factor = frames[0].base_factor * 2 ** level
    ir_maps = [f.ir_maps[level] for f in frames]
    vis_maps = [f.vis_maps[level] for f in frames]
    while vis_maps[0].shape[1] >= 1.5 * config.coarse_width and min(ir_maps[0].shape[:2]) >= 64:
        # the pyramid keeps more rows for wide frames; the search needs no more than ~coarse_width
        ir_maps = [cv2.pyrDown(m) for m in ir_maps]
        vis_maps = [cv2.pyrDown(m) for m in vis_maps]
        factor *= 2
    vis_size = (vis_maps[0].shape[1], vis_maps[0].shape[0])
    ir_size = (ir_maps[0].shape[1], ir_maps[0].shape[0])
    radius = max(4, int(round(config.search * vis_size[0])))
    padded = [cv2.copyMakeBorder(m, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0) for m in vis_maps]
    energy = [dot(p, p) for p in padded]
    best, best_score = np.eye(3), -np.inf
    for scale in scales:
        for degrees in config.coarse_angles:
            start = _turn_about_centre(degrees, vis_size) @ centred_similarity(scale, ir_size, vis_size)
            total = sum(_shift_scores(rotate_orientation(m, degrees), p, e, start, radius)
                        for m, p, e in zip(ir_maps, padded, energy))
            y, x = np.unravel_index(int(np.argmax(total)), total.shape)
            if total[y, x] > best_score:
                shift = np.array([[1.0, 0.0, x - radius], [0.0, 1.0, y - radius], [0.0, 0.0, 1.0]])
                best, best_score = shift @ start, float(total[y, x])
    return from_level(best, factor)


def _refine(frames: Sequence[_Frames], matrix: np.ndarray, config: AutoRegistrationConfig, top_level: int
            ) -> np.ndarray:
    """Coarse-to-fine refinement from ``top_level`` down to level 0, pooling the patches of all pairs."""
    for level in range(top_level, -1, -1):
        factor = frames[0].base_factor * 2 ** level
        radius = config.final_radius if level == 0 else config.level_radius
        patch = config.patch if level == 0 else (config.coarse_patch if level == len(frames[0].vis_maps) - 1 else 24)
        model = "homography" if level < config.homography_levels else "affine"
        current = to_level(matrix, factor)
        for _ in range(config.max_iterations):
            src, dst, weights = [], [], []
            for f in frames:
                vis_map = f.vis_maps[level]
                warped, valid = _warp(f.ir_maps[level], current, vis_map.shape)
                s, d, scores = match_patches(warped, valid, vis_map, patch, radius, 0.1 * structure_energy(vis_map),
                                             step=config.final_step if level == 0 else None)
                keep = scores >= config.min_patch_score
                src.append(s[keep])
                dst.append(d[keep])
                weights.append(scores[keep] ** 2)
            src_all = np.concatenate(src)
            if len(src_all) < 8:
                break
            size = (frames[0].vis_maps[level].shape[1], frames[0].vis_maps[level].shape[0])
            correction = fit_correction(src_all, np.concatenate(dst), np.concatenate(weights), size,
                                        config.robust_px, model)
            current = correction @ current
            if corner_distance(correction, np.eye(3), size) < config.tolerance_px * (1 if level == 0 else 2):
                break
        matrix = from_level(current, factor)
    return matrix / matrix[2, 2]


def confirm(frames: Sequence[_Frames], matrix: np.ndarray, config: AutoRegistrationConfig
            ) -> tuple[float, int, int, float]:
    """Blind check of ``matrix``: (confidence, confirming patches, structured patches, median residual px).

    Runs on the level about 1/2 to 1/4 of the finest (wide blind search at modest cost).
    """
    level = min(len(frames[0].vis_maps) - 1, 1 if frames[0].vis_maps[0].shape[1] <= 720 else 2)
    factor = frames[0].base_factor * 2 ** level
    current = to_level(matrix, factor)
    confirmed, total, residuals = 0, 0, []
    for f in frames:
        vis_map = f.vis_maps[level]
        warped, valid = _warp(f.ir_maps[level], current, vis_map.shape)
        src, dst, scores = match_patches(warped, valid, vis_map, 24, config.check_radius,
                                         0.1 * structure_energy(vis_map))
        distance = np.linalg.norm(dst - src, axis=1) * factor
        ok = distance <= config.confirm_px * factor
        confirmed += int(ok.sum())
        total += len(src)
        residuals.extend(distance[ok].tolist())
    confidence = confirmed / total if total else 0.0
    return confidence, confirmed, total, float(np.median(residuals)) if residuals else float("nan")


def alignment_score(frames: Sequence[_Frames], matrix: np.ndarray, patch: int = 32) -> float:
    """Mean correlation of the structure maps at zero shift, over structured patches of the finest level.

    Falls smoothly as the homography drifts off (1 px already shows), so the drift tracker compares
    the current and a new homography with it on the same frames.
    """
    import cv2

    factor = frames[0].base_factor
    current = to_level(matrix, factor)
    scores = []
    for f in frames:
        vis_map = f.vis_maps[0]
        warped, valid = _warp(f.ir_maps[0], current, vis_map.shape)

        def mean(image: np.ndarray) -> np.ndarray:
            return cv2.boxFilter(image, cv2.CV_32F, (patch, patch), anchor=(0, 0), normalize=True,
                                 borderType=cv2.BORDER_CONSTANT)

        cross = mean(dot(warped, vis_map))
        mean_a, mean_b = mean(warped), mean(vis_map)
        var_a = mean(dot(warped, warped)) - dot(mean_a, mean_a)
        var_b = mean(dot(vis_map, vis_map)) - dot(mean_b, mean_b)
        cover = mean((valid > 0).astype(np.float32))
        h, w = vis_map.shape[:2]
        ys, xs = np.meshgrid(np.arange(0, h - patch + 1, patch // 2), np.arange(0, w - patch + 1, patch // 2),
                             indexing="ij")
        energy_floor = (0.1 * structure_energy(vis_map)) ** 2
        keep = (cover[ys, xs] > 0.999) & (var_a[ys, xs] > energy_floor) & (var_b[ys, xs] > energy_floor)
        ncc = (cross - dot(mean_a, mean_b)) / np.sqrt(np.maximum(var_a * var_b, 1e-12))
        scores.extend(ncc[ys, xs][keep].tolist())
    return float(np.mean(scores)) if scores else 0.0


# --------------------------------------------------------------------------------------------- API


def estimate_from_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], config: AutoRegistrationConfig | None = None,
                        initial: np.ndarray | None = None, search_px: float | None = None,
                        fov_ratio: float | None = None) -> Estimate:
    """The IR -> visible homography shared by one or more frame pairs of a rig.

    ``pairs``: (IR, visible) uint8 frames (grey IR; grey or BGR visible), all pairs at the same two sizes.
    ``initial``: a starting homography (full resolution): the coarse search is skipped and refinement
    starts on the level where ``search_px`` (default 3 % of the visible width) is within the patch search.
    ``fov_ratio``: IR horizontal field of view / visible horizontal field of view, if known: the coarse
    search then tries footprints within 12 % of it instead of the default range.
    Raises ``RegistrationRefused`` (one line) when the frames cannot be registered.
    """
    config = config or AutoRegistrationConfig()
    if not pairs:
        raise SageEdgeError("no frame pairs to register")
    frames = [_prepare(ir, vis, config) for ir, vis in pairs]
    ir_size, vis_size = frames[0].ir_size, frames[0].vis_size
    if any(f.ir_size != ir_size or f.vis_size != vis_size for f in frames):
        raise SageEdgeError("all frame pairs must have the same IR size and the same visible size")
    top = len(frames[0].vis_maps) - 1
    if initial is None:
        ratios = config.footprint_ratios if fov_ratio is None else tuple(fov_ratio * 2.0 ** (k / 8.0) for k in (-1, 0, 1))
        scales = [r * vis_size[0] / ir_size[0] for r in ratios]
        matrix = _coarse_search(frames, config, scales)
        start_level = top
    else:
        matrix = np.asarray(initial, np.float64)
        reach = search_px if search_px is not None else 0.03 * vis_size[0]
        start_level = 0
        while start_level < top and reach / (frames[0].base_factor * 2 ** start_level) > config.level_radius:
            start_level += 1
    matrix = _refine(frames, matrix, config, start_level)
    return _judge(frames, matrix, config)


def _judge(frames: Sequence[_Frames], matrix: np.ndarray, config: AutoRegistrationConfig) -> Estimate:
    ir_size, vis_size = frames[0].ir_size, frames[0].vis_size
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-9:
        raise RegistrationRefused("could not register the frames (no consistent alignment found); are they "
                                  "of the same scene at the same moment?")
    overlap = footprint_overlap(matrix, ir_size, vis_size)
    confidence, confirmed, total, residual = confirm(frames, matrix, config)
    if overlap < config.min_overlap:
        raise RegistrationRefused(f"the best alignment found leaves IR covering only {overlap:.0%} of the visible "
                                  f"frame (at least {config.min_overlap:.0%} needed): too little overlap, or "
                                  "frames of different scenes")
    if confidence < config.min_confidence or confirmed < config.min_confirmed:
        raise RegistrationRefused(
            f"cannot register the frames: only {confirmed} of {total} structured patches confirm the best "
            f"alignment (confidence {confidence:.2f}, at least {config.min_confidence:.2f} needed); the frames "
            "may show different scenes, or too little common structure (calibrate by points instead)")
    estimate = Estimate(matrix, ir_size, vis_size, confidence, confirmed, total, residual, overlap,
                        alignment=alignment_score(frames, matrix), pairs=len(frames))
    if len(frames) > 1:
        spread, per_pair = 0.0, []
        for f in frames:
            own = _refine([f], matrix, replace(config, max_iterations=3), 0)
            spread = max(spread, corner_distance(own, matrix, ir_size))
            per_pair.append(confirm([f], matrix, config)[0])
        estimate.agreement_px = spread
        estimate.per_pair_confidence = per_pair
    return estimate


def estimate_homography(ir: np.ndarray, vis: np.ndarray, config: AutoRegistrationConfig | None = None,
                        initial: np.ndarray | None = None, search_px: float | None = None,
                        fov_ratio: float | None = None) -> Estimate:
    """``estimate_from_pairs`` for one frame pair."""
    return estimate_from_pairs([(ir, vis)], config, initial, search_px, fov_ratio)


def check_homography(ir: np.ndarray, vis: np.ndarray, matrix: np.ndarray,
                     config: AutoRegistrationConfig | None = None) -> float:
    """How well ``matrix`` registers this pair right now: its ``alignment_score`` (see there).

    What the drift tracker compares a new estimate against. Raises ``RegistrationRefused`` for flat frames.
    """
    config = config or AutoRegistrationConfig()
    return alignment_score([_prepare(ir, vis, config)], np.asarray(matrix, np.float64))
