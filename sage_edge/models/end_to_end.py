"""Wrappers that turn the student into the graphs sage-edge exports (see ``sage_edge.io_contract``).

Both are used by export (traced to ONNX) and by the torch backend, so torch and
ONNX run the same code path.
"""
from __future__ import annotations

import torch
from torch import nn

from sage_edge import colour
from sage_edge.models.border import DEFAULT_BORDER_PAD, as_amount, crop_borders, pad_borders
from sage_edge.models.student import StudentNet


class FusedLuminance(nn.Module):
    """The bare network, image only: (vis_y, ir) in [0, 1], N x 1 x H x W -> fused Y (border padding as below)."""

    def __init__(self, student: StudentNet, border_pad: int = DEFAULT_BORDER_PAD) -> None:
        super().__init__()
        self.student = student
        self.border_pad = int(border_pad)

    def forward(self, vis_y: torch.Tensor, ir: torch.Tensor, border_pad: torch.Tensor | None = None) -> torch.Tensor:
        amount = as_amount(self.border_pad) if border_pad is None else border_pad
        return crop_borders(self.student(pad_borders(vis_y, amount), pad_borders(ir, amount))[0], amount)


class EndToEndFusion(nn.Module):
    """uint8 in, uint8 out, SAGE's colour handling inside.

    ir: 1 x H x W x 1 uint8, vis: 1 x H x W x 3 uint8 BGR
    -> fused: 1 x H x W x 3 uint8 BGR, fused_y: 1 x H x W x 1 uint8

    The network sees its inputs mirrored by ``border_pad`` pixels on each side and its output is cropped
    back (``sage_edge.models.border``). ``forward``'s optional ``border_pad`` (int64, shape [1]) overrides
    the amount; export traces it as the graph input of that name.
    """

    def __init__(self, student: StudentNet, border_pad: int = DEFAULT_BORDER_PAD) -> None:
        super().__init__()
        self.student = student
        self.border_pad = int(border_pad)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor,
                border_pad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        amount = as_amount(self.border_pad) if border_pad is None else border_pad
        # Cast before anything else: TensorRT's ONNX parser accepts uint8 only on graph inputs that feed a
        # Cast directly (onnx-tensorrt 8.6-GA onward, ModelImporter.cpp, "TensorRT does not support UINT8
        # types for intermediate tensors"), so the uint8 inputs must not meet a Transpose first.
        # Then whole N x 1 x H x W planes (Slice + Squeeze/Unsqueeze, no Transpose): element-wise kernels are
        # fast on them, and ONNX Runtime's transpose optimizer has no Transpose to push into the colour maths
        # (it used to, leaving N x H x W x 1 tensors on its slow per-element broadcast path).
        ir_levels = _plane(ir.float())
        # Slices, not a Split: ModelOpt writes opset 19, and onnx's version converter has no Split 18 -> 17
        # adapter to bring its Q/DQ models back to the opset 17 that TensorRT 8.5/8.6 parse.
        vis_levels = vis.float()
        b, g, r = (_plane(vis_levels[..., c:c + 1]) for c in range(3))
        y, cr, cb = colour.luma_chroma_planes(b, g, r, floor=torch.floor)
        offsets = colour.chroma_offsets(cr, cb)
        fused_y = self.student(pad_borders(colour.to_unit(y), amount),
                               pad_borders(colour.to_unit(ir_levels), amount))[0]
        fused_y = crop_borders(fused_y, amount)
        out_b, out_g, out_r, grey = colour.fused_levels(fused_y, (*offsets, 0.5), floor=torch.floor)
        bgr = torch.cat([out_b, out_g, out_r], dim=1).permute(0, 2, 3, 1)  # N x H x W x 3: one Transpose
        return bgr.to(torch.uint8), _channels_last(grey).to(torch.uint8)


def _plane(levels: torch.Tensor) -> torch.Tensor:
    """N x H x W x 1 -> N x 1 x H x W without moving data (Squeeze + Unsqueeze rather than a Transpose)."""
    return levels.squeeze(3).unsqueeze(1)


def _channels_last(plane: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W -> N x H x W x 1 without moving data."""
    return plane.squeeze(1).unsqueeze(3)
