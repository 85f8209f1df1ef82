"""OpenVINO backend: Intel's CPU runtime, often faster than ONNX Runtime on x86 (``pip install 'sage-edge[openvino]'``).

It runs the same files as the ONNX Runtime backend (``.onnx``, uint8 or float I/O), plus OpenVINO's own IR
(``.xml`` beside its ``.bin``), such as the INT8 model ``sage-edge quantize --target openvino`` writes.

Precision is OpenVINO's ``INFERENCE_PRECISION_HINT`` for the layers that are not quantized:

    fp32  f32 everywhere: within one grey level of ONNX Runtime.
    bf16  bfloat16 where the CPU has it natively (AVX512_BF16 or AMX: Xeon Sapphire Rapids and later).
    fp16  float16 where the CPU has it natively (ARM v8.2+ with FP16 arithmetic, AVX512_FP16/AMX-FP16 Xeons).
    int8  a quantized model (FakeQuantize or QuantizeLinear/DequantizeLinear nodes) runs its INT8 layers in
          INT8 (VNNI/AMX when present, AVX2 ``vpmaddubsw`` otherwise); the rest in f32.

On a CPU without native bf16/fp16 OpenVINO ignores the hint and runs f32 (it does not emulate): ``describe()``
reports the precision the compiled model really uses, read back from OpenVINO, so nothing is claimed that
did not happen.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from sage_edge.errors import SageEdgeError, first_line
from sage_edge.io_contract import BORDER_PAD_METADATA
from sage_edge.runtime.backend import Backend, TensorSpec, frame_size, frame_too_small

# sage-edge precision -> OpenVINO inference precision hint.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
# OpenVINO element type names -> numpy.
_OV_TYPES = {"u8": np.uint8, "i8": np.int8, "f32": np.float32, "f16": np.float16, "i32": np.int32, "i64": np.int64}


def is_quantized(model: "object") -> bool:
    """True when an ``openvino.Model`` carries INT8 quantization (FakeQuantize or Q/DQ pairs)."""
    kinds = {op.get_type_name() for op in model.get_ops()}  # type: ignore[attr-defined]
    return bool(kinds & {"FakeQuantize", "QuantizeLinear", "DequantizeLinear"})


# Where ``sage-edge quantize --target openvino`` records the border padding in the IR's rt_info.
BORDER_PAD_RT_KEY = "sage_edge_border_pad"


def built_border_pad(model_path: Path, model: "object") -> int | None:
    """The border padding OpenVINO runs ``model`` with, or None when the file does not say.

    OpenVINO's ONNX reader turns an initializer that is also a graph input (``border_pad``) into a constant,
    as TensorRT's parser does, so the amount is the one exported; ONNX metadata is read with ONNX Runtime
    (a base dependency), an IR's from its rt_info.
    """
    if model_path.suffix.lower() == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # not the warning about an overridable initializer: that is the design
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        value = session.get_modelmeta().custom_metadata_map.get(BORDER_PAD_METADATA)
    else:
        rt_info = model.get_rt_info()  # type: ignore[attr-defined]
        value = rt_info[BORDER_PAD_RT_KEY].astype(str) if BORDER_PAD_RT_KEY in rt_info else None
    return None if value is None else int(value)


def check_border_pad(model_path: Path, model: "object", wanted: int) -> None:
    """One line unless the model pads by ``wanted`` (OpenVINO cannot change a constant's value per session)."""
    if wanted < 0:
        raise SageEdgeError(f"--border-pad must be 0 or more, got {wanted}")
    built = built_border_pad(model_path, model)
    if built is None:
        raise SageEdgeError(f"{model_path}: the model does not say which border padding it has; leave --border-pad "
                            f"out, or use --backend onnxruntime")
    if built != wanted:
        raise SageEdgeError(f"{model_path}: its border padding ({built}) is fixed for OpenVINO; leave --border-pad "
                            f"out, use --backend onnxruntime, or re-export it from its weights: `sage-edge export "
                            f"--model WEIGHTS --border-pad {wanted} -o OUT.onnx`")


class OpenVinoBackend(Backend):
    name = "openvino"

    @staticmethod
    def is_available() -> bool:
        import openvino  # noqa: F401

        return True

    def __init__(self, model_path: str | os.PathLike, precision: str = "fp32", threads: int = 0,
                 device: str = "CPU", border_pad: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise SageEdgeError("the openvino backend needs OpenVINO: pip install 'sage-edge[openvino]'") from None
        if precision not in PRECISION_HINTS:
            raise SageEdgeError(f"unknown precision '{precision}' for openvino; use {', '.join(PRECISION_HINTS)}")
        self.model_path = Path(model_path)
        self.requested_precision = precision
        core = ov.Core()
        try:
            model = core.read_model(str(self.model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line texts
            first = first_line(exc)
            raise SageEdgeError(f"{self.model_path}: OpenVINO cannot read this model ({first[:200]})") from None
        if border_pad is not None:
            check_border_pad(self.model_path, model, border_pad)
        # OpenVINO's reflect Pad does not refuse a frame smaller than it mirrors (it returns no image): check here
        self.border_pad = built_border_pad(self.model_path, model) or 0
        self.quantized = is_quantized(model)
        if precision == "int8" and not self.quantized:
            raise SageEdgeError(f"{self.model_path}: --precision int8 needs a quantized model; make one with "
                                f"`sage-edge quantize {self.model_path} --target openvino --calib DIR -o OUT.xml`")
        from sage_edge.runtime.cpu_tuning import resolve_threads

        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY",
                                     "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
                                     "INFERENCE_NUM_THREADS": resolve_threads(self.name, threads)}
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            first = first_line(exc)
            raise SageEdgeError(f"{self.model_path}: OpenVINO cannot compile this model ({first[:200]})") from None
        self.request = self.compiled.create_infer_request()
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what really runs, as OpenVINO says
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self._inputs = [self._spec(port) for port in self.compiled.inputs]
        self._outputs = [self._spec(port) for port in self.compiled.outputs]

    @staticmethod
    def _spec(port: "object") -> TensorSpec:
        name = port.get_any_name()  # type: ignore[attr-defined]
        kind = port.get_element_type().get_type_name()  # type: ignore[attr-defined]
        if kind not in _OV_TYPES:
            raise SageEdgeError(f"unsupported OpenVINO tensor type {kind} for '{name}'")
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())  # type: ignore[attr-defined]
        return TensorSpec(name, np.dtype(_OV_TYPES[kind]), shape)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.border_pad and min(frame_size(feed)) <= self.border_pad:
            raise frame_too_small(self.model_path, feed, "use --backend onnxruntime --border-pad 0")
        try:
            results = self.request.infer(dict(feed))  # copies the outputs (share_outputs=False)
        except RuntimeError as exc:  # e.g. a frame smaller than the border padding mirrors
            first = first_line(exc)
            raise SageEdgeError(f"{self.model_path}: OpenVINO: {first[:300]}") from None
        return {port.get_any_name(): np.asarray(value) for port, value in results.items()}

    def close(self) -> None:
        self.request = None
        self.compiled = None

    def describe(self) -> str:
        import openvino as ov

        precision = f"int8 + {self.precision}" if self.quantized else self.precision
        note = ""
        if self.requested_precision in ("bf16", "fp16") and self.precision == "f32":
            note = f"; {self.requested_precision} is not native on this CPU: ran f32"
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"openvino {ov.__version__.split('-')[0]} (CPU, {precision}, {threads}{note})"
