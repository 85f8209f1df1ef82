"""The ``border_pad`` graph input across tools that rewrite a graph (ModelOpt, ONNX Runtime's and NNCF's
quantizers, AutoCast, OpenVINO's reader).

An exported graph lists ``border_pad`` both as a graph input and as an initializer (its default), so that
ONNX Runtime can override the amount (``sage_edge.models.border``). Those tools do not all keep that
pairing: ModelOpt's AutoCast refuses it ("Cannot restore public graph input metadata because names
changed"), and the quantizers fold the padding and drop the model's metadata. So a derived model gets the
amount *fixed*: the initializer stays as a constant, the graph input goes, and the metadata records the
amount, which is how runtimes learn it (ONNX Runtime refuses another ``--border-pad`` for such a graph;
TensorRT builds an initializer in either way).
"""
from __future__ import annotations

from typing import Any

from sage_edge.io_contract import BORDER_PAD, BORDER_PAD_METADATA


def border_pad_amount(model: Any) -> int | None:
    """The amount a graph pads by: its ``border_pad`` initializer, else its metadata, else None."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == BORDER_PAD:
            return int(numpy_helper.to_array(tensor).reshape(-1)[0])
    for prop in model.metadata_props:
        if prop.key == BORDER_PAD_METADATA:
            return int(prop.value)
    return None


def with_fixed_border_pad(model: Any) -> Any:
    """A copy of ``model`` whose border padding is a constant (no ``border_pad`` graph input), amount in the
    metadata. A model without border padding comes back as an unchanged copy."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    amount = border_pad_amount(fixed)
    if amount is None:
        return fixed
    kept = [value for value in fixed.graph.input if value.name != BORDER_PAD]
    del fixed.graph.input[:]
    fixed.graph.input.extend(kept)
    set_border_pad_metadata(fixed, amount)
    return fixed


def set_border_pad_metadata(model: Any, amount: int | None) -> None:
    """Record ``amount`` in ``model``'s metadata (in place); None leaves the model as it is."""
    if amount is None:
        return
    props = {p.key: p.value for p in model.metadata_props}
    props[BORDER_PAD_METADATA] = str(int(amount))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
