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
with Y, Cr, Cb in [0, 1]; then clamp to [0, 1], x 255, + 0.5, clamp, truncate
(``ycrcb_unit_to_bgr`` + ``unit_to_levels``: the reference, and training's differentiable form).

What the product runs (the end-to-end graph and the runtime's host path alike) is the same maths
arranged for few, cheap operations on whole planes (``luma_chroma_planes``, ``chroma_offsets``,
``fused_levels``): the fixed-point divisions are folded into the coefficients (exact: every
product and sum keeps at most 23 significant bits), and the inverse works in levels with the
chroma terms and the rounding half computed once per frame, before the network:
    level_c = floor(clip(255 Y + offset_c, 0.5, 255.5)),
    offset_B = 1.773 Cb' + 0.5 - 127.5 * 1.773, offset_R = 1.403 Cr' + 0.5 - 127.5 * 1.403,
    offset_G = -0.714 Cr' - 0.344 Cb' + 0.5 + 127.5 * (0.714 + 0.344)       (Cr', Cb' in levels).
That is the formula above up to float32 rounding (a level differs only where the exact value sits
within ~1e-4 of a rounding edge). Planes, not interleaved pixels, because ONNX Runtime's
element-wise kernels take a slow per-element path when the innermost axis is 1 or 3 (an
N x H x W x 1 operand costs ~200x an N x 1 x H x W one).
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


# The same constants folded for whole-plane arithmetic (exact in float32: see the module docstring).
Y_FROM_B, Y_FROM_G, Y_FROM_R = (c / (1 << YCRCB_SHIFT) for c in (B_TO_Y, G_TO_Y, R_TO_Y))
CR_FROM_R_MINUS_Y = R_MINUS_Y_TO_CR / (1 << YCRCB_SHIFT)
CB_FROM_B_MINUS_Y = B_MINUS_Y_TO_CB / (1 << YCRCB_SHIFT)
CHROMA_ROUNDED_OFFSET = 128.5  # (CHROMA_OFFSET + half) / 2**YCRCB_SHIFT
GRAY_FROM_B, GRAY_FROM_G, GRAY_FROM_R = (c / (1 << GRAY_SHIFT) for c in (B_TO_GRAY, G_TO_GRAY, R_TO_GRAY))
_CENTRE_LEVEL = 0.5 * MAX_LEVEL


def luma_chroma_planes(b: Array, g: Array, r: Array, floor: Floor = np.floor) -> tuple[Array, Array, Array]:
    """Y, Cr, Cb levels (integer-valued floats) from B, G, R level planes: ``bgr_to_ycrcb``, in 13 ops."""
    y = floor(b * Y_FROM_B + g * Y_FROM_G + r * Y_FROM_R + 0.5)
    cr = floor((r - y) * CR_FROM_R_MINUS_Y + CHROMA_ROUNDED_OFFSET).clip(0.0, MAX_LEVEL)
    cb = floor((b - y) * CB_FROM_B_MINUS_Y + CHROMA_ROUNDED_OFFSET).clip(0.0, MAX_LEVEL)
    return y, cr, cb


def chroma_offsets(cr_levels: Array, cb_levels: Array) -> tuple[Array, Array, Array]:
    """Per-pixel B, G, R offsets (levels, rounding half included) that SAGE's inverse adds to 255 x fused Y."""
    off_b = cb_levels * CB_TO_B + (0.5 - _CENTRE_LEVEL * CB_TO_B)
    off_g = cr_levels * -CR_TO_G + cb_levels * -CB_TO_G + (0.5 + _CENTRE_LEVEL * (CR_TO_G + CB_TO_G))
    off_r = cr_levels * CR_TO_R + (0.5 - _CENTRE_LEVEL * CR_TO_R)
    return off_b, off_g, off_r


def fused_levels(fused_y: Array, offsets: tuple[Array, ...], floor: Floor = np.floor) -> tuple[Array, ...]:
    """Levels (integer-valued floats) of fused Y (unit scale) + each offset; offset 0.5 gives the grey level."""
    y_levels = fused_y * MAX_LEVEL
    return tuple(floor((y_levels + off).clip(0.5, MAX_LEVEL + 0.5)) for off in offsets)


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
    b, g, r = (bgr[..., c].astype(np.float32) for c in range(3))
    return np.floor(b * GRAY_FROM_B + g * GRAY_FROM_G + r * GRAY_FROM_R + 0.5).astype(np.uint8)


def ycrcb_from_bgr_image(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H x W x 3 uint8 BGR -> Y, Cr, Cb as H x W float32 levels 0..255 (== cv2.COLOR_BGR2YCrCb)."""
    return luma_chroma_planes(*(bgr[..., c].astype(np.float32) for c in range(3)))


def bgr_image_from_fused_y(fused_y: np.ndarray, cr_levels: np.ndarray, cb_levels: np.ndarray) -> np.ndarray:
    """Fused Y (H x W, [-1, 1] float) + visible Cr/Cb levels -> H x W x 3 uint8 BGR (as the end-to-end graph)."""
    offsets = chroma_offsets(cr_levels.astype(np.float32), cb_levels.astype(np.float32))
    return np.stack(fused_levels(fused_y.astype(np.float32), offsets), axis=-1).astype(np.uint8)


def gray_image_from_fused_y(fused_y: np.ndarray) -> np.ndarray:
    """Fused Y (H x W, [-1, 1] float) -> H x W uint8 grey (as the end-to-end graph's fused_y)."""
    (grey,) = fused_levels(fused_y.astype(np.float32), (np.float32(0.5),))
    return grey.astype(np.uint8)
