"""Thermal (IR) normalisation: the one place a raw IR frame becomes the network's 8-bit input.

8-bit IR (a camera's own AGC output, or any grey image) passes through unchanged.
16-bit IR (FLIR Boson/Lepton Y16 radiometric counts) is mapped to 8 bits by a
robust percentile stretch: the ``low_percentile`` (default 1 %) and
``high_percentile`` (default 99 %) of the frame's counts map to 0 and 255, and
counts outside are clipped. Percentiles rather than min/max keep a single hot
pixel (the sun, an exhaust) or dead pixel from flattening the whole image.

For live video, ``ThermalNormaliser`` smooths the two bounds over time with an
exponential moving average so the picture does not flicker as objects enter
and leave the frame. ``fuse`` uses it with smoothing off (each image alone).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_LOW_PERCENTILE = 1.0
DEFAULT_HIGH_PERCENTILE = 99.0


def percentile_bounds(counts: np.ndarray, low: float, high: float) -> tuple[float, float]:
    lo, hi = np.percentile(counts, [low, high])
    return float(lo), float(hi)


def stretch_to_uint8(counts: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(hi - lo, 1.0)  # a flat frame (lens cap on) maps to black, not to NaN
    scaled = (counts.astype(np.float32) - lo) * (255.0 / span)
    return np.floor(scaled.clip(0.0, 255.0) + 0.5).clip(0, 255).astype(np.uint8)


@dataclass
class ThermalNormaliser:
    """Stateful 16-bit -> 8-bit mapping. ``smoothing`` in [0, 1): weight kept from the previous bounds."""

    low_percentile: float = DEFAULT_LOW_PERCENTILE
    high_percentile: float = DEFAULT_HIGH_PERCENTILE
    smoothing: float = 0.0
    _bounds: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def reset(self) -> None:
        self._bounds = None

    def __call__(self, ir: np.ndarray) -> np.ndarray:
        """H x W uint8 or uint16 -> H x W uint8."""
        if ir.dtype == np.uint8:
            return ir
        lo, hi = percentile_bounds(ir, self.low_percentile, self.high_percentile)
        if self._bounds is not None and self.smoothing > 0.0:
            k = self.smoothing
            lo = k * self._bounds[0] + (1.0 - k) * lo
            hi = k * self._bounds[1] + (1.0 - k) * hi
        self._bounds = (lo, hi)
        return stretch_to_uint8(ir, lo, hi)


def normalise_ir(ir: np.ndarray) -> np.ndarray:
    """One IR image (uint8 or uint16, H x W) -> uint8, no temporal state."""
    return ThermalNormaliser()(ir)
