"""SAGE's colour conventions: bit-exact with OpenCV forward, the published inverse, numpy == torch."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sage_edge import colour


@pytest.fixture(scope="module")
def every_colour() -> np.ndarray:
    """All 2**24 BGR colours as a 4096 x 4096 x 3 image."""
    v = np.arange(1 << 24, dtype=np.uint32)
    return np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)


def test_ycrcb_matches_opencv_on_every_colour(every_colour: np.ndarray) -> None:
    y, cr, cb = colour.ycrcb_from_bgr_image(every_colour)
    expected = cv2.cvtColor(every_colour, cv2.COLOR_BGR2YCrCb)
    for ours, channel in ((y, 0), (cr, 1), (cb, 2)):
        assert np.array_equal(ours.astype(np.uint8), expected[..., channel])


def test_gray_matches_opencv_on_every_colour(every_colour: np.ndarray) -> None:
    assert np.array_equal(colour.gray_from_bgr_image(every_colour), cv2.cvtColor(every_colour, cv2.COLOR_BGR2GRAY))


def test_torch_arithmetic_equals_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (64, 64, 3)).astype(np.float32)
    ours = colour.bgr_to_ycrcb(bgr[..., 0], bgr[..., 1], bgr[..., 2])
    t = torch.from_numpy(bgr)
    theirs = colour.bgr_to_ycrcb(t[..., 0], t[..., 1], t[..., 2], floor=torch.floor)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b.numpy())


def test_inverse_is_sage_formula_and_rounding() -> None:
    # Y = 0.5, Cr = 0.75, Cb = 0.25: R = 0.5 + 1.403*0.25, G = 0.5 - 0.714*0.25 + 0.344*0.25, B = 0.5 - 1.773*0.25
    y = np.array([[0.5]], np.float32)
    bgr = colour.bgr_image_from_fused_y(y, np.array([[0.75 * 255]]), np.array([[0.25 * 255]]))
    expected_rgb = [0.5 + 1.403 * 0.25, 0.5 - 0.714 * 0.25 + 0.344 * 0.25, 0.5 - 1.773 * 0.25]
    expected_bgr = [int(min(max(v, 0), 1) * 255 + 0.5) for v in expected_rgb[::-1]]
    assert bgr[0, 0].tolist() == expected_bgr


def test_unit_to_levels_clamps_and_rounds_half_up() -> None:
    x = np.array([-0.3, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 1.7], np.float32)
    assert colour.unit_to_levels(x).tolist() == [0, 0, 1, 2, 255, 255]


def test_grey_visible_gives_exact_luminance() -> None:
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    y, cr, cb = colour.ycrcb_from_bgr_image(np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(y, grey) and np.all(cr == 128) and np.all(cb == 128)
