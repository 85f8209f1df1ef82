"""Turn image pairs into fused images through any backend.

The fuser owns everything between "two decoded frames" and "one fused frame"
that is not the network: layout, normalisation for float graphs, colour
re-assembly, grey handling. It behaves the same over every backend.
"""
from __future__ import annotations

import numpy as np

from sage_edge import colour
from sage_edge import io_contract as io
from sage_edge.errors import SageEdgeError
from sage_edge.runtime.backend import Backend


def check_same_size(ir: np.ndarray, vis: np.ndarray, what: str = "pair") -> None:
    if ir.shape[:2] != vis.shape[:2]:
        raise SageEdgeError(
            f"{what}: IR is {ir.shape[1]}x{ir.shape[0]} but visible is {vis.shape[1]}x{vis.shape[0]} "
            "(register them first, or pass --resize to resize IR to the visible size)"
        )


class Fuser:
    """``Fuser(backend).fuse(ir, vis)``: H x W uint8 IR + H x W x 3 BGR (or H x W grey) uint8 visible."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.io_kind = io.io_kind(  # errors name the model file when the backend knows it
            [t.name for t in backend.inputs], [t.name for t in backend.outputs],
            str(getattr(backend, "model_path", None) or backend.describe()),
        )
        self._input_dtypes = {t.name: t.dtype for t in backend.inputs}

    def fuse(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """Fused image: H x W x 3 uint8 BGR, or H x W uint8 when ``vis`` is grey."""
        if ir.ndim != 2 or ir.dtype != np.uint8:
            raise SageEdgeError(f"IR must be H x W uint8, got {ir.shape} {ir.dtype}")
        check_same_size(ir, vis)
        grey = vis.ndim == 2
        if self.io_kind == "uint8":
            return self._fuse_uint8(ir, vis, grey)
        return self._fuse_float(ir, vis, grey)

    def _fuse_uint8(self, ir: np.ndarray, vis: np.ndarray, grey: bool) -> np.ndarray:
        vis_bgr = np.repeat(vis[..., None], 3, axis=2) if grey else vis
        out = self.backend.infer(
            {
                io.IR: np.ascontiguousarray(ir[None, :, :, None]),
                io.VIS: np.ascontiguousarray(vis_bgr[None]),
            }
        )
        return out[io.FUSED_Y][0, :, :, 0] if grey else out[io.FUSED][0]

    def _fuse_float(self, ir: np.ndarray, vis: np.ndarray, grey: bool) -> np.ndarray:
        if grey:
            y_levels = vis.astype(np.float32)
        else:
            y_levels, cr_levels, cb_levels = colour.ycrcb_from_bgr_image(vis)
        dtype = self._input_dtypes[io.VIS_Y]
        out = self.backend.infer(
            {
                io.VIS_Y: colour.to_unit(y_levels)[None, None].astype(dtype),
                io.IR: colour.to_unit(ir.astype(np.float32))[None, None].astype(self._input_dtypes[io.IR]),
            }
        )
        fused_y = out[io.FUSED_Y][0, 0].astype(np.float32)
        if grey:
            return colour.gray_image_from_fused_y(fused_y)
        return colour.bgr_image_from_fused_y(fused_y, cr_levels, cb_levels)
