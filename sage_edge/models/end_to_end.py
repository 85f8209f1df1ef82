"""Wrappers that turn the student into the graphs sage-edge exports (see ``sage_edge.io_contract``).

Both are used by export (traced to ONNX) and by the torch backend, so torch and
ONNX run the same code path.
"""
from __future__ import annotations

import torch
from torch import nn

from sage_edge import colour
from sage_edge.models.student import StudentNet


class FusedLuminance(nn.Module):
    """The bare network, image only: (vis_y, ir) in [0, 1], N x 1 x H x W -> fused Y."""

    def __init__(self, student: StudentNet) -> None:
        super().__init__()
        self.student = student

    def forward(self, vis_y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.student(vis_y, ir)[0]


class EndToEndFusion(nn.Module):
    """uint8 in, uint8 out, SAGE's colour handling inside.

    ir: 1 x H x W x 1 uint8, vis: 1 x H x W x 3 uint8 BGR
    -> fused: 1 x H x W x 3 uint8 BGR, fused_y: 1 x H x W x 1 uint8
    """

    def __init__(self, student: StudentNet) -> None:
        super().__init__()
        self.student = student

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Cast before anything else: TensorRT's ONNX parser accepts uint8 only on graph inputs that feed a
        # Cast directly (onnx-tensorrt 8.6-GA onward, ModelImporter.cpp, "TensorRT does not support UINT8
        # types for intermediate tensors"), so the uint8 inputs must not meet a Transpose first.
        ir_levels = ir.float().permute(0, 3, 1, 2)  # N x 1 x H x W
        vis_levels = vis.float().permute(0, 3, 1, 2)  # N x 3 x H x W (B, G, R)
        b, g, r = vis_levels[:, 0:1], vis_levels[:, 1:2], vis_levels[:, 2:3]
        y, cr, cb = colour.bgr_to_ycrcb(b, g, r, floor=torch.floor)
        fused_y = self.student(colour.to_unit(y), colour.to_unit(ir_levels))[0]
        out_b, out_g, out_r = colour.ycrcb_unit_to_bgr(fused_y, colour.to_unit(cr), colour.to_unit(cb))
        bgr = torch.cat([colour.unit_to_levels(c, floor=torch.floor) for c in (out_b, out_g, out_r)], dim=1)
        grey = colour.unit_to_levels(fused_y, floor=torch.floor)
        return bgr.permute(0, 2, 3, 1).to(torch.uint8), grey.permute(0, 2, 3, 1).to(torch.uint8)
