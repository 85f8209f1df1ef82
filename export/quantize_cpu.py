"""INT8 for CPUs: ONNX Runtime's static quantizer (``--target cpu``) and OpenVINO's NNCF (``--target openvino``).

The TensorRT target (``export.quantize``, ModelOpt Q/DQ on Conv inputs only) is laid out for TensorRT's
fusions; on ONNX Runtime's CPU provider the same graph is *slower* than FP32 (each Q/DQ pair runs as its own
kernel). A CPU wants the opposite: the whole network in uint8 so that ONNX Runtime's QDQ transformer turns
it into one chain of QLinearConv / QLinearLeakyRelu / QLinearConcat / NhwcMaxPool kernels in NHWC, with
no float round trip between layers. So ``--target cpu`` quantizes every network op type (static, u8
activations, s8 per-channel weights: u8s8, what MLAS's integer GEMM runs) and, as every target does, leaves
the colour maths, casts and the final Tanh in FP32 (they are outside the ``/student/`` scope, or not in
``CPU_OP_TYPES``).

``--target openvino`` runs NNCF's post-training quantization on the OpenVINO model (MIXED preset: symmetric
weights, asymmetric activations, which suits LeakyReLU outputs) and writes OpenVINO IR (``.xml`` + ``.bin``).

Both record what they are for in the model (``TARGET_KEY`` in the ONNX metadata, ``rt_info`` in the IR), so
``build-engine`` can refuse a CPU model with one clear line instead of building a slow or wrong engine.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError
from sage_edge.export.border_pad_graph import border_pad_amount, set_border_pad_metadata, with_fixed_border_pad
from sage_edge.export.quantize import (DEFAULT_CALIB_SHAPE, NETWORK_SCOPE, QuantizeReport, calibration_data,
                                       model_io_kind, nodes_outside_network, static_input_shape)
from sage_edge.pairs import ImagePair

# ONNX metadata key naming the runtime a quantized model is made for.
TARGET_KEY = "sage_edge.int8_target"
ORT_CPU_TARGET = "onnxruntime-cpu"
OPENVINO_TARGET = "openvino-cpu"
# Every op type of the network: quantizing all of them keeps activations in uint8 from the first Conv to the
# last, which is what makes ONNX Runtime's CPU INT8 faster than FP32 (measured: benchmarks/bench_cpu.py).
CPU_OP_TYPES = ("Conv", "LeakyRelu", "Concat", "MaxPool", "Resize")
CPU_METHODS = ("nncf", "minmax", "entropy", "percentile")
OPENVINO_SUFFIX = ".xml"


def _load_onnx(model_path: Path) -> "object":
    import onnx

    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # onnx raises DecodeError and friends for a bad file
        raise SageEdgeError(f"{model_path}: not a readable ONNX model ({type(exc).__name__})") from None
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node):
        raise SageEdgeError(f"{model_path}: already quantized; quantize the FP32 model")
    return with_fixed_border_pad(model)  # the quantizers fold an overridable border_pad and drop the metadata


def _samples(pairs: Sequence[ImagePair], model: "object", samples: int, calib_shape: tuple[int, int] | None,
             seed: int, progress: bool) -> tuple[list[dict[str, np.ndarray]], tuple[int, int], str]:
    kind = model_io_kind(model)
    shape = static_input_shape(model, kind) or calib_shape or DEFAULT_CALIB_SHAPE
    data = calibration_data(pairs, kind, shape, samples, seed=seed, progress=progress)
    count = len(next(iter(data.values())))
    return [{name: value[i:i + 1] for name, value in data.items()} for i in range(count)], shape, kind


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer and NNCF print advice and progress bars: keep them off the user's terminal."""
    import logging

    chatter = io.StringIO()
    loggers = [logging.getLogger(), logging.getLogger("nncf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _nncf_calibration(model: "object", feeds: list[dict[str, np.ndarray]], excluded: list[str]
                      ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """NNCF's post-training statistics on the ONNX model: (bias-corrected Conv biases, activation ranges).

    Measured on the shared pairs (benchmarks/bench_cpu.py, and the notes in benchmarks/RESULTS.md): with
    ONNX Runtime's own MinMax ranges the old default model fell to 25-32 dB; NNCF's ranges (asymmetric,
    averaged over samples) with its fast bias correction give the same u8s8 graph several dB more.
    Returns {bias initializer name of the original Conv: corrected values} and {tensor: (rmin, rmax)}.
    """
    import nncf
    from onnx import numpy_helper

    with _quiet():
        quantized = nncf.quantize(model, nncf.Dataset(feeds), preset=nncf.QuantizationPreset.MIXED,
                                  subset_size=len(feeds), ignored_scope=nncf.IgnoredScope(names=excluded,
                                                                                          validate=False))
    values = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    convs = {n.name: n for n in quantized.graph.node if n.op_type == "Conv"}
    biases = {}
    for node in model.graph.node:  # type: ignore[attr-defined]
        twin = convs.get(node.name)
        if node.op_type == "Conv" and twin is not None and len(node.input) > 2 and len(twin.input) > 2 \
                and twin.input[2] in values:
            biases[node.input[2]] = values[twin.input[2]].astype(np.float32)
    ranges = {}
    for node in quantized.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[1] not in values or values[node.input[1]].size != 1:
            continue
        scale = float(values[node.input[1]])
        zero = values[node.input[2]] if len(node.input) > 2 and node.input[2] in values else np.array(0, np.uint8)
        low, high = (0, 255) if zero.dtype == np.uint8 else (-128, 127)
        ranges[node.input[0]] = ((low - float(zero)) * scale, (high - float(zero)) * scale)
    return biases, ranges


def quantize_ort_cpu(model_path: str | os.PathLike, output: str | os.PathLike, pairs: Sequence[ImagePair],
                     method: str = "nncf", samples: int = 32, calib_shape: tuple[int, int] | None = None,
                     seed: int = 0, progress: bool = True) -> QuantizeReport:
    """Write a u8s8 QDQ model for ONNX Runtime's CPU provider to ``output`` (atomically), calibrated on ``pairs``.

    method "nncf" (default): NNCF's activation ranges and bias-corrected Conv biases, laid out as ONNX Runtime
    runs fastest (every network op in uint8); tensors NNCF does not quantize get ONNX Runtime's MinMax ranges.
    "minmax", "entropy", "percentile": ONNX Runtime's own calibrators only.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in CPU_METHODS:
        raise SageEdgeError(f"unknown calibration method '{method}' for --target cpu; use {', '.join(CPU_METHODS)}")
    model_path = Path(model_path)
    model = _load_onnx(model_path)
    feeds, shape, kind = _samples(pairs, model, samples, calib_shape, seed, progress)
    excluded = nodes_outside_network(model)
    overrides: dict[str, list[dict[str, object]]] = {}
    if method == "nncf":
        require_nncf()
        biases, ranges = _nncf_calibration(model, feeds, excluded)
        for init in model.graph.initializer:
            if init.name in biases:
                init.CopyFrom(numpy_helper.from_array(biases[init.name], init.name))
        overrides = {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in ranges.items()}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.remaining, None)

    calibrate = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}.get(
        method, CalibrationMethod.MinMax)
    extra: dict[str, object] = {"TensorQuantOverrides": overrides} if overrides else {}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    with tempfile.TemporaryDirectory(prefix="sage-edge-quantize-cpu-") as scratch:
        source, target = Path(scratch) / "model.fp32.onnx", Path(scratch) / "model.int8.onnx"
        onnx.save(model, str(source))
        with _quiet():
            # reduce_range: 7-bit weights. x86 CPUs without VNNI (AVX2, most AVX-512) multiply u8 x s8 with
            # vpmaddubsw, whose 16-bit sums saturate; onnxruntime/quantization/quantize.py (StaticQuantConfig):
            # "quantize weights with 7-bits. It may improve the accuracy for some models running on non-VNNI
            # machine, especially for per-channel mode". Measured on the bundled default (AVX2): worst held-back
            # pair 27.7 dB without it, 35.4 dB with it.
            quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(CPU_OP_TYPES), per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=excluded, calibrate_method=calibrate, extra_options=extra)
        quantized = onnx.load(str(target))
        set_border_pad_metadata(quantized, border_pad_amount(model))
        onnx.helper.set_model_props(quantized, {**{p.key: p.value for p in quantized.metadata_props},
                                                TARGET_KEY: ORT_CPU_TARGET})
        quantized.doc_string = (f"{model.doc_string or 'sage-edge model'}; INT8 u8s8 QDQ for ONNX Runtime's CPU "
                                "provider (sage-edge quantize --target cpu): not for TensorRT")
        onnx.checker.check_model(quantized)
        with atomic_path(output) as tmp:
            onnx.save(quantized, str(tmp))
    dq_outputs = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    consumers = sorted({n.name for n in quantized.graph.node if any(i in dq_outputs for i in n.input)})
    q_nodes = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    return QuantizeReport(path=Path(output), io_kind=kind, method=method, samples=len(feeds), calib_shape=shape,
                          quantized_nodes=consumers, qdq_pairs=q_nodes, excluded_nodes=len(excluded))


def require_nncf() -> None:
    try:
        import nncf  # noqa: F401
    except ImportError:
        raise SageEdgeError("INT8 for CPUs needs NNCF's calibration: pip install 'sage-edge[openvino]' "
                            "(or --method max for ONNX Runtime's own MinMax ranges)") from None


def require_openvino_tools() -> None:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc).splitlines()[0]
        raise SageEdgeError(f"--target openvino needs OpenVINO and NNCF ({missing} is missing): "
                            "pip install 'sage-edge[openvino]'") from None


def quantize_openvino(model_path: str | os.PathLike, output: str | os.PathLike, pairs: Sequence[ImagePair],
                      samples: int = 32, calib_shape: tuple[int, int] | None = None, seed: int = 0,
                      progress: bool = True) -> QuantizeReport:
    """Write an NNCF INT8 OpenVINO IR (``output`` .xml + its .bin, atomically) calibrated on ``pairs``."""
    require_openvino_tools()
    import nncf
    import onnx
    import openvino as ov

    model_path, output = Path(model_path), Path(output)
    if output.suffix.lower() != OPENVINO_SUFFIX:
        raise SageEdgeError(f"{output}: --target openvino writes OpenVINO IR: use an output ending in .xml")
    onnx_model = _load_onnx(model_path)
    feeds, shape, kind = _samples(pairs, onnx_model, samples, calib_shape, seed, progress)
    with tempfile.TemporaryDirectory(prefix="sage-edge-quantize-ov-src-") as scratch:
        source = Path(scratch) / "model.onnx"
        onnx.save(onnx_model, str(source))  # border padding fixed (``_load_onnx``)
        model = ov.Core().read_model(str(source))
    outside = [op.get_friendly_name() for op in model.get_ops()
               if not op.get_friendly_name().startswith(NETWORK_SCOPE)
               and op.get_type_name() not in ("Constant", "Parameter", "Result")]
    with _quiet():
        quantized = nncf.quantize(
            model, nncf.Dataset(feeds), preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds),
            ignored_scope=nncf.IgnoredScope(names=outside, validate=False),
        )
    quantized.set_rt_info(OPENVINO_TARGET, TARGET_KEY.replace(".", "_"))
    amount = border_pad_amount(onnx_model)
    if amount is not None:
        from sage_edge.runtime.openvino_backend import BORDER_PAD_RT_KEY

        quantized.set_rt_info(str(amount), BORDER_PAD_RT_KEY)
    bin_path = output.with_suffix(".bin")
    with tempfile.TemporaryDirectory(prefix="sage-edge-quantize-ov-", dir=str(output.parent) or ".") as scratch:
        staged = Path(scratch) / "model.xml"
        ov.save_model(quantized, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), bin_path)  # weights first: an .xml never points at a missing .bin
        os.replace(staged, output)
    kinds = [op.get_friendly_name() for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize"]
    return QuantizeReport(path=output, io_kind=kind, method="nncf-mixed", samples=len(feeds), calib_shape=shape,
                          quantized_nodes=kinds, qdq_pairs=len(kinds), excluded_nodes=len(outside))


def model_int8_target(model_path: str | os.PathLike) -> str | None:
    """The runtime an INT8 ONNX model was quantized for (``TARGET_KEY``), or None."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}.get(TARGET_KEY)


def remove_openvino_model(path: Path) -> None:
    for part in (path, path.with_suffix(".bin")):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def copy_openvino_model(source: Path, output: Path) -> None:
    """Copy an .xml/.bin pair so that the .xml appears last (a reader never sees a half-written pair)."""
    with atomic_path(output.with_suffix(".bin")) as tmp:
        shutil.copyfile(source.with_suffix(".bin"), tmp)
    with atomic_path(output) as tmp:
        shutil.copyfile(source, tmp)
