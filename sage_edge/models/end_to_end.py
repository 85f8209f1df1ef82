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
        ir_levels = ir.float().permute(0, 3, 1, 2)  # N x 1 x H x W
        vis_levels = vis.float().permute(0, 3, 1, 2)  # N x 3 x H x W (B, G, R)
        b, g, r = vis_levels[:, 0:1], vis_levels[:, 1:2], vis_levels[:, 2:3]
        y, cr, cb = colour.bgr_to_ycrcb(b, g, r, floor=torch.floor)
        fused_y = self.student(pad_borders(colour.to_unit(y), amount), pad_borders(colour.to_unit(ir_levels), amount))[0]
        fused_y = crop_borders(fused_y, amount)
        out_b, out_g, out_r = colour.ycrcb_unit_to_bgr(fused_y, colour.to_unit(cr), colour.to_unit(cb))
        bgr = torch.cat([colour.unit_to_levels(c, floor=torch.floor) for c in (out_b, out_g, out_r)], dim=1)
        grey = colour.unit_to_levels(fused_y, floor=torch.floor)
        return bgr.permute(0, 2, 3, 1).to(torch.uint8), grey.permute(0, 2, 3, 1).to(torch.uint8)
