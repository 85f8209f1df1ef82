"""ONNX Runtime backend: the embedded default, and what CI runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from sage_edge.errors import SageEdgeError, first_line
from sage_edge.io_contract import BORDER_PAD, BORDER_PAD_METADATA
from sage_edge.runtime.backend import Backend, TensorSpec, frame_too_small

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
        border_pad: int | None = None,
    ) -> None:
        """``border_pad``: pixels mirrored around the image inside the graph; None keeps the model's own
        (``sage_edge.io_contract``). Graphs exported by sage-edge take any amount; other graphs only their own."""
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        from sage_edge.runtime.cpu_tuning import resolve_threads

        self._run_errors = (ort_state.InvalidArgument, ort_state.Fail)
        self.model_path = Path(model_path)
        self.threads = resolve_threads(self.name, intra_op_threads)  # 0: what was measured best here
        available = ort.get_available_providers()
        chosen = list(providers) if providers else [p for p in PREFERRED_PROVIDERS if p in available]
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # fatal only: ORT would print its warnings and errors beside the one line that infer() raises for them
        options.log_severity_level = 4
        try:
            self.session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=chosen)
        except Exception as exc:  # ORT raises several private exception types for bad files
            reason = first_line(exc)
            raise SageEdgeError(f"{self.model_path}: not a loadable ONNX model ({reason[:200]})") from None
        self._inputs = [self._spec(arg) for arg in self.session.get_inputs()]
        self._outputs = [self._spec(arg) for arg in self.session.get_outputs()]
        self._extra_feed = self._border_pad_feed(border_pad)

    def _border_pad_feed(self, border_pad: int | None) -> dict[str, np.ndarray]:
        if border_pad is None:
            return {}
        if border_pad < 0:
            raise SageEdgeError(f"--border-pad must be 0 or more, got {border_pad}")
        if BORDER_PAD in {arg.name for arg in self.session.get_overridable_initializers()}:
            return {BORDER_PAD: np.array([border_pad], np.int64)}
        metadata = self.session.get_modelmeta().custom_metadata_map
        if BORDER_PAD_METADATA not in metadata:
            # e.g. a graph quantized or converted by a tool that folded the padding and dropped the metadata
            raise SageEdgeError(f"{self.model_path}: the graph does not say which border padding it has; leave "
                                f"--border-pad out, or re-export it from its weights: `sage-edge export --model "
                                f"WEIGHTS --border-pad {border_pad} -o OUT.onnx`")
        built = int(metadata[BORDER_PAD_METADATA])
        if built != border_pad:
            raise SageEdgeError(f"{self.model_path}: its border padding ({built}) is fixed in the graph; leave "
                                f"--border-pad out, or re-export it from its weights: `sage-edge export --model "
                                f"WEIGHTS --border-pad {border_pad} -o OUT.onnx`")
        return {}

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
        try:
            return dict(zip(names, self.session.run(names, {**feed, **self._extra_feed})))
        except self._run_errors as exc:
            message = first_line(exc)
            if "Pad reflect" in message:  # mirroring needs more pixels than it mirrors (pad < side)
                raise frame_too_small(self.model_path, feed, "pass --border-pad 0") from None
            raise SageEdgeError(f"{self.model_path}: ONNX Runtime: {message[:300]}") from None

    def describe(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"onnxruntime {self._version()} ({', '.join(self.session.get_providers())}, {threads})"

    @staticmethod
    def _version() -> str:
        import onnxruntime as ort

        return ort.__version__
