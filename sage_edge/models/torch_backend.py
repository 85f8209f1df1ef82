"""Torch eager backend: runs .pt/.safetensors student weights through the same uint8 graph as export.

Lives outside ``runtime/`` because it imports torch; it implements runtime's ``Backend``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from sage_edge import io_contract as io
from sage_edge.runtime.backend import Backend, TensorSpec


class TorchBackend(Backend):
    name = "torch"

    @staticmethod
    def is_available() -> bool:
        import torch  # noqa: F401

        return True

    def __init__(self, model_path: str | os.PathLike, device: str = "cpu", border_pad: int | None = None) -> None:
        from sage_edge.errors import SageEdgeError

        try:
            import torch
        except ImportError:
            raise SageEdgeError(
                f"{model_path}: .pt/.safetensors models need torch (pip install 'sage-edge[export]'), "
                "or export to ONNX on a machine that has it"
            ) from None
        from sage_edge.models.checkpoint import load_student
        from sage_edge.models.border import DEFAULT_BORDER_PAD
        from sage_edge.models.end_to_end import EndToEndFusion

        self.torch = torch
        self.device = torch.device(device)
        self.model_path = Path(model_path)
        if border_pad is not None and border_pad < 0:
            raise SageEdgeError(f"--border-pad must be 0 or more, got {border_pad}")
        self.border_pad = DEFAULT_BORDER_PAD if border_pad is None else int(border_pad)
        self.module = EndToEndFusion(load_student(model_path), self.border_pad).to(self.device).eval()

    @property
    def inputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(io.IR, np.dtype(np.uint8), (1, "H", "W", 1)),
            TensorSpec(io.VIS, np.dtype(np.uint8), (1, "H", "W", 3)),
        ]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(io.FUSED, np.dtype(np.uint8), (1, "H", "W", 3)),
            TensorSpec(io.FUSED_Y, np.dtype(np.uint8), (1, "H", "W", 1)),
        ]

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            fused, fused_y = self.module(
                torch.from_numpy(np.ascontiguousarray(feed[io.IR])).to(self.device),
                torch.from_numpy(np.ascontiguousarray(feed[io.VIS])).to(self.device),
            )
        return {io.FUSED: fused.cpu().numpy(), io.FUSED_Y: fused_y.cpu().numpy()}

    def describe(self) -> str:
        return f"torch {self.torch.__version__} eager ({self.device})"
