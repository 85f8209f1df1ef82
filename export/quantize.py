"""INT8 post-training quantization of sage-edge ONNX models with NVIDIA ModelOpt (explicit Q/DQ).

TensorRT 10.1 deprecated its INT8 calibrators and TensorRT 11 removed them: INT8 now
comes from an ONNX graph that carries QuantizeLinear/DequantizeLinear pairs. ModelOpt's
ONNX quantizer places them the way TensorRT fuses them (Q/DQ on the inputs of Conv; the
LeakyReLU after each Conv fuses into the INT8 kernel).

Only the network is quantized. The colour maths of the uint8 end-to-end graph (BGR ->
YCrCb with exact floors, SAGE's inverse, clamps) and its uint8 <-> float casts stay in
high precision: INT8 there would shift colours by whole levels. That is done twice, by
op type (only ``Conv`` is quantized) and by node name (every node outside the exported
``/student/`` scope is excluded).

Calibration data comes from real IR/visible pairs (``sage_edge.pairs``, ``sage_edge.imageio``):
each sample is a random crop of a pair scaled to cover the calibration shape, which should
be the engine profile's opt shape.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sage_edge import io_contract as io
from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError
from sage_edge.export.border_pad_graph import border_pad_amount, set_border_pad_metadata, with_fixed_border_pad
from sage_edge.export.opset import default_opset, downgrade_opset, max_output_difference
from sage_edge.export.trt_compat import PORTABLE_OPSET, require_opset_supported, require_trt_compatible
from sage_edge.pairs import ImagePair

# "max" is the default: on the shared pairs it was more robust than entropy with few samples
# (entropy clips highlights, and fused images live in their highlights); see docs/tensorrt.md.
METHODS = ("max", "entropy")
# The exporter traces the network inside the wrappers as ``self.student``: its nodes are named /student/...
NETWORK_SCOPE = "/student/"
# What gets Q/DQ. TensorRT fuses the activation (LeakyRelu) into the quantized Conv itself.
OP_TYPES_TO_QUANTIZE = ("Conv",)
DEFAULT_CALIB_SHAPE = (480, 640)


@dataclass
class QuantizeReport:
    path: Path
    io_kind: str
    method: str
    samples: int
    calib_shape: tuple[int, int]
    quantized_nodes: list[str] = field(default_factory=list)
    qdq_pairs: int = 0
    excluded_nodes: int = 0
    opset: int = 0
    # The TensorRT versions whose ONNX parser rules the written model passes (sage_edge.export.trt_compat).
    trt_versions: tuple[str, ...] = ()
    # ONNX Runtime, ModelOpt's opset-19 output vs the written opset-17 one (None: no conversion needed).
    opset_conversion_diff: float | None = None


def require_modelopt() -> None:
    """One-line error when ModelOpt's ONNX quantizer cannot import."""
    try:
        import onnx  # noqa: F401
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc).splitlines()[0]
        raise SageEdgeError(
            f"INT8/FP16 conversion needs NVIDIA ModelOpt's ONNX tools ({missing} is missing): "
            "pip install 'sage-edge[quantize]' (ModelOpt without its [onnx] extra, plus onnx-graphsurgeon)"
        ) from None


def parse_shape(text: str, what: str = "shape") -> tuple[int, int]:
    """A WIDTHxHEIGHT flag value (``sage_edge.sizes``, as every size flag) -> (H, W); one-line errors."""
    from sage_edge.sizes import parse_size_hw

    return parse_size_hw(text, what, minimum=16)


def model_io_kind(model: "object") -> str:
    """'uint8' or 'float' for an onnx.ModelProto."""
    inputs = [i.name for i in model.graph.input]  # type: ignore[attr-defined]
    outputs = [o.name for o in model.graph.output]  # type: ignore[attr-defined]
    return io.io_kind(inputs, outputs, "model")


