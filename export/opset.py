"""Bring an ONNX model down to the opset every supported TensorRT parses, and show that nothing changed.

TensorRT 8.5 and 8.6 parse opsets up to 17 (onnx-tensorrt 8.5-GA/8.6-GA ``docs/operators.md``);
ModelOpt's INT8 quantizer always writes opset 19 (its minimum for int8 Q/DQ, whatever ``opset``
it is given). ``onnx.version_converter`` has down-adapters for every operator sage-edge's graphs
use; with FP32 Q/DQ nothing of opsets 18/19 is needed (opset 19 only adds FP16/FP8 Q/DQ inputs and
``saturate``), so the converted graph computes the same thing. The callers check that with ONNX
Runtime on real inputs before they write anything.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from sage_edge.errors import SageEdgeError, first_line
from sage_edge.export.trt_compat import PORTABLE_OPSET


def default_opset(model: Any) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise SageEdgeError("the model has no default-domain (ai.onnx) opset import")
    return int(versions[0])


# Operators onnx's version converter has no down-adapter for, where what sage-edge writes means the same at
# opset 13..17: Pad-18 adds an ``axes`` input and Pad-19 the ``wrap`` mode; the border padding uses neither
# (onnx 1.23 refuses with "No Adapter To Version $17 for Pad"). They cross the
# conversion in a private domain, which the converter leaves alone, and come back unchanged.
_PASSTHROUGH_DOMAIN = "sage_edge.opset_passthrough"


def _same_meaning_at_opset_13(node: Any) -> bool:
    if node.op_type != "Pad" or node.domain not in ("", "ai.onnx"):
        return False
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    no_axes = len(node.input) < 4 or not node.input[3]
    return mode in ("constant", "reflect", "edge") and no_axes


def downgrade_opset(model: Any, target: int = PORTABLE_OPSET) -> Any:
    """``model`` at opset ``target`` (unchanged when already at or below it), IR version lowered to match."""
    import onnx
    from onnx import version_converter

    current = default_opset(model)
    if current <= target:
        return model
    try:
        staged = onnx.ModelProto()
        staged.CopyFrom(model)
        moved = [n for n in staged.graph.node if _same_meaning_at_opset_13(n)]
        for node in moved:
            node.domain = _PASSTHROUGH_DOMAIN
        if moved:
            staged.opset_import.append(onnx.helper.make_opsetid(_PASSTHROUGH_DOMAIN, 1))
        converted = version_converter.convert_version(staged, target)
        for node in converted.graph.node:
            if node.domain == _PASSTHROUGH_DOMAIN:
                node.domain = ""
        kept = [o for o in converted.opset_import if o.domain != _PASSTHROUGH_DOMAIN]
        del converted.opset_import[:]
        converted.opset_import.extend(kept)
        minimum_ir = onnx.helper.find_min_ir_version_for(list(converted.opset_import), ignore_unknown=True)
        converted.ir_version = min(converted.ir_version, minimum_ir)
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:  # the converter raises plain RuntimeError/ValueError/ConvertError
        first = first_line(exc)
        raise SageEdgeError(f"cannot convert opset {current} down to {target}, which TensorRT 8.5/8.6 need: "
                            f"{first}") from None
    return converted


def max_output_difference(reference: Any, candidate: Any, feed: Dict[str, np.ndarray]) -> float:
    """Largest absolute difference between the two models' outputs on ``feed`` (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    outputs = []
    for model in (reference, candidate):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs.append(dict(zip(names, session.run(names, feed))))
    return max(float(np.abs(outputs[0][n].astype(np.float64) - outputs[1][n].astype(np.float64)).max())
               for n in outputs[0])
