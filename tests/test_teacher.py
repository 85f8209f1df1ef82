"""The SPA teacher: shapes, the persistent repository, shared attention modules, zero-init outputs."""
from __future__ import annotations

import math

import pytest
import torch

from sage_edge.models.student import StudentNet
from sage_edge.train.teacher import HEADS, POOL, SPAttention, TeacherNet, parameter_count


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _inputs(h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    y, ir = torch.rand(2, 1, h, w, generator=g), torch.rand(2, 1, h, w, generator=g)
    masks = (torch.rand(2, 4, h, w, generator=g) > 0.5).float()
    return y, ir, y * masks, ir * masks


def test_outputs_match_the_student_features():
    teacher = TeacherNet(width=0.25).eval()
    y, ir, p_vis, p_ir = _inputs()
    with torch.no_grad():
        fused, features = teacher(y, ir, p_vis, p_ir)
        _, student_features = StudentNet().eval()(y, ir)
    assert fused.shape == y.shape
    assert float(fused.abs().max()) <= 1.0
    assert [f.shape for f in features] == [f.shape for f in student_features]  # 32 ch at H, H/2, H/4, H/2, H


def test_persistent_repository_shapes():
    teacher = TeacherNet(width=0.25).eval()
    y, ir, p_vis, p_ir = _inputs(h=40, w=56)
    with torch.no_grad():
        teacher(y, ir, p_vis, p_ir)
    assert len(teacher.repository) == 5
    inner = HEADS * teacher.spa.repository.self_attn.head_dim
    sizes = [(40, 56), (20, 28), (10, 14), (20, 28), (40, 56)]  # H, H/2, H/4, H/2, H
    for (k, v), (h, w) in zip(teacher.repository, sizes):
        tokens = math.ceil(h / POOL) * math.ceil(w / POOL)  # attention inputs max-pooled by 4
        assert k.shape == v.shape == (2, tokens, inner)
    assert teacher.spa.repository.self_attn.heads == 2
    assert TeacherNet(1.0).spa.repository.self_attn.head_dim == 32  # 2 heads x 32 dims at full width


def test_attention_modules_and_middle_convs_are_shared_by_all_five_stages():
    teacher = TeacherNet(width=0.25).eval()
    attention = [m for m in teacher.modules() if isinstance(m, SPAttention)]
    assert len({id(m) for m in attention}) == 5  # five attention modules in the whole network, no copies
    calls = {id(m): 0 for m in attention + teacher.spa.middle_convs()}
    hooks = [m.register_forward_hook(lambda mod, *_: calls.__setitem__(id(mod), calls[id(mod)] + 1))
             for m in attention + teacher.spa.middle_convs()]
    with torch.no_grad():
        teacher(*_inputs())
    for h in hooks:
        h.remove()
    assert set(calls.values()) == {5}  # each one runs once in each of the five stages
    # parameters are counted once: the network is the sum of its parts with ONE shared SPA block
    parts = [teacher.image_encoder, teacher.ir_encoder, teacher.vis_encoder, teacher.spa, teacher.compress,
             teacher.heads, teacher.decoder]
    assert parameter_count(teacher) == sum(parameter_count(p) for p in parts)
    assert len(teacher.spa.attention_modules()) == 5 and len(teacher.spa.middle_convs()) == 4


def test_zero_initialised_out_projection_makes_attention_an_identity_at_start():
    module = SPAttention(16, heads=2, head_dim=8).eval()
    x = torch.randn(1, 16, 12, 12)
    ctx = torch.randn(1, 9, 16)
    with torch.no_grad():
        out, k_self, v_self, k_cross, v_cross = module(x, ctx, ctx)
    assert torch.equal(out, x)
    assert k_self.shape == (1, 9, 16) and k_cross.shape == (1, 9, 16)
    assert float(module.proj_out.weight.detach().abs().sum()) == 0.0
    # ...but the out projection does receive gradients, so attention starts learning at once
    out, *_ = module.train()(x, ctx, ctx)
    out.pow(2).sum().backward()
    assert float(module.proj_out.weight.grad.abs().sum()) > 0


def test_width_is_a_config_value():
    full, tiny = parameter_count(TeacherNet(1.0)), parameter_count(TeacherNet(0.125))
    assert 1.5e6 < full < 3.0e6  # published teacher: about 2.6M
    assert tiny < full / 20


def test_teacher_trains():
    torch.manual_seed(0)
    teacher = TeacherNet(width=0.125)
    y, ir, p_vis, p_ir = _inputs(32, 32)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=5e-3)
    losses = []
    for _ in range(8):
        fused, _ = teacher(y, ir, p_vis, p_ir)
        loss = (fused - 0.5 * (y + ir)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in teacher.spa.parameters())  # every shared parameter is used
