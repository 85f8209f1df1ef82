"""Image reading and writing for fusion: the one place files become arrays.

Conventions (OpenCV's):
    IR      -> H x W uint8. 8-bit grey, 3-channel grey (converted as
               cv2.COLOR_BGR2GRAY), 4-channel (alpha dropped) and 16-bit
               (percentile stretch, see ``sage_edge.thermal``) all accepted.
    visible -> H x W x 3 uint8 BGR, or H x W uint8 if the image is grey
               (one channel, or three identical channels as TNO stores
               them): a grey visible image gives a grey fused image.
               16-bit visible images are scaled to 8 bits.
Writing picks PNG/JPEG/... from the extension and is atomic.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from sage_edge.atomic import write_bytes_atomic
from sage_edge.colour import gray_from_bgr_image
from sage_edge.errors import SageEdgeError
from sage_edge.thermal import normalise_ir

WRITABLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_EXTENSIONS = WRITABLE_EXTENSIONS + (".pgm", ".ppm", ".pnm", ".jp2", ".exr", ".hdr")


def _check_not_truncated(path: Path, data: bytes) -> None:
    # libpng/libjpeg often decode a truncated file "successfully" (grey fill + a warning on
    # stderr), so look for the format's end marker ourselves.
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        raise SageEdgeError(f"{path}: truncated PNG (no IEND chunk): the file is incomplete; copy or save it again")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise SageEdgeError(f"{path}: truncated JPEG (no end-of-image marker): the file is incomplete; "
                            "copy or save it again")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode any image OpenCV reads, unchanged (depth and channels kept). One-line errors."""
    path = Path(path)
    if not path.exists():
        raise SageEdgeError(f"{path}: no such file")
    if path.is_dir():
        raise SageEdgeError(f"{path}: is a directory, expected an image file")
    data = path.read_bytes()
    if not data:
        raise SageEdgeError(f"{path}: empty file")
    _check_not_truncated(path, data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise SageEdgeError(f"{path}: not an image OpenCV can decode (corrupt or unsupported format)")
    if image.dtype not in (np.uint8, np.uint16):
        raise SageEdgeError(f"{path}: unsupported pixel type {image.dtype}; use 8- or 16-bit images")
    return image


def _drop_alpha(image: np.ndarray) -> np.ndarray:
    return image[..., :3] if image.ndim == 3 and image.shape[2] == 4 else image


def _squeeze_single_channel(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


def as_ir(image: np.ndarray) -> np.ndarray:
    """Any decoded IR frame -> H x W uint8."""
    image = _squeeze_single_channel(_drop_alpha(image))
    if image.ndim == 3:
        if image.dtype == np.uint16:
            image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        image = gray_from_bgr_image(image)
    return normalise_ir(image)


def as_visible(image: np.ndarray) -> np.ndarray:
    """Any decoded visible frame -> H x W x 3 uint8 BGR, or H x W uint8 if grey."""
    image = _squeeze_single_channel(_drop_alpha(image))
    if image.dtype == np.uint16:
        image = np.floor(image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if image.ndim == 3 and np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]):
        image = np.ascontiguousarray(image[..., 0])
    return image


def read_ir(path: str | os.PathLike) -> np.ndarray:
    return as_ir(read_image(path))


def is_colour(image: np.ndarray, min_mean_spread: float = 0.5) -> bool:
    """Whether a decoded frame has colour: 3+ channels that differ by more than ``min_mean_spread``
    levels on average (JPEG leaves a little chroma noise in grey images; a real colour photo, even at
    night, averages well above 1 level)."""
    if image.ndim != 3 or image.shape[2] < 3:
        return False
    planes = image[..., :3]
    spread = planes.max(axis=2).astype(np.float32) - planes.min(axis=2).astype(np.float32)
    return float(spread.mean()) > min_mean_spread * (257.0 if image.dtype == np.uint16 else 1.0)


def check_not_swapped(ir_raw: np.ndarray, vis_raw: np.ndarray, ir_name: object = "IR",
                      vis_name: object = "visible", hint: str = "IR comes first: sage-edge fuse IR VIS") -> None:
    """A colour IR next to a grey visible image means the two were given the wrong way round."""
    if is_colour(ir_raw) and as_visible(vis_raw).ndim == 2:
        raise SageEdgeError(
            f"the IR image {ir_name} is in colour but the visible image {vis_name} is grey: they look swapped "
            f"({hint}); a false-colour thermal image must be saved as grey first"
        )


def read_pair(ir_path: str | os.PathLike, vis_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(IR, visible) as ``read_ir`` and ``read_visible`` give them, after checking they are not swapped."""
    ir_raw, vis_raw = read_image(ir_path), read_image(vis_path)
    check_not_swapped(ir_raw, vis_raw, ir_path, vis_path)
    return as_ir(ir_raw), as_visible(vis_raw)


def read_visible(path: str | os.PathLike) -> np.ndarray:
    return as_visible(read_image(path))


def check_writable_extension(path: str | os.PathLike) -> None:
    if Path(path).is_dir():
        raise SageEdgeError(f"{path}: is a directory; give an image file name, e.g. {Path(path) / 'fused.png'}")
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE_EXTENSIONS:
        raise SageEdgeError(
            f"{path}: unknown output format '{suffix or '(none)'}'; use one of {', '.join(WRITABLE_EXTENSIONS)}"
        )


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Encode by extension and write atomically (temp file, then rename)."""
    check_writable_extension(path)
    ok, encoded = cv2.imencode(Path(path).suffix.lower(), image)
    if not ok:
        raise SageEdgeError(f"{path}: OpenCV could not encode the image")
    write_bytes_atomic(path, encoded.tobytes())
