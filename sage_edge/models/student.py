"""The SAGE student: a 135k-parameter U-shaped fusion network.

Module names match the published checkpoint key-for-key
(``module1.0.weight`` ... ``final_decoder.0.bias``), so a published
``state_dict`` loads with ``strict=True``.

Shapes (B = batch, H x W any size; odd sizes are fine):
    y, ir            : B x 1 x H x W, float in [0, 1]
    x1, x5           : B x 32 x H x W
    x2, x4           : B x 32 x H//2 x W//2  (max-pool floors odd sizes)
    x3               : B x 32 x (H//2)//2 x (W//2)//2
    fused            : B x 1 x H x W, in [-1, 1] (Tanh); used as the fused Y.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = 32


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.01),
    ]


def conv_block(in_channels: int, channels: int = CHANNELS, depth: int = 3) -> nn.Sequential:
    layers = conv_bn_act(in_channels, channels)
    for _ in range(depth - 1):
        layers += conv_bn_act(channels, channels)
    return nn.Sequential(*layers)


class StudentNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.module1 = conv_block(2)
        self.module2 = conv_block(CHANNELS)
        self.module3 = conv_block(CHANNELS)
        self.adjust_channels4 = nn.Sequential(*conv_bn_act(2 * CHANNELS, CHANNELS, kernel_size=1))
        self.module4 = conv_block(CHANNELS)
        self.adjust_channels5 = nn.Sequential(*conv_bn_act(2 * CHANNELS, CHANNELS, kernel_size=1))
        self.module5 = conv_block(CHANNELS)
        self.final_decoder = nn.Sequential(nn.Conv2d(CHANNELS, 1, 3, padding=1), nn.Tanh())

    def forward(
        self, y: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        x1 = self.module1(torch.cat([y, ir], dim=1))
        x2 = self.module2(F.max_pool2d(x1, 2))
        x3 = self.module3(F.max_pool2d(x2, 2))
        up3 = F.interpolate(x3, size=x2.shape[-2:], mode="bilinear", align_corners=False)
        x4 = self.module4(self.adjust_channels4(torch.cat([up3, x2], dim=1)))
        up4 = F.interpolate(x4, size=x1.shape[-2:], mode="bilinear", align_corners=False)
        x5 = self.module5(self.adjust_channels5(torch.cat([up4, x1], dim=1)))
        fused = self.final_decoder(x5)
        return fused, (x1, x2, x3, x4, x5)
