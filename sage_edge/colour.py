"""SAGE's colour conventions: the one place they are written down.

Every function here works unchanged on numpy arrays *and* torch tensors, so the
host-side runtime (numpy), training (torch) and the exported end-to-end ONNX
graph (torch, traced) all run literally the same arithmetic. ``floor`` is
passed in (``np.floor`` or ``torch.floor``) because it is the only operation
the two libraries spell differently.

Forward conversion (uint8 BGR -> Y, Cr, Cb, or grey) reproduces OpenCV's 8-bit
``COLOR_BGR2YCrCb`` and ``COLOR_BGR2GRAY`` bit-exactly (tested on all 2**24
colours). OpenCV uses fixed-point coefficients with round-half-up
(``CV_DESCALE``): 14 bits for YCrCb, 15 bits for grey. Every intermediate is an
integer below 2**24, so float32 holds it exactly and ``floor(x / 2**n)`` equals
OpenCV's arithmetic shift, on CPU and GPU alike.

Inverse conversion follows the published SAGE code (see
``shared/data/sage_official/README.md``):
    R = Y + 1.403 (Cr - 0.5)
    G = Y - 0.714 (Cr - 0.5) - 0.344 (Cb - 0.5)
    B = Y + 1.773 (Cb - 0.5)
with Y, Cr, Cb in [0, 1]; then clamp to [0, 1], x 255, + 0.5, clamp, truncate.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

Array = TypeVar("Array")  # np.ndarray or torch.Tensor
Floor = Callable[[Array], Array]

# OpenCV's fixed-point constants: color_yuv.simd.hpp (yuv_shift = 14) for YCrCb and
# color_rgb.simd.hpp (gray_shift = 15) for grey. The two round differently on ~0.3 % of colours.
YCRCB_SHIFT = 14
R_TO_Y, G_TO_Y, B_TO_Y = 4899.0, 9617.0, 1868.0
R_MINUS_Y_TO_CR, B_MINUS_Y_TO_CB = 11682.0, 9241.0
CHROMA_OFFSET = 128.0 * (1 << YCRCB_SHIFT)
GRAY_SHIFT = 15
R_TO_GRAY, G_TO_GRAY, B_TO_GRAY = 9798.0, 19235.0, 3735.0

# SAGE's inverse (float) coefficients.
CR_TO_R, CR_TO_G, CB_TO_G, CB_TO_B = 1.403, 0.714, 0.344, 1.773

MAX_LEVEL = 255.0


def _descale(x: Array, shift: int, floor: Floor) -> Array:
    return floor((x + float(1 << (shift - 1))) / float(1 << shift))


def bgr_to_gray(b: Array, g: Array, r: Array, floor: Floor = np.floor) -> Array:
    """Grey level (0..255, integer-valued float) exactly as cv2.COLOR_BGR2GRAY on uint8."""
    return _descale(r * R_TO_GRAY + g * G_TO_GRAY + b * B_TO_GRAY, GRAY_SHIFT, floor)


def bgr_to_ycrcb(b: Array, g: Array, r: Array, floor: Floor = np.floor) -> tuple[Array, Array, Array]:
    """Y, Cr, Cb (0..255, integer-valued float) exactly as cv2.COLOR_BGR2YCrCb on uint8.

    Inputs are float arrays holding uint8 levels.
    """
    y = _descale(r * R_TO_Y + g * G_TO_Y + b * B_TO_Y, YCRCB_SHIFT, floor)
    cr = _descale((r - y) * R_MINUS_Y_TO_CR + CHROMA_OFFSET, YCRCB_SHIFT, floor).clip(0.0, MAX_LEVEL)
    cb = _descale((b - y) * B_MINUS_Y_TO_CB + CHROMA_OFFSET, YCRCB_SHIFT, floor).clip(0.0, MAX_LEVEL)
    return y, cr, cb


def to_unit(levels: Array) -> Array:
    """uint8 levels (0..255) -> [0, 1]: the network's input normalisation."""
    return levels / MAX_LEVEL


def ycrcb_unit_to_bgr(y: Array, cr: Array, cb: Array) -> tuple[Array, Array, Array]:
    """SAGE's inverse: fused Y and the visible Cr, Cb (all in [0, 1]) -> B, G, R in ~[0, 1], unclamped."""
    cr_centred = cr - 0.5
    cb_centred = cb - 0.5
    r = y + CR_TO_R * cr_centred
    g = y - CR_TO_G * cr_centred - CB_TO_G * cb_centred
    b = y + CB_TO_B * cb_centred
    return b, g, r


def unit_to_levels(x: Array, floor: Floor = np.floor) -> Array:
    """[0, 1] -> integer-valued float levels 0..255: clamp, x 255, + 0.5, clamp, truncate."""
    return floor((x.clip(0.0, 1.0) * MAX_LEVEL + 0.5).clip(0.0, MAX_LEVEL))


# --- numpy conveniences for whole images (H x W x C uint8, OpenCV's layout) -------------------


def gray_from_bgr_image(bgr: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 BGR -> H x W uint8 grey (== cv2.COLOR_BGR2GRAY)."""
    planes = bgr.astype(np.float32)
    return bgr_to_gray(planes[..., 0], planes[..., 1], planes[..., 2]).astype(np.uint8)


def ycrcb_from_bgr_image(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H x W x 3 uint8 BGR -> Y, Cr, Cb as H x W float32 levels 0..255 (== cv2.COLOR_BGR2YCrCb)."""
    planes = bgr.astype(np.float32)
    return bgr_to_ycrcb(planes[..., 0], planes[..., 1], planes[..., 2])


def bgr_image_from_fused_y(fused_y: np.ndarray, cr_levels: np.ndarray, cb_levels: np.ndarray) -> np.ndarray:
    """Fused Y (H x W, [-1, 1] float) + visible Cr/Cb levels -> H x W x 3 uint8 BGR."""
    b, g, r = ycrcb_unit_to_bgr(fused_y, to_unit(cr_levels), to_unit(cb_levels))
    return np.stack([unit_to_levels(c) for c in (b, g, r)], axis=-1).astype(np.uint8)


def gray_image_from_fused_y(fused_y: np.ndarray) -> np.ndarray:
    """Fused Y (H x W, [-1, 1] float) -> H x W uint8 grey."""
    return unit_to_levels(fused_y).astype(np.uint8)
