"""FP16 ONNX for TensorRT 11 (and strongly typed builds on 10.x), with NVIDIA ModelOpt AutoCast.

TensorRT 10.12 deprecated the FP16 builder flag and TensorRT 11 removed it: the precision
of a strongly typed network is the precision of its ONNX. AutoCast converts the network
to FP16 and keeps:
  * the model's I/O types (uint8 stays uint8, float32 stays float32; ``keep_io_types``);
  * the colour maths and casts of the uint8 end-to-end graph in FP32 (every node outside the
    exported ``/student/`` scope is excluded): FP16 has 0.125-level steps near 255, which
    would move SAGE's exact floors by a level;
  * any node whose values on the reference data exceed AutoCast's ``data_max``, in FP32.
AutoCast runs the FP32 model on reference inputs to make those decisions; sage-edge gives
it real pairs (or a synthetic one) in the model's own layout.

The FP16 model keeps the source's opset (17 by default), and is written only if it passes
TensorRT's ONNX parser rules (``sage_edge.export.trt_compat``) for every version that parses
that opset.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError
from sage_edge.export.border_pad_graph import border_pad_amount, set_border_pad_metadata, with_fixed_border_pad
from sage_edge.export.opset import default_opset, downgrade_opset, max_output_difference
from sage_edge.export.trt_compat import require_opset_supported, require_trt_compatible
from sage_edge.pairs import ImagePair

REFERENCE_SHAPE = (240, 320)


@dataclass
class Fp16Report:
    path: Path
    io_kind: str
    fp16_nodes: int
    fp32_nodes: int
    opset: int = 0
    # The TensorRT versions whose ONNX parser rules the written model passes (sage_edge.export.trt_compat).
    trt_versions: tuple[str, ...] = ()


def reference_inputs(io_kind: str, pairs: Sequence[ImagePair] | None, shape: tuple[int, int],
                     samples: int = 4) -> dict[str, np.ndarray]:
    """Inputs for AutoCast's reference run: crops of real pairs, or a synthetic pair."""
    from sage_edge.export.quantize import calibration_data

    if pairs:
        return calibration_data(pairs, io_kind, shape, samples, progress=False)
    from sage_edge.export.onnx_export import feed_for
    from sage_edge.samples import synthetic_pair

    return feed_for(io_kind, *synthetic_pair(*shape))


def convert_model_fp16(model_path: str | os.PathLike, pairs: Sequence[ImagePair] | None = None,
                       shape: tuple[int, int] | None = None) -> "object":
    """An FP16 onnx.ModelProto of ``model_path`` (I/O types and colour maths kept), not written anywhere."""
    from sage_edge.export.quantize import (_quiet_logs, model_io_kind, nodes_outside_network, require_modelopt,
                                           static_input_shape)

    require_modelopt()
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    model_path = Path(model_path)
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise SageEdgeError(f"{model_path}: not a readable ONNX model ({type(exc).__name__})") from None
    kind = model_io_kind(model)
    shape = static_input_shape(model, kind) or shape or REFERENCE_SHAPE
    excluded = [f"^{re.escape(n)}$" for n in nodes_outside_network(model)]
    with tempfile.TemporaryDirectory(prefix="sage-edge-fp16-") as scratch:
        reference = Path(scratch) / "reference.npz"
        np.savez(reference, **reference_inputs(kind, pairs, shape))
        # AutoCast refuses a graph input that is also an initializer (the overridable border_pad)
        source = Path(scratch) / "model.onnx"
        onnx.save(with_fixed_border_pad(model), str(source))
        with _quiet_logs():
            converted = convert_to_mixed_precision(
                str(source),
                low_precision_type="fp16",
                keep_io_types=True,
                nodes_to_exclude=excluded,
                calibration_data=str(reference),
                providers=["cpu"],
                # Pin the source's opset (17 by default, the highest TensorRT 8.5/8.6 parse). ModelOpt 0.47 keeps
                # it when asked nothing too, but its docstring names 19 as the fp16 default.
                opset=default_opset(model),
            )
    set_border_pad_metadata(converted, border_pad_amount(model))
    return converted


def convert_fp16(model_path: str | os.PathLike, output: str | os.PathLike,
                 pairs: Sequence[ImagePair] | None = None, shape: tuple[int, int] | None = None) -> Fp16Report:
    """Write the FP16 model to ``output`` atomically."""
    import onnx

    from sage_edge.export.onnx_export import TOLERANCE
    from sage_edge.export.quantize import model_io_kind, static_input_shape

    converted = convert_model_fp16(model_path, pairs, shape)
    onnx.checker.check_model(converted)
    source_opset = default_opset(onnx.load(str(model_path), load_external_data=False))
    if default_opset(converted) > source_opset:  # AutoCast raised it: bring it back and show nothing changed
        portable = downgrade_opset(converted, source_opset)
        kind = model_io_kind(converted)
        feed = {name: values[:1] for name, values in
                reference_inputs(kind, pairs, static_input_shape(converted, kind) or shape or REFERENCE_SHAPE).items()}
        diff = max_output_difference(converted, portable, feed)
        if not diff <= TOLERANCE[kind]:
            raise SageEdgeError(f"{model_path}: opset {default_opset(converted)} -> {source_opset} conversion of the "
                                f"FP16 model changed its outputs by {diff:g}; nothing written")
        converted = portable
    versions = require_opset_supported(default_opset(converted))
    require_trt_compatible(converted, versions, what=f"FP16 conversion of {model_path}")
    with atomic_path(output) as tmp:
        onnx.save(converted, str(tmp))
    return Fp16Report(path=Path(output), io_kind=model_io_kind(converted), **_precision_counts(converted),
                      opset=default_opset(converted), trt_versions=versions)


def _precision_counts(model: "object") -> dict[str, int]:
    """Nodes computing in FP16 vs FP32, from their (shape-inferred) output types."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.output)}
    fp16 = fp32 = 0
    for node in inferred.graph.node:
        if node.op_type in ("Cast", "Constant", "Shape", "Gather", "Unsqueeze"):
            continue
        elem = types.get(node.output[0])
        fp16 += elem == onnx.TensorProto.FLOAT16
        fp32 += elem == onnx.TensorProto.FLOAT
    return {"fp16_nodes": int(fp16), "fp32_nodes": int(fp32)}


def is_fp16_model(model_path: str | os.PathLike) -> bool:
    """True when any initializer or Cast produces FP16: an AutoCast (or otherwise FP16) model."""
    import onnx

    from sage_edge.export.quantize import load_onnx_model

    model = load_onnx_model(model_path, load_external_data=False)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return True
    return any(n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute)
               for n in model.graph.node)


def export_fp16_from_fp32(fp32_path: str | os.PathLike, output: str | os.PathLike) -> Fp16Report:
    """For ``sage-edge export --fp16``: the FP32 export at ``fp32_path`` -> FP16 ``output``."""
    return convert_fp16(fp32_path, output)


__all__ = ["Fp16Report", "convert_fp16", "convert_model_fp16", "is_fp16_model", "export_fp16_from_fp32"]
