"""The student network matches the published checkpoint key-for-key and has the published shape."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sage_edge.models.student import StudentNet  # noqa: E402


def test_state_dict_matches_published_checkpoint(official_checkpoint) -> None:
    published = torch.load(official_checkpoint, map_location="cpu", weights_only=True)
    ours = StudentNet().state_dict()
    assert list(ours.keys()) == list(published.keys())
    assert all(ours[k].shape == published[k].shape for k in ours)


def test_parameter_count_is_published_135617() -> None:
    assert sum(p.numel() for p in StudentNet().parameters()) == 135_617


def test_forward_returns_fused_and_five_features_for_odd_sizes() -> None:
    net = StudentNet().eval()
    y, ir = torch.rand(2, 1, 75, 57), torch.rand(2, 1, 75, 57)
    with torch.no_grad():
        fused, features = net(y, ir)
    assert fused.shape == (2, 1, 75, 57)
    assert fused.abs().max() <= 1.0  # Tanh
    assert [tuple(f.shape) for f in features] == [
        (2, 32, 75, 57), (2, 32, 37, 28), (2, 32, 18, 14), (2, 32, 37, 28), (2, 32, 75, 57)
    ]


def test_export_wrapper_returns_only_the_image() -> None:
    from sage_edge.models.end_to_end import FusedLuminance

    out = FusedLuminance(StudentNet()).eval()(torch.rand(1, 1, 40, 48), torch.rand(1, 1, 40, 48))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 40, 48)  # border padding cropped back
