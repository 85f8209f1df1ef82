"""ONNX Runtime backend: the embedded default, and what CI runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.backend import Backend, TensorSpec

# ONNX Runtime's type strings -> numpy.
_ORT_TYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}
# Preferred execution providers, best first; the CPU one is always there.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    @staticmethod
    def is_available() -> bool:
        import onnxruntime  # noqa: F401

        return True

    def __init__(
        self,
        model_path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        from sage_edge.runtime.cpu_tuning import resolve_threads

        self.model_path = Path(model_path)
        self.threads = resolve_threads(self.name, intra_op_threads)  # 0: what was measured best here
        available = ort.get_available_providers()
        chosen = list(providers) if providers else [p for p in PREFERRED_PROVIDERS if p in available]
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # errors only: ORT's warnings would bury our one-line errors
        try:
            self.session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=chosen)
        except Exception as exc:  # ORT raises several private exception types for bad files
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SageEdgeError(f"{self.model_path}: not a loadable ONNX model ({first_line[:200]})") from None
        self._inputs = [self._spec(arg) for arg in self.session.get_inputs()]
        self._outputs = [self._spec(arg) for arg in self.session.get_outputs()]

    @staticmethod
    def _spec(arg: object) -> TensorSpec:
        dtype = _ORT_TYPES.get(arg.type)  # type: ignore[attr-defined]
        if dtype is None:
            raise SageEdgeError(f"unsupported ONNX tensor type {arg.type} for '{arg.name}'")  # type: ignore[attr-defined]
        return TensorSpec(arg.name, np.dtype(dtype), tuple(arg.shape))  # type: ignore[attr-defined]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self._outputs]
        return dict(zip(names, self.session.run(names, dict(feed))))

    def describe(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"onnxruntime {self._version()} ({', '.join(self.session.get_providers())}, {threads})"

    @staticmethod
    def _version() -> str:
        import onnxruntime as ort

        return ort.__version__
