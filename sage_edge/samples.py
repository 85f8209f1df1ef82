"""Sample inputs: the bundled demo pair, and a synthetic pair for self-checks.

``demo_pair()`` is a real night pair shipped in the package (``sage_edge/assets/demo``, MSRS 00858N,
MIT; see its NOTICE.md): what ``sage-edge fuse --demo`` fuses on a machine with no data at all.

``synthetic_pair()`` is not a photograph; it has the structure that exercises fusion (smooth
gradients, edges, saturated and dark regions, colour, a hot object visible only
in IR). Real-data checks pass a real pair instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_pair(height: int = 240, width: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ir: H x W uint8, vis: H x W x 3 uint8 BGR)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    vis = np.empty((height, width, 3), np.float32)
    vis[..., 0] = 255 * xx / max(width - 1, 1)
    vis[..., 1] = 255 * yy / max(height - 1, 1)
    vis[..., 2] = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    vis[height // 4 : height // 2, width // 4 : width // 2] = (250, 250, 250)
    vis[height // 2 :, : width // 5] = 5
    vis += rng.normal(0, 6, vis.shape)
    ir = 60 + 40 * (yy / max(height - 1, 1)) + rng.normal(0, 4, (height, width))
    cy, cx = 2 * height // 3, 2 * width // 3
    ir[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(height, width) / 8) ** 2] = 235
    return ir.clip(0, 255).astype(np.uint8), vis.clip(0, 255).astype(np.uint8)


DEMO_STEM = "00858N"


def demo_dir() -> Path:
    """The dataset folder of the bundled demo pair (ir/ + vis/; see its NOTICE.md)."""
    from sage_edge.zoo import asset_path

    return asset_path("demo")


def demo_pair() -> tuple[Path, Path]:
    """(IR, visible) files of the bundled demo pair: MSRS 00858N, a night scene, 640x480 (MIT; NOTICE.md)."""
    from sage_edge.errors import SageEdgeError

    folder = demo_dir()
    ir, vis = folder / "ir" / f"{DEMO_STEM}.png", folder / "vis" / f"{DEMO_STEM}.png"
    for path in (ir, vis):
        if not path.is_file():
            raise SageEdgeError(f"bundled demo image {path} is missing: reinstall sage-edge")
    return ir, vis
