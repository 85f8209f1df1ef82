"""Student -> ONNX, with a self-check: onnx.checker, onnxslim, and ONNX Runtime against torch.

Uses torch's TorchScript-based exporter (``dynamo=False``): it needs only onnx,
and gives plain opset-17 graphs that TensorRT 8.5+ parses. Nothing is written unless the
graph passes TensorRT's ONNX parser rules (``sage_edge.export.trt_compat``) for every
version that parses the requested opset (17: TensorRT 8.5, 8.6, 10 and 11).
"""
from __future__ import annotations

import io as _io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sage_edge import io_contract as io
from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError
from sage_edge.export.trt_compat import require_opset_supported, require_trt_compatible
from sage_edge.models.border import DEFAULT_BORDER_PAD, as_amount
from sage_edge.models.end_to_end import EndToEndFusion, FusedLuminance
from sage_edge.models.student import StudentNet

DEFAULT_OPSET = 17
# ORT vs torch: uint8 outputs may differ by one level where float noise crosses a rounding edge.
TOLERANCE = {"uint8": 1.0, "float": 1e-3}


@dataclass
class ExportReport:
    path: Path
    io_kind: str
    opset: int
    static_size: tuple[int, int] | None
    check_shape: tuple[int, int]
    max_abs_diff: float
    tolerance: float
    nodes_before_slim: int
    nodes_after_slim: int
    # The TensorRT versions whose ONNX parser rules the written model passes (sage_edge.export.trt_compat).
    trt_versions: tuple[str, ...] = ()
    border_pad: int = DEFAULT_BORDER_PAD


def _export_module(student: StudentNet, io_kind: str,
                   border_pad: int = DEFAULT_BORDER_PAD) -> tuple[torch.nn.Module, tuple[str, ...], tuple[str, ...]]:
    # .eval() on the wrapper, not just the student: torch.onnx.export restores the *wrapper's*
    # training flag recursively afterwards, which would put BatchNorm into batch-statistics mode.
    if io_kind == "uint8":
        return EndToEndFusion(student, border_pad).eval(), io.UINT8_INPUTS, io.UINT8_OUTPUTS
    if io_kind == "float":
        return FusedLuminance(student, border_pad).eval(), io.FLOAT_INPUTS, io.FLOAT_OUTPUTS
    raise SageEdgeError(f"unknown --io '{io_kind}'; use uint8 or float")


def _dummy_inputs(io_kind: str, height: int, width: int, border_pad: int) -> tuple[torch.Tensor, ...]:
    if io_kind == "uint8":
        images = (torch.zeros(1, height, width, 1, dtype=torch.uint8), torch.zeros(1, height, width, 3, dtype=torch.uint8))
    else:
        images = (torch.zeros(1, 1, height, width), torch.zeros(1, 1, height, width))
    return (*images, as_amount(border_pad))


