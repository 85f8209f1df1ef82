"""Distillation losses on tensors with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sage_edge.train import losses


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _edges(h=32, w=32):
    """Y has a vertical step on the left half, IR a horizontal step on the right half (disjoint gradients)."""
    y = torch.zeros(1, 1, h, w)
    y[..., :, 8:16] = 1.0
    ir = torch.zeros(1, 1, h, w)
    ir[..., 20:, 24:] = 0.5
    return y, ir


def test_student_pixel_loss_weights():
    f = torch.zeros(2, 1, 8, 8)
    y, ir, t = torch.ones_like(f), torch.full_like(f, 0.5), torch.full_like(f, 0.25)
    assert float(losses.student_pixel_loss(f, y, ir, t)) == pytest.approx(3 * 1 + 2 * 0.25 + 4 * 0.0625)


def test_gradient_term_follows_the_stronger_source():
    y, ir = _edges()
    # interior pixels only carry gradient from one source; F = Y + IR has ∇F = max(∇Y, ∇IR) wherever supports
    # do not touch, so G(F; Y, IR) is ~0 while G(Y; Y, IR) misses IR's edges exactly.
    both = y + ir
    g_both = float(losses.max_gradient_loss(both, y, ir))
    g_y = float(losses.max_gradient_loss(y, y, ir))
    assert g_both < 1e-6
    missing = torch.clamp(losses.sobel_magnitude(ir) - losses.sobel_magnitude(y), min=0).mean()
    assert g_y == pytest.approx(float(missing), rel=1e-6)
    assert g_y > 0.01


def test_student_gradient_loss_known_answer():
    y, ir = _edges()
    f = torch.zeros_like(y)  # flat: ∇F = 0
    t = y.clone()
    expected = 9 * torch.maximum(losses.sobel_magnitude(y), losses.sobel_magnitude(ir)).mean() \
        + 3 * losses.sobel_magnitude(t).mean()
    assert float(losses.student_gradient_loss(f, y, ir, t)) == pytest.approx(float(expected), rel=1e-6)
    assert float(losses.student_gradient_loss(y + ir, y, ir, y + ir)) < 1e-6


def test_feature_loss_identical_orthogonal_opposite():
    torch.manual_seed(0)
    feats = [torch.randn(2, 32, 8, 8) for _ in range(5)]
    assert float(losses.feature_loss(feats, [f.clone() for f in feats])) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.feature_loss(feats, [-f for f in feats])) == pytest.approx(10.0, rel=1e-6)  # 5 x (1 - (-1))
    a = torch.zeros(1, 2, 1, 1)
    a[0, 0] = 1
    b = torch.zeros(1, 2, 1, 1)
    b[0, 1] = 1
    assert float(losses.feature_loss([a] * 5, [b] * 5)) == pytest.approx(5.0)
    # scale invariance: cosine
    assert float(losses.feature_loss(feats, [3 * f for f in feats])) == pytest.approx(0.0, abs=1e-6)


def _phi(x):
    """A stand-in Φ with two 'blocks' (the real one is a truncated SAM encoder)."""
    return [x, torch.nn.functional.avg_pool2d(x, 2)]


def _cs_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 1, 16, 16)
    f = torch.rand(shape, generator=g)
    y = torch.rand(shape, generator=g)
    ir = torch.rand(shape, generator=g)
    masks = (torch.rand(2, 4, 16, 16, generator=g) > 0.3).float()
    masks[:, 3] = 1.0  # a whole-image pad mask
    return f, y, ir, masks


def test_cs_zero_when_teacher_is_an_affine_copy_of_the_student():
    f, y, ir, masks = _cs_inputs()
    # instance norm removes per-channel scale and shift, so T = 3F + 0 gives d(F·P, T·P) = 0 for every mask
    value = losses.contrastive_semantic_loss(_phi, f, 3 * f, y, ir, masks, masks)
    assert float(value) == pytest.approx(0.0, abs=1e-6)


def test_cs_equals_count_over_3000_when_teacher_equals_source():
    f, y, _, masks = _cs_inputs()
    # T = Y = IR: every ratio d(F,T)/d(F,Y) is 1; 4 masks x 2 modalities per sample
    value = losses.contrastive_semantic_loss(_phi, f, y, y, y, masks, masks)
    assert float(value) == pytest.approx(8 / 3000, rel=1e-5)


def test_cs_ratio_direction():
    f, y, ir, masks = _cs_inputs()
    noise = torch.rand(f.shape, generator=torch.Generator().manual_seed(5))
    near_t = losses.contrastive_semantic_loss(_phi, f, f + 0.1 * noise, y, ir, masks, masks)
    far_t = losses.contrastive_semantic_loss(_phi, f, f + 1.0 * noise, y, ir, masks, masks)
    assert float(near_t) < float(far_t)  # the teacher is the positive: closer teacher, lower loss
    near_src = losses.contrastive_semantic_loss(_phi, f, f + noise, f + 0.1 * noise, f + 0.1 * noise, masks, masks)
    far_src = losses.contrastive_semantic_loss(_phi, f, f + noise, y, ir, masks, masks)
    assert float(near_src) > float(far_src)  # the source is the negative: closer source, higher loss


def test_cs_with_truncated_sam_encoder_gives_gradients_to_fused_only():
    from sage_edge.train.sam import TruncatedEncoder, build_tiny_sam

    phi = TruncatedEncoder(build_tiny_sam(0).image_encoder, blocks=2)
    g = torch.Generator().manual_seed(1)
    f, t, y, ir = (torch.rand(2, 1, 64, 64, generator=g) for _ in range(4))  # 4 x 4 tokens of 16 px
    masks = (torch.rand(2, 4, 64, 64, generator=g) > 0.3).float()
    f.requires_grad_(True)
    value = losses.contrastive_semantic_loss(phi, f, t, y, ir, masks, masks)
    value.backward()
    assert math.isfinite(float(value.detach())) and float(value.detach()) > 0
    assert f.grad is not None and float(f.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in phi.parameters())


def _f(t) -> float:
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def test_student_and_teacher_totals():
    y, ir = _edges(16, 16)
    torch.manual_seed(0)
    f = torch.rand_like(y, requires_grad=True)
    t = torch.rand_like(y, requires_grad=True)
    fs = [torch.randn(1, 32, 4, 4, requires_grad=True) for _ in range(5)]
    ft = [torch.randn(1, 32, 4, 4, requires_grad=True) for _ in range(5)]
    s = losses.student_loss(f, fs, t.detach(), [x.detach() for x in ft], y, ir)
    assert _f(s["cs"]) == 0.0  # no Φ: L_cs off
    expected = 3 * s["fuse"] + 3 * s["grad"] + s["cs"] + 0.3 * s["fea"]
    assert _f(s["total"].detach()) == pytest.approx(_f(expected.detach()))

    warm = losses.teacher_loss(t, ft, y, ir)
    assert _f(warm["student"]) == 0.0 and _f(warm["fea"]) == 0.0
    base = warm["mse_vis"] + warm["mse_ir"] + 2 * warm["grad"]
    assert _f(warm["total"]) == pytest.approx(_f(base))

    seg = torch.tensor(2.0)
    full = losses.teacher_loss(t, ft, y, ir, student=f, student_features=fs, segmentation=seg)
    reference = losses.student_loss(f.detach(), fs, t, ft, y, ir)["total"]
    assert _f(full["student"]) == pytest.approx(_f(reference))
    assert _f(full["total"]) == pytest.approx(_f(base + 0.3 * 2.0 + 0.1 * reference + 0.01 * full["fea"]))
    full["total"].backward()
    assert t.grad is not None and all(x.grad is not None for x in ft)
    assert f.grad is None and all(x.grad is None for x in fs)  # no gradient to the student


def test_segmentation_loss_and_labels(tmp_path):
    import cv2

    from sage_edge.errors import SageEdgeError
    from sage_edge.train.segmentation import load_label, load_segmenter, rgb_from_fused, segmentation_loss

    labels = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), labels)
    loaded = load_label(tmp_path / "a.png", (2, 4))
    assert loaded.dtype == np.int64 and np.array_equal(loaded, labels)  # class ids, not /255
    with pytest.raises(SageEdgeError, match="label is 4x2, but its image is 5x3"):
        load_label(tmp_path / "a.png", (3, 5))

    grey = torch.full((1, 1, 2, 4), 0.4)
    rgb = rgb_from_fused(grey, torch.full_like(grey, 0.5), torch.full_like(grey, 0.5))
    assert torch.allclose(rgb, torch.full((1, 3, 2, 4), 0.4))  # neutral chroma -> grey

    class Uniform(torch.nn.Module):
        def forward(self, x):
            return x[:, :1].repeat(1, 4, 1, 1) * 0.0

    path = tmp_path / "seg.pt"
    torch.jit.save(torch.jit.script(Uniform()), str(path))
    seg = load_segmenter(path)
    ce = segmentation_loss(seg, grey, grey * 0 + 0.5, grey * 0 + 0.5, torch.from_numpy(loaded)[None])
    assert float(ce) == pytest.approx(math.log(4), rel=1e-6)  # uniform logits over 4 classes
    entry = load_segmenter("torch.nn.functional:relu")
    assert callable(entry)
    with pytest.raises(SageEdgeError):
        load_segmenter("no_such_module_xyz:f")
