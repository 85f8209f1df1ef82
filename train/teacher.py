"""The SAGE teacher: a U-shaped network of five SPA (semantic persistent attention) stages.

Inputs (B = batch, any H x W):
    y, ir        : B x 1 x H x W in [0, 1]
    p_vis, p_ir  : B x 4 x H x W, the visible luminance / IR times SAM's 4 largest masks of that image
Outputs:
    fused        : B x 1 x H x W in [-1, 1] (Tanh), like the student
    features     : five B x 32 x h x w tensors at H, H/2, H/4, H/2, H, matching the student's x1..x5

Structure (``width`` = 1.0 is the published size, C = 64·width):
    encoders     image cat[Y, IR] 2->16->32->C; IR patches 4->16->32->C; visible patches 4->16->32->C
                 (two 3x3 conv-BN-LeakyReLU per width)
    stages       H, H/2, H/4 (max-pool between), then H/2, H (up-sample + additive skip); each stage
                 outputs 4C (=256) channels, compressed back to C by two 3x3 convs (one pair per stage)
    SPA stage    all attention runs on inputs max-pooled by 4; the FIVE attention modules and FOUR
                 middle convs are the same objects in every stage:
        1. repository: the source features attend to themselves; the keys and values of that
           self-attention are the persistent repository K_src, V_src (its output is the source below)
        2. the IR and the visible patch features cross-attend to the repository (each with its
           own projections of K_src, V_src)
        3. residual 3x3 convs refine each patch branch and merge the two
        4. the merged result is combined with the source features
        5. mask attention: the combination cross-attends to the repository, re-projecting K/V
        6. the source features cross-attend to those re-projected K/V
        7. output cat(source', source, merged, mask') = 4C channels at the stage resolution
    decoder      last stage's 4C -> C -> C/2 -> 1, Tanh
    heads        five 1x1 4C -> 32 convs: the distillation features
Each attention module: GroupNorm, 1x1 projection in, self-attention, cross-attention, GEGLU
feed-forward, zero-initialised 1x1 projection out, residual; 2 heads x 32 dims (x width).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sage_edge.models.student import CHANNELS as STUDENT_CHANNELS

POOL = 4  # attention inputs are max-pooled by 4
HEADS = 2
HEAD_DIM = 32


def conv_block(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01))


def encoder(cin: int, widths: tuple[int, int, int]) -> nn.Sequential:
    """cin -> w0 -> w1 -> w2, two 3x3 conv-BN-LeakyReLU per width."""
    layers, prev = [], cin
    for w in widths:
        layers += [conv_block(prev, w), conv_block(w, w)]
        prev = w
    return nn.Sequential(*layers)


class ResidualConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.body(x), 0.01)


class Attention(nn.Module):
    """Multi-head attention; returns the output and the (projected) keys and values it used."""

    def __init__(self, dim: int, heads: int, head_dim: int, kv_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * head_dim
        kv_dim = kv_dim or dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, k_in: torch.Tensor | None = None, v_in: torch.Tensor | None = None):
        k_in = x if k_in is None else k_in
        v_in = k_in if v_in is None else v_in
        q, k, v = self.to_q(x), self.to_k(k_in), self.to_v(v_in)
        b, n, _ = q.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1)), k, v


class GEGLU(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim * mult * 2)
        self.out = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class SPAttention(nn.Module):
    """GroupNorm -> 1x1 in -> self-attn -> cross-attn(K, V) -> GEGLU FF -> zero-init 1x1 out, residual.

    Runs on the input max-pooled by 4 and up-samples the result back. ``k_ctx``/``v_ctx`` are
    B x N x inner tensors; returns (output, self-attention K, V, cross-attention K, V).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, cross: bool = True) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(min(32, channels // 4) if channels >= 8 else 1, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.norm1, self.norm3 = nn.LayerNorm(inner), nn.LayerNorm(inner)
        self.self_attn = Attention(inner, heads, head_dim)
        self.norm2 = nn.LayerNorm(inner) if cross else None
        self.cross_attn = Attention(inner, heads, head_dim, kv_dim=inner) if cross else None
        self.ff = GEGLU(inner)
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, k_ctx: torch.Tensor | None = None, v_ctx: torch.Tensor | None = None):
        size = x.shape[-2:]
        small = F.max_pool2d(x, POOL, ceil_mode=True)
        h, w = small.shape[-2:]
        t = self.proj_in(self.norm(small)).flatten(2).transpose(1, 2)  # B x N x inner
        a, k_self, v_self = self.self_attn(self.norm1(t))
        t = t + a
        k_cross = v_cross = None
        if self.cross_attn is not None and k_ctx is not None:
            a, k_cross, v_cross = self.cross_attn(self.norm2(t), k_ctx, v_ctx)
            t = t + a
        t = t + self.ff(self.norm3(t))
        out = self.proj_out(t.transpose(1, 2).reshape(t.shape[0], -1, h, w))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return x + out, k_self, v_self, k_cross, v_cross


class SharedSPA(nn.Module):
    """The five attention modules and four middle convs shared by every stage."""

    def __init__(self, channels: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.repository = SPAttention(channels, heads, head_dim, cross=False)  # self-attention only
        self.ir_attention = SPAttention(channels, heads, head_dim)
        self.vis_attention = SPAttention(channels, heads, head_dim)
        self.mask_attention = SPAttention(channels, heads, head_dim)
        self.source_attention = SPAttention(channels, heads, head_dim)
        self.ir_conv = ResidualConv(channels)
        self.vis_conv = ResidualConv(channels)
        self.merge_conv = conv_block(2 * channels, channels)
        self.combine_conv = conv_block(2 * channels, channels)

    def attention_modules(self) -> list[SPAttention]:
        return [self.repository, self.ir_attention, self.vis_attention, self.mask_attention, self.source_attention]

    def middle_convs(self) -> list[nn.Module]:
        return [self.ir_conv, self.vis_conv, self.merge_conv, self.combine_conv]

    def forward(self, source: torch.Tensor, p_ir: torch.Tensor, p_vis: torch.Tensor):
        # 1. persistent repository: the keys/values of the source self-attention; its output is the
        #    source for the rest of the stage
        source, k_src, v_src, _, _ = self.repository(source)
        # 2. patch branches cross-attend to the repository (own projections of K_src, V_src)
        ir, _, _, _, _ = self.ir_attention(p_ir, k_src, v_src)
        vis, _, _, _, _ = self.vis_attention(p_vis, k_src, v_src)
        # 3. residual convs, merge the two branches
        merged = self.merge_conv(torch.cat([self.ir_conv(ir), self.vis_conv(vis)], dim=1))
        # 4. combine with the source
        combined = self.combine_conv(torch.cat([merged, source], dim=1))
        # 5. mask attention: cross-attend to the repository, re-projecting K/V
        mask, _, _, k_re, v_re = self.mask_attention(combined, k_src, v_src)
        # 6. the source cross-attends to the re-projected K/V
        source2, _, _, _, _ = self.source_attention(source, k_re, v_re)
        # 7. 4C channels
        return torch.cat([source2, source, merged, mask], dim=1), (k_src, v_src)


class TeacherNet(nn.Module):
    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c = max(8, int(round(64 * width)))
        widths = (max(4, int(round(16 * width))), max(4, int(round(32 * width))), c)
        head_dim = max(4, int(round(HEAD_DIM * width)))
        self.width, self.channels = width, c
        self.image_encoder = encoder(2, widths)
        self.ir_encoder = encoder(4, widths)
        self.vis_encoder = encoder(4, widths)
        self.spa = SharedSPA(c, HEADS, head_dim)
        self.compress = nn.ModuleList([nn.Sequential(conv_block(4 * c, c), conv_block(c, c)) for _ in range(5)])
        self.heads = nn.ModuleList([nn.Conv2d(4 * c, STUDENT_CHANNELS, 1) for _ in range(5)])
        self.decoder = nn.Sequential(conv_block(4 * c, c), conv_block(c, max(4, c // 2)),
                                     nn.Conv2d(max(4, c // 2), 1, 3, padding=1), nn.Tanh())
        self.repository: list[tuple[torch.Tensor, torch.Tensor]] = []  # K_src, V_src per stage (last forward)

    def forward(self, y: torch.Tensor, ir: torch.Tensor, p_vis: torch.Tensor, p_ir: torch.Tensor):
        src = self.image_encoder(torch.cat([y, ir], dim=1))
        pir = [self.ir_encoder(p_ir)]
        pvis = [self.vis_encoder(p_vis)]
        for _ in range(2):
            pir.append(F.max_pool2d(pir[-1], 2))
            pvis.append(F.max_pool2d(pvis[-1], 2))
        level = [0, 1, 2, 1, 0]  # resolution index of each stage: H, H/2, H/4, H/2, H
        outputs, compressed, repo = [], [], []
        x = src
        for stage in range(5):
            if stage in (1, 2):
                x = F.max_pool2d(compressed[-1], 2)
            elif stage in (3, 4):
                skip = compressed[4 - stage]  # stage 3 <- stage 1 (H/2), stage 4 <- stage 0 (H)
                x = F.interpolate(compressed[-1], size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
            out, kv = self.spa(x, pir[level[stage]], pvis[level[stage]])
            outputs.append(out)
            repo.append(kv)
            compressed.append(self.compress[stage](out))
        self.repository = repo
        fused = self.decoder(outputs[-1])
        features = tuple(head(out) for head, out in zip(self.heads, outputs))
        return fused, features


def masked_sources(y: torch.Tensor, ir: torch.Tensor, masks_vis: torch.Tensor, masks_ir: torch.Tensor):
    """P_vis = Y·mask_vis^k, P_ir = IR·mask_ir^k (k = 1..4): the teacher's patch inputs."""
    return y * masks_vis, ir * masks_ir


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
