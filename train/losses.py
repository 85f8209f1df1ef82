"""SAGE's loss terms. Tensors are N x 1 x H x W in [0, 1] unless noted.

∇a = |Sobel_x * a| + |Sobel_y * a| (3x3, zero padding), and
G(a; s1, s2) = L1(∇a, max(∇s1, ∇s2)): the fused gradient should follow the
stronger source gradient at every pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = _SOBEL_X.t().contiguous()


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """∇image = |Sobel_x| + |Sobel_y|, same size (zero padding)."""
    kernels = torch.stack([_SOBEL_X, _SOBEL_Y])[:, None].to(image)
    channels = image.shape[1]
    grads = F.conv2d(image, kernels.repeat(channels, 1, 1, 1), padding=1, groups=channels)
    return grads.abs().view(image.shape[0], channels, 2, *image.shape[-2:]).sum(dim=2)


def max_gradient_loss(fused: torch.Tensor, source_a: torch.Tensor, source_b: torch.Tensor) -> torch.Tensor:
    """G(F; A, B) = L1(∇F, max(∇A, ∇B))."""
    return F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(source_a), sobel_magnitude(source_b)))


def source_loss(fused: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
    """The student's source terms: 3·MSE(F,Y) + 2·MSE(F,IR) + 9·G(F; Y, IR). Returns every term and 'total'."""
    terms = {
        "mse_vis": F.mse_loss(fused, vis_y),
        "mse_ir": F.mse_loss(fused, ir),
        "grad": max_gradient_loss(fused, vis_y, ir),
    }
    terms["total"] = 3.0 * terms["mse_vis"] + 2.0 * terms["mse_ir"] + 9.0 * terms["grad"]
    return terms