def _batch_of_one(model: "object") -> None:
    """Batch 1 on every image input and output, as the contract says: shape inference cannot see through the
    border crop (its Slice bounds are computed in the graph) and would name the batch axis instead."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[0].dim_param:
            dims[0].dim_value = 1


def _default_border_pad(model: "object", border_pad: int) -> None:
    """Give the ``border_pad`` graph input its default: an initializer of the same name (ONNX Runtime may
    override it; TensorRT builds it in), and record the amount in the metadata."""
    from onnx import helper, numpy_helper

    model.graph.initializer.append(numpy_helper.from_array(np.array([border_pad], np.int64), io.BORDER_PAD))
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   io.BORDER_PAD_METADATA: str(border_pad)})


def _dynamic_axes(io_kind: str, names: tuple[str, ...]) -> dict[str, dict[int, str]]:
    h_axis, w_axis = (1, 2) if io_kind == "uint8" else (2, 3)
    return {name: {h_axis: "height", w_axis: "width"} for name in names}


def torch_reference(student: StudentNet, io_kind: str, ir: np.ndarray, vis: np.ndarray,
                    border_pad: int = DEFAULT_BORDER_PAD) -> dict[str, np.ndarray]:
    """The torch outputs for one pair, fed exactly as the runtime feeds the ONNX graph."""
    feed = feed_for(io_kind, ir, vis)
    module, input_names, output_names = _export_module(student, io_kind, border_pad)
    with torch.inference_mode():
        outputs = module(*(torch.from_numpy(feed[n]) for n in input_names))
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return {name: out.numpy() for name, out in zip(output_names, outputs)}


def feed_for(io_kind: str, ir: np.ndarray, vis: np.ndarray) -> dict[str, np.ndarray]:
    from sage_edge import colour

    if io_kind == "uint8":
        return {io.IR: np.ascontiguousarray(ir[None, :, :, None]), io.VIS: np.ascontiguousarray(vis[None])}
    y_levels, _, _ = colour.ycrcb_from_bgr_image(vis)
    return {
        io.VIS_Y: colour.to_unit(y_levels)[None, None].astype(np.float32),
        io.IR: colour.to_unit(ir.astype(np.float32))[None, None],
    }


def export_onnx(
    student: StudentNet,
    output: str | os.PathLike,
    io_kind: str = "uint8",
    opset: int = DEFAULT_OPSET,
    static_size: tuple[int, int] | None = None,
    check_pair: tuple[np.ndarray, np.ndarray] | None = None,
    simplify: bool = True,
    border_pad: int = DEFAULT_BORDER_PAD,
) -> ExportReport:
    """Export, check and simplify; writes ``output`` atomically only if every check passes.

    static_size: (height, width) for a fixed-shape graph (DLA, CUDA graphs), else H and W are dynamic.
    check_pair: (ir H x W uint8, vis H x W x 3 uint8) compared between torch and ONNX Runtime;
    a synthetic pair when None. Its size must equal static_size when that is given.
    border_pad: pixels mirrored on each side inside the graph, the default of its ``border_pad`` input
    (``sage_edge.io_contract``); 0 turns the padding off.
    """
    import onnx
    import onnxruntime as ort

    trt_versions = require_opset_supported(opset)
    if border_pad < 0:
        raise SageEdgeError(f"--border-pad must be 0 or more, got {border_pad}")
    student = student.eval()
    module, input_names, output_names = _export_module(student, io_kind, border_pad)
    if check_pair is None:
        from sage_edge.samples import synthetic_pair

        check_pair = synthetic_pair(*(static_size or (240, 320)))
    ir, vis = check_pair
    if static_size is not None and ir.shape[:2] != tuple(static_size):
        import cv2

        ir = cv2.resize(ir, static_size[::-1], interpolation=cv2.INTER_AREA)
        vis = cv2.resize(vis, static_size[::-1], interpolation=cv2.INTER_AREA)
    trace_size = static_size or (64, 64)

    buffer = _io.BytesIO()
    torch.onnx.export(
        module,
        _dummy_inputs(io_kind, *trace_size, border_pad),
        buffer,
        input_names=[*input_names, io.BORDER_PAD],
        output_names=list(output_names),
        dynamic_axes=None if static_size else _dynamic_axes(io_kind, input_names + output_names),
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model, full_check=True)
    nodes_before = len(model.graph.node)
    if simplify:
        import onnxslim

        model = onnxslim.slim(model)
        onnx.checker.check_model(model, full_check=True)
    _batch_of_one(model)
    _default_border_pad(model, border_pad)  # after slimming, which would fold it into a constant
    onnx.checker.check_model(model, full_check=True)
    model.doc_string = f"sage-edge student, io={io_kind}; layout: see sage_edge/io_contract.py"

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = feed_for(io_kind, ir, vis)
    ort_out = dict(zip(output_names, session.run(list(output_names), feed)))
    ref = torch_reference(student, io_kind, ir, vis, border_pad)
    max_diff = max(
        float(np.abs(ort_out[n].astype(np.float64) - ref[n].astype(np.float64)).max()) for n in output_names
    )
    tolerance = TOLERANCE[io_kind]
    if not max_diff <= tolerance:
        raise SageEdgeError(
            f"export check failed: ONNX Runtime differs from torch by {max_diff:g} (tolerance {tolerance:g})"
        )
    require_trt_compatible(model, trt_versions, what="export")
    with atomic_path(output) as tmp:
        onnx.save(model, str(tmp))
    return ExportReport(
        path=Path(output),
        io_kind=io_kind,
        opset=opset,
        static_size=tuple(static_size) if static_size else None,
        check_shape=ir.shape[:2],
        max_abs_diff=max_diff,
        tolerance=tolerance,
        nodes_before_slim=nodes_before,
        nodes_after_slim=len(model.graph.node),
        trt_versions=trt_versions,
        border_pad=border_pad,
    )


def export_fp16(student: StudentNet, output: str | os.PathLike, **export_options: object) -> "object":
    """Export FP32 to a scratch file (with all of ``export_onnx``'s checks), then convert it to FP16
    with ModelOpt AutoCast (``sage_edge.export.fp16``), written atomically to ``output``."""
    import tempfile

    from sage_edge.export.fp16 import convert_fp16
    from sage_edge.export.quantize import require_modelopt

    require_modelopt()
    with tempfile.TemporaryDirectory(prefix="sage-edge-export-") as scratch:
        fp32 = Path(scratch) / "model.fp32.onnx"
        export_onnx(student, fp32, **export_options)  # type: ignore[arg-type]
        return convert_fp16(fp32, output)
