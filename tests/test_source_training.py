"""Source training (how the default model is made): loss terms with known answers, BatchNorm calibration and
freezing, and a tiny end-to-end run through the CLI."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from sage_edge.errors import SageEdgeError  # noqa: E402
from sage_edge.models.student import StudentNet  # noqa: E402
from sage_edge.train import losses  # noqa: E402
from sage_edge.train.source_training import calibrate_batchnorm, make_source_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_intensity_term_keeps_the_brighter_source():
    y, ir = torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), 0.6)
    assert float(losses.intensity_loss(ir, y, ir)) == 0.0
    assert float(losses.intensity_loss(y, y, ir)) == pytest.approx(0.4)


def test_salient_term_takes_hot_targets_from_ir_and_the_rest_from_visible():
    y = torch.full((1, 1, 64, 64), 0.3)
    ir = torch.full((1, 1, 64, 64), 0.5)  # warmer than the visible everywhere, but flat: not salient
    ir[..., 30:34, 30:34] = 0.9  # a hot target
    saliency = losses.ir_saliency(ir)
    assert float(saliency[..., 31, 31]) == 1.0 and float(saliency[..., 5, 5]) == 0.0
    ideal = y.clone()
    ideal[..., 30:34, 30:34] = 0.9
    background, targets = losses.salient_intensity_losses(ideal, y, ir)
    assert float(background) == pytest.approx(0.0, abs=1e-7) and float(targets) == pytest.approx(0.0, abs=1e-7)
    # max(Y, IR) everywhere (the plain intensity term's ideal) lifts the whole background to the flat IR
    background, targets = losses.salient_intensity_losses(torch.maximum(y, ir), y, ir)
    assert float(background) == pytest.approx(0.2, abs=0.01) and float(targets) == pytest.approx(0.0, abs=1e-7)
    # the visible image alone loses the target: only the targets term sees it
    background, targets = losses.salient_intensity_losses(y, y, ir)
    assert float(background) == pytest.approx(0.0, abs=1e-7)
    assert float(targets) == pytest.approx(16 * 0.6 / 64 ** 2, rel=0.05)


def test_contrast_term_asks_a_target_to_stand_out_as_much_as_in_the_ir():
    ir = torch.full((1, 1, 64, 64), 0.2)
    ir[..., 30:34, 30:34] = 0.7  # a hot target, 0.5 above its surroundings
    bright_background = torch.full((1, 1, 64, 64), 0.8)
    bright_background[..., 30:34, 30:34] = 0.9  # as bright as max(Y, IR) wants, but only 0.1 above its surroundings
    assert float(losses.target_contrast_loss(bright_background, ir)) > 0.0
    standing_out = torch.full((1, 1, 64, 64), 0.3)
    standing_out[..., 30:34, 30:34] = 0.85  # 0.55 above its surroundings: at least the IR's contrast
    assert float(losses.target_contrast_loss(standing_out, ir)) == pytest.approx(0.0, abs=1e-7)
    assert float(losses.target_contrast_loss(ir, ir)) == pytest.approx(0.0, abs=1e-7)


def test_clamped_loss_sees_what_inference_writes():
    """clamp=True: every image term is computed on F clamped to [0, 1] (what inference writes); only the
    out-of-range term sees the raw output, and pulls it back into range."""
    torch.manual_seed(0)
    fused = torch.rand(2, 1, 16, 16) * 2.0 - 0.5  # Tanh output, partly outside [0, 1]
    y, ir = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    weights = {"intensity": 1.0, "background": 4.0, "targets": 16.0, "out_of_range": 10.0}
    clamped = losses.source_loss(fused, y, ir, clamp=True, **weights)
    reference = losses.source_loss(fused.clamp(0, 1), y, ir, **weights)
    for term in ("mse_vis", "mse_ir", "grad", "intensity", "background", "targets"):
        assert float(clamped[term]) == pytest.approx(float(reference[term]))
    assert float(clamped["out_of_range"]) == pytest.approx(float((torch.relu(-fused) + torch.relu(fused - 1)).mean()))
    assert float(reference["out_of_range"]) == 0.0
    sage = losses.source_loss(fused, y, ir)  # defaults: SAGE's student source terms on the raw output
    assert float(sage["total"]) == pytest.approx(3 * float(sage["mse_vis"]) + 2 * float(sage["mse_ir"])
                                                 + 9 * float(sage["grad"]))


def test_batchnorm_calibration_averages_the_batches_and_freezing_removes_the_train_eval_gap():
    torch.manual_seed(0)
    net = StudentNet()
    batches = [(torch.rand(2, 1, 32, 32) * scale, torch.rand(2, 1, 32, 32)) for scale in (0.2, 1.0)]
    calibrate_batchnorm(net, batches)
    first = net.module1[1]  # the first BatchNorm sees cat[Y, IR] through one conv
    with torch.no_grad():
        conv = net.module1[0]
        means = [conv(torch.cat(b, dim=1)).mean(dim=(0, 2, 3)) for b in batches]
    assert torch.allclose(first.running_mean, (means[0] + means[1]) / 2, atol=1e-5)
    assert first.momentum == 0.1  # restored
    net.eval()
    y, ir = batches[0]
    assert torch.equal(net(y, ir)[0], net(y, ir)[0])  # eval mode: no batch statistics, nothing moves


def test_recipes_and_config_file(tmp_path):
    default = make_source_config("default")
    assert default.freeze_bn_at < 1.0 and default.clamp_output and default.targets_weight > 0
    sage = make_source_config("sage")
    assert (sage.mse_vis_weight, sage.mse_ir_weight, sage.grad_weight, sage.intensity_weight) == (3, 2, 9, 0)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 7, "targets_weight": 1.5}))
    config = make_source_config("default", str(path), seed=5)
    assert (config.steps, config.targets_weight, config.seed) == (7, 1.5, 5)
    path.write_text(json.dumps({"stpes": 7}))
    with pytest.raises(SageEdgeError, match="unknown config field"):
        make_source_config("default", str(path))
    with pytest.raises(SageEdgeError, match="unknown recipe"):
        make_source_config("nope")


def test_train_source_cli_runs_both_phases(tmp_path, ivif_dir):
    """A few steps at tiny crops: batch statistics first, then frozen (inference) BatchNorm; a loadable student."""
    from click.testing import CliRunner

    from sage_edge.cli import main
    from sage_edge.models.checkpoint import load_student

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"crop_height": 32, "crop_width": 32, "bn_calibration_batches": 2}))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "source", "--data", str(ivif_dir / "TNO"), "--out", str(out),
                                       "--config", str(config), "--steps", "6", "--batch-size", "2", "--threads", "1",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    log = json.loads((out / "train_log.json").read_text())
    assert [row["bn"] for row in log["log"]] == ["train"] * 3 + ["frozen"] * 3
    assert all(row["out_of_range"] >= 0 for row in log["log"])
    load_student(out / "student.safetensors")
