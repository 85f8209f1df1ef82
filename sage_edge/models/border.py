"""Border padding around the network: pad the inputs, run the student, crop its output back.

The student's 3x3 convolutions zero-pad every feature map, which leaves a dark-then-bright ring one or
two pixels wide along all four image borders. Padding the inputs by mirroring (``reflect``) and cropping
the result moves that ring outside the image.

The amount is a tensor so that the exported graph carries it as an input (``border_pad``, int64, shape
[1]) with a default initializer: ONNX Runtime lets the runtime override it per session (``--border-pad``),
and TensorRT's ONNX parser treats an initializer as weights even when it is also listed as a graph input
(onnx-tensorrt 8.5-GA..main, ModelImporter.cpp ``importInputs``: "Initializers are not really network
inputs, so they need to be excluded"), so an engine is built with the exported amount. The ONNX ops
(Pad mode=reflect with pads computed in the graph, Slice with computed starts/ends) are in onnx-tensorrt's
operator table from 8.5-GA on (docs/operators.md; builtin_op_importers.cpp Pad: "reflect" ->
SliceMode::kREFLECT, pads from a tensor supported).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from sage_edge.io_contract import DEFAULT_BORDER_PAD  # noqa: F401 - re-exported for the model side

MODE = "reflect"


def _ints(*values: object) -> list[int]:
    """Python ints from tensors or sizes. Under torch.onnx.export the graph gets each Function's ``symbolic``,
    which keeps the amount and the sizes graph values, so the tracer's warning about constants does not apply."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return [int(v.reshape(-1)[0]) if isinstance(v, torch.Tensor) else int(v) for v in values]


class _PadBorders(torch.autograd.Function):
    """x (N x C x H x W) mirrored by ``amount`` pixels on all four sides. ONNX: Pad(mode=reflect)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (p,) = _ints(amount)
        return F.pad(x, (p, p, p, p), mode=MODE)

    @staticmethod
    def symbolic(g, x, amount):  # pragma: no cover - runs inside torch.onnx.export
        zeros = g.op("Constant", value_t=torch.zeros(2, dtype=torch.int64))
        pads = g.op("Concat", zeros, amount, amount, zeros, amount, amount, axis_i=0)  # N C H W begins, then ends
        return g.op("Pad", x, pads, mode_s=MODE)


class _CropBorders(torch.autograd.Function):
    """x (N x C x H x W) without ``amount`` pixels on each side. ONNX: Slice with starts/ends from the shape."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # plain ints: a traced no-op slice (p = 0) breaks torch's export passes
        p, height, width = _ints(amount, x.shape[-2], x.shape[-1])
        return x[..., p : height - p, p : width - p].clone()

    @staticmethod
    def symbolic(g, x, amount):  # pragma: no cover - runs inside torch.onnx.export
        shape = g.op("Shape", x)
        height_width = g.op("Slice", shape, g.op("Constant", value_t=torch.tensor([2])),
                            g.op("Constant", value_t=torch.tensor([4])))
        starts = g.op("Concat", amount, amount, axis_i=0)
        ends = g.op("Sub", height_width, starts)
        return g.op("Slice", x, starts, ends, g.op("Constant", value_t=torch.tensor([2, 3])))


def as_amount(border_pad: int) -> torch.Tensor:
    """The pad amount as the graph carries it: int64, shape [1]."""
    if border_pad < 0:
        raise ValueError(f"border_pad must be >= 0, got {border_pad}")
    return torch.tensor([int(border_pad)], dtype=torch.int64)


def pad_borders(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    return _PadBorders.apply(x, amount)


def crop_borders(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    return _CropBorders.apply(x, amount)
