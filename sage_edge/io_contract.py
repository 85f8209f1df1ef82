"""The tensor names and layouts of exported sage-edge models: the contract between export and runtime.

``uint8`` graphs (the default export, end to end; colour maths runs in the graph):
    inputs   ir       1 x H x W x 1  uint8   IR grey levels
             vis      1 x H x W x 3  uint8   visible, BGR, OpenCV's interleaved layout
    outputs  fused    1 x H x W x 3  uint8   fused image, BGR
             fused_y  1 x H x W x 1  uint8   fused luminance (the output for a grey visible image)
  NHWC so that an OpenCV frame (H x W x C, contiguous) is fed as-is with no host-side copy;
  the transposes to the network's NCHW run inside the graph, on the GPU on a Jetson.

``float`` graphs (the bare network):
    inputs   vis_y    1 x 1 x H x W  float32 visible luminance Y in [0, 1]
             ir       1 x 1 x H x W  float32 IR in [0, 1]
    output   fused_y  1 x 1 x H x W  float32 fused Y in [-1, 1] (Tanh), used as Y in [0, 1]

H and W are dynamic unless the model was exported with a static size.

Both kinds exported by sage-edge also list ``border_pad`` (int64, shape [1]) as a graph input *with a
default initializer* (the amount given to ``export --border-pad``; 0 turns the padding off): pixels
mirrored on each side before the network and cropped after it (``sage_edge.models.border``). Runtimes
need not feed it: ONNX Runtime lists it among the overridable initializers, not the inputs, and TensorRT
builds it in as a constant. The exported amount is also in the model's metadata as ``sage_edge.border_pad``.
"""
from __future__ import annotations

from typing import Iterable

from sage_edge.errors import SageEdgeError

IR = "ir"
VIS = "vis"
VIS_Y = "vis_y"
FUSED = "fused"
FUSED_Y = "fused_y"
BORDER_PAD = "border_pad"
BORDER_PAD_METADATA = "sage_edge.border_pad"
# Pixels mirrored on each side by default (export, and the torch backend); see sage_edge.models.border.
DEFAULT_BORDER_PAD = 16

UINT8_INPUTS = (IR, VIS)
UINT8_OUTPUTS = (FUSED, FUSED_Y)
FLOAT_INPUTS = (VIS_Y, IR)
FLOAT_OUTPUTS = (FUSED_Y,)

IO_KINDS = ("uint8", "float")


def io_kind(input_names: Iterable[str], output_names: Iterable[str], model_name: str = "model") -> str:
    """'uint8' or 'float' from a model's tensor names; a one-line error for anything else.

    ``border_pad`` is optional among the inputs (ONNX lists it with the graph inputs; runtimes need not feed it).
    """
    inputs, outputs = set(input_names) - {BORDER_PAD}, set(output_names)
    if inputs == set(UINT8_INPUTS) and set(UINT8_OUTPUTS) <= outputs:
        return "uint8"
    if inputs == set(FLOAT_INPUTS) and set(FLOAT_OUTPUTS) <= outputs:
        return "float"
    raise SageEdgeError(
        f"{model_name}: not a sage-edge fusion model (inputs {sorted(inputs)}, outputs {sorted(outputs)}; "
        f"expected inputs {list(UINT8_INPUTS)} or {list(FLOAT_INPUTS)}); export one with `sage-edge export`"
    )