def static_input_shape(model: "object", io_kind: str) -> tuple[int, int] | None:
    """(H, W) when the model was exported with a static size, else None."""
    first = model.graph.input[0]  # type: ignore[attr-defined]
    dims = first.type.tensor_type.shape.dim
    h_axis, w_axis = (1, 2) if io_kind == "uint8" else (2, 3)
    if len(dims) == 4 and dims[h_axis].HasField("dim_value") and dims[w_axis].HasField("dim_value"):
        return int(dims[h_axis].dim_value), int(dims[w_axis].dim_value)
    return None


def load_pair_images(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    """(ir H x W uint8, vis H x W x 3 uint8 BGR) for one pair; grey visible images become 3-channel."""
    from sage_edge.imageio import read_ir, read_visible

    ir, vis = read_ir(pair.ir), read_visible(pair.vis)
    if vis.ndim == 2:
        vis = np.repeat(vis[..., None], 3, axis=2)
    if ir.shape != vis.shape[:2]:
        raise SageEdgeError(f"{pair.stem}: IR {ir.shape[1]}x{ir.shape[0]} and visible "
                            f"{vis.shape[1]}x{vis.shape[0]} sizes differ")
    return ir, vis


def crop_to(ir: np.ndarray, vis: np.ndarray, shape: tuple[int, int], rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Scale the pair (keeping aspect) to cover ``shape``, then crop it: random with ``rng``, centred without."""
    import cv2

    h, w = ir.shape
    th, tw = shape
    scale = max(th / h, tw / w)
    if scale != 1.0:
        size = (max(tw, int(round(w * scale))), max(th, int(round(h * scale))))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        ir, vis = cv2.resize(ir, size, interpolation=interp), cv2.resize(vis, size, interpolation=interp)
        h, w = ir.shape
    if rng is None:
        y0, x0 = (h - th) // 2, (w - tw) // 2
    else:
        y0, x0 = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
    return ir[y0:y0 + th, x0:x0 + tw].copy(), vis[y0:y0 + th, x0:x0 + tw].copy()


def calibration_data(pairs: Sequence[ImagePair], io_kind: str, shape: tuple[int, int], samples: int,
                     seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """``samples`` random crops of ``shape`` from the pairs (round robin), stacked along the batch axis."""
    from tqdm import tqdm

    from sage_edge.export.onnx_export import feed_for

    if not pairs:
        raise SageEdgeError("no calibration pairs")
    if samples < 1:
        raise SageEdgeError("--samples must be at least 1")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    loaded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    feeds: list[dict[str, np.ndarray]] = []
    for i in tqdm(range(samples), desc="calibration data", unit="crop", disable=not progress):
        index = int(order[i % len(pairs)])
        if index not in loaded:
            loaded[index] = load_pair_images(pairs[index])
        feeds.append(feed_for(io_kind, *crop_to(*loaded[index], shape, rng)))
    return {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def nodes_outside_network(model: "object") -> list[str]:
    """Names of the nodes that are not the network (colour maths, casts, layout): never quantized."""
    nodes = model.graph.node  # type: ignore[attr-defined]
    if not any(n.name.startswith(NETWORK_SCOPE) for n in nodes):
        return []  # not from our exporter: the op-type filter alone keeps non-Conv nodes out
    return [n.name for n in nodes if not n.name.startswith(NETWORK_SCOPE)]


def _drop_cpu_only_noise(record: "object") -> bool:
    # ModelOpt logs an ERROR when NVML is absent, which is expected on a CPU-only machine.
    return "Failed to get GPU count" not in record.getMessage()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _onnxruntime_quantization_restored() -> Iterable[None]:
    """Undo ModelOpt's patches of ONNX Runtime's quantization classes when it returns.

    ModelOpt replaces calibrator and quantizer methods of ``onnxruntime.quantization`` for good
    (modelopt/onnx/quantization/ort_patching.py, ``patch_ort_modules``); a later ONNX Runtime quantization in
    the same process (``quantize --target cpu``, ``bench --precision int8``) then fails with "Quantization
    parameters are not specified". Restore every class attribute and ``calibrate.create_calibrator``.
    """
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer

    classes = (calibrate.CalibraterBase, calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater,
               calibrate.HistogramCollector, qdq_quantizer.QDQQuantizer, base_quantizer.BaseQuantizer)
    saved = [(cls, dict(vars(cls))) for cls in classes]
    create_calibrator = calibrate.create_calibrator
    try:
        yield
    finally:
        calibrate.create_calibrator = create_calibrator
        for cls, attributes in saved:
            for name in [n for n in vars(cls) if n not in attributes]:
                delattr(cls, name)
            for name, value in attributes.items():
                if vars(cls).get(name) is not value:
                    setattr(cls, name, value)

@contextlib.contextmanager
def _quiet_logs() -> Iterable[None]:
    """Errors only from ModelOpt while it runs: its INFO/WARNING lines (~80 per check-precision, to stdout)
    would bury our report. ``logging.disable`` holds even though ModelOpt reconfigures its loggers and
    handlers on every import and call."""
    import logging

    logger = logging.getLogger("modelopt.onnx")
    logger.addFilter(_drop_cpu_only_noise)
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logging.disable(previous)
        logger.removeFilter(_drop_cpu_only_noise)


def quantize_onnx(model_path: str | os.PathLike, output: str | os.PathLike, pairs: Sequence[ImagePair],
                  method: str = "max", samples: int = 32, calib_shape: tuple[int, int] | None = None,
                  high_precision: str = "fp32", seed: int = 0, progress: bool = True) -> QuantizeReport:
    """Write an INT8 Q/DQ copy of ``model_path`` to ``output`` (atomically), calibrated on ``pairs``.

    high_precision: dtype of everything that is not quantized. "fp32" keeps the colour maths
    bit-exact and runs anywhere (ONNX Runtime CPU); "fp16" gives faster TensorRT engines.
    """
    require_modelopt()
    import onnx
    from modelopt.onnx.quantization import quantize

    if method not in METHODS:
        raise SageEdgeError(f"unknown calibration method '{method}'; use {' or '.join(METHODS)}")
    if high_precision not in ("fp32", "fp16"):
        raise SageEdgeError(f"--high-precision '{high_precision}': use fp32 or fp16")
    model_path = Path(model_path)
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # onnx raises DecodeError and friends for a bad file
        raise SageEdgeError(f"{model_path}: not a readable ONNX model ({type(exc).__name__})") from None
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise SageEdgeError(f"{model_path}: already quantized (it has Q/DQ nodes); quantize the FP32 model")
    kind = model_io_kind(model)
    static = static_input_shape(model, kind)
    shape = static or calib_shape or DEFAULT_CALIB_SHAPE
    data = calibration_data(pairs, kind, shape, samples, seed=seed, progress=progress)
    excluded = nodes_outside_network(model)
    # With fp16 elsewhere, ModelOpt converts by op type only: keep every op type that only the colour
    # maths uses in FP32 (its fixed-point terms need 22-23 significant bits). The network's own op types
    # (Conv, LeakyRelu, Concat, MaxPool, Resize, Tanh) do not occur in the colour maths except
    # Concat, which there only joins integer levels <= 255 (exact in FP16).
    excluded_set = set(excluded)
    inside = {n.op_type for n in model.graph.node if n.name not in excluded_set}
    keep_fp32 = sorted({n.op_type for n in model.graph.node if n.name in excluded_set} - inside)

    with tempfile.TemporaryDirectory(prefix="sage-edge-quantize-") as scratch:
        # ModelOpt writes intermediate files beside its input: work on a copy in scratch space.
        source = Path(scratch) / "model.onnx"
        onnx.save(with_fixed_border_pad(model), str(source))  # ModelOpt drops an overridable border_pad
        target = Path(scratch) / "model.qdq.onnx"
        with _quiet_logs(), _onnxruntime_quantization_restored():
            quantize(
                str(source),
                quantize_mode="int8",
                calibration_data=data,
                calibration_method=method,
                calibration_eps=["cpu"],
                op_types_to_quantize=list(OP_TYPES_TO_QUANTIZE),
                nodes_to_exclude=[f"^{_re_escape(name)}$" for name in excluded],
                high_precision_dtype=high_precision,
                op_types_to_exclude_fp16=keep_fp32 if high_precision == "fp16" else None,
                output_path=str(target),
                log_level="ERROR",
            )
        if not target.is_file():
            raise SageEdgeError(f"{model_path}: ModelOpt produced no quantized model")
        quantized = onnx.load(str(target))
        onnx.checker.check_model(quantized)
        quantized, versions, conversion_diff = _portable_opset(quantized, high_precision, data, kind)
        set_border_pad_metadata(quantized, border_pad_amount(model))
        require_trt_compatible(quantized, versions, what=f"quantize {model_path}")
        with atomic_path(output) as tmp:
            onnx.save(quantized, str(tmp))

    q_nodes = [n for n in quantized.graph.node if n.op_type == "QuantizeLinear"]
    dq_outputs = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    consumers = sorted({n.name for n in quantized.graph.node if any(i in dq_outputs for i in n.input)})
    return QuantizeReport(path=Path(output), io_kind=kind, method=method, samples=samples, calib_shape=shape,
                          quantized_nodes=consumers, qdq_pairs=len(q_nodes), excluded_nodes=len(excluded),
                          opset=default_opset(quantized), trt_versions=versions,
                          opset_conversion_diff=conversion_diff)


def _portable_opset(quantized: "object", high_precision: str, data: dict[str, np.ndarray], io_kind: str
                    ) -> tuple["object", tuple[str, ...], float | None]:
    """(model, TensorRT versions it is for, ORT difference of the conversion) for ModelOpt's opset-19 output.

    ModelOpt writes int8 Q/DQ at opset 19 whatever opset it is asked for. With FP32 Q/DQ nothing of
    opsets 18/19 is used, so the model goes down to opset 17, which TensorRT 8.5 and 8.6 parse, and
    ONNX Runtime must give the same outputs (within the export check's tolerance) on a calibration
    sample. FP16 Q/DQ (--high-precision fp16) exists only from opset 19 on (ONNX QuantizeLinear-19
    adds float16 inputs), so that model stays at 19 and is for TensorRT 10 and 11; on 8.5/8.6, build
    the FP32 Q/DQ model with ``build-engine --int8 --fp16`` instead.
    """
    from sage_edge.export.onnx_export import TOLERANCE

    if high_precision == "fp16":
        return quantized, require_opset_supported(default_opset(quantized)), None
    converted = downgrade_opset(quantized, PORTABLE_OPSET)
    if converted is quantized:
        return quantized, require_opset_supported(default_opset(quantized)), None
    sample = {name: values[:1] for name, values in data.items()}
    diff = max_output_difference(quantized, converted, sample)
    if not diff <= TOLERANCE[io_kind]:
        raise SageEdgeError(f"opset {default_opset(quantized)} -> {PORTABLE_OPSET} conversion changed the quantized "
                            f"model's outputs by {diff:g} (tolerance {TOLERANCE[io_kind]:g}); nothing written")
    return converted, require_opset_supported(PORTABLE_OPSET), diff


def _re_escape(name: str) -> str:
    import re

    return re.escape(name)


def qdq_consumers(model_path: str | os.PathLike) -> dict[str, str]:
    """{node name: op type} of every node fed by a DequantizeLinear: what runs in INT8 in TensorRT."""
    import onnx

    model = onnx.load(str(model_path))
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name: n.op_type for n in model.graph.node if any(i in dq_outputs for i in n.input)}


def load_onnx_model(model_path: str | os.PathLike, **options: object) -> "object":
    """onnx.load with one-line errors: a missing file or one that is not an ONNX model says so."""
    import onnx

    model_path = Path(model_path)
    if not model_path.is_file():
        raise SageEdgeError(f"{model_path}: no such ONNX model file")
    try:
        return onnx.load(str(model_path), **options)
    except Exception as exc:  # protobuf raises its own DecodeError (and others) for files that are not ONNX
        raise SageEdgeError(f"{model_path}: not a readable ONNX model ({type(exc).__name__}); "
                            "give an .onnx file made by `sage-edge export`") from None


def is_qdq_model(model_path: str | os.PathLike) -> bool:
    model = load_onnx_model(model_path, load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
