"""End to end on CPU: SAM masks -> teacher warm-up -> alternation -> export -> fuse; resume; bad input."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

THREADS = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process training sets torch's thread count; put it back for the rest of the suite."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(*args, env=None):
    """The CLI in this process (click's runner): same exit codes and stderr, no interpreter start-up."""
    from click.testing import CliRunner

    from sage_edge.cli import main

    return _Done(CliRunner().invoke(main, [str(a) for a in args]))


class _Done:
    def __init__(self, result) -> None:
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def _linked_dataset(root: Path, ivif_dir: Path, count: int = 2, dataset: str = "RoadScene") -> Path:
    """A dataset folder of symlinks to a few shared pairs (the data itself is never copied)."""
    for sub in ("ir", "vis"):
        (root / dataset / sub).mkdir(parents=True)
    stems = sorted(p.name for p in (ivif_dir / dataset / "ir").iterdir())[:count]
    for name in stems:
        for sub in ("ir", "vis"):
            (root / dataset / sub / name).symlink_to((ivif_dir / dataset / sub / name).resolve())
    return root


def _one_line_error(done) -> str:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def _rows(run: Path) -> list[dict]:
    with open(run / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_masks_then_distill_then_export_and_fuse(tmp_path, ivif_dir):
    data = _linked_dataset(tmp_path / "data", ivif_dir)
    done = cli("train", "masks", "--data", data, "--sam-checkpoint", "tiny-random:0", "--points-per-side", "4",
                   "--points-per-batch", "16", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
                   "--crop-n-layers", "0", env=THREADS)
    assert done.returncode == 0, done.stderr
    assert len(list((data / "sam_masks").rglob("*.npz"))) == 4

    run = tmp_path / "run"
    done = cli("train", "distill", "--data", data, "--out", run, "--preset", "smoke", "--sam-checkpoint",
                   "tiny-random:0", "--threads", "1", "--no-progress", env=THREADS)
    assert done.returncode == 0, done.stderr
    for name in ("student.safetensors", "teacher.safetensors", "config.json", "losses.csv", "loss_curve.png",
                 "checkpoint/last.safetensors", "checkpoint/last.json"):
        assert (run / name).is_file(), name

    rows = _rows(run)
    phases = [r["phase"] for r in rows]
    assert phases[:8] == ["warmup"] * 8  # smoke: 2 warm-up epochs x 4 steps, teacher alone
    assert phases[8:] == ["student", "teacher"] * 8  # then alternation, batch by batch
    for r in rows:
        prefix = "t_" if r["phase"] in ("warmup", "teacher") else "s_"
        values = {k: float(v) for k, v in r.items() if k.startswith(prefix)}
        assert values and all(math.isfinite(v) for v in values.values()), r
    student = [float(r["s_total"]) for r in rows if r["phase"] == "student"]
    warm = [float(r["t_total"]) for r in rows if r["phase"] == "warmup"]
    assert np.mean(student[-3:]) < np.mean(student[:3])  # the student's total loss falls
    assert np.mean(warm[-3:]) < np.mean(warm[:3])  # and so does the teacher's during warm-up
    cs = [float(r["s_cs"]) for r in rows if r["phase"] == "student"]
    assert all(v > 0 for v in cs)  # L_cs is on (tiny random SAM as Φ)
    summary = json.loads((run / "config.json").read_text())["summary"]
    assert summary["l_cs"] is True and summary["world_size"] == 1

    # the student exports to ONNX and fuses through the torch-free runtime
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.imageio import read_ir, read_visible
    from sage_edge.models.checkpoint import load_student
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    student = load_student(run / "student.safetensors")
    onnx_path = tmp_path / "student.onnx"
    export_onnx(student, onnx_path, io_kind="uint8")
    pair = sorted((data / "RoadScene" / "ir").iterdir())[0]
    ir, vis = read_ir(pair), read_visible(data / "RoadScene" / "vis" / pair.name)
    with OnnxRuntimeBackend(str(onnx_path)) as backend:
        fused = Fuser(backend).fuse(ir, vis)
    assert fused.shape == vis.shape and fused.dtype == np.uint8
    assert 0 < float(fused.std())

    # --resume continues from the last checkpoint (here: the end) and keeps the log
    done = cli("train", "distill", "--data", data, "--out", run, "--preset", "smoke", "--sam-checkpoint",
                   "tiny-random:0", "--threads", "1", "--no-progress", "--resume", env=THREADS)
    assert done.returncode == 0, done.stderr
    assert _rows(run) == rows


def test_checkpoint_round_trip_restores_optimizers_and_schedules(tmp_path):
    import torch

    from sage_edge.models.student import StudentNet
    from sage_edge.train.checkpointing import load_checkpoint, save_checkpoint

    def make():
        torch.manual_seed(0)
        net = StudentNet()
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-5)
        return net, opt, sched

    net, opt, sched = make()
    x = torch.rand(2, 1, 16, 16)
    for _ in range(3):
        opt.zero_grad()
        net(x, x)[0].pow(2).mean().backward()
        opt.step()
        sched.step()
    config = {"teacher_width": 0.5, "batch_size": 2}
    save_checkpoint(tmp_path, {"student": net}, {"student": opt}, {"student": sched}, config, {"epoch": 3})
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))
    net2, opt2, sched2 = make()
    progress = load_checkpoint(tmp_path, {"student": net2}, {"student": opt2}, {"student": sched2}, config)
    assert progress == {"epoch": 3}
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for index in s1["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][index][key], s2["state"][index][key])
    assert sched2.last_epoch == 3 and sched2.get_last_lr() == sched.get_last_lr()
    # continuing gives the same next step as never stopping
    for o, n in ((opt, net), (opt2, net2)):
        o.zero_grad()
        n(x, x)[0].pow(2).mean().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


FAST = {"epochs": 2, "teacher_warmup_epochs": 1, "steps_per_epoch": 1, "max_pairs": 1}


def test_bad_input_one_line_each(tmp_path, ivif_dir):
    data = _linked_dataset(tmp_path / "data", ivif_dir, count=1)
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps(FAST))
    common = ["--preset", "smoke", "--config", fast, "--threads", "1", "--no-progress"]

    # no SAM masks cached yet
    line = _one_line_error(cli("train", "distill", "--data", data, "--out", tmp_path / "r0", *common, env=THREADS))
    assert "run `sage-edge train masks --data " in line and "--sam-checkpoint" in line
    # a dataset without pairs
    empty = tmp_path / "empty"
    (empty / "ir").mkdir(parents=True)
    (empty / "vis").mkdir()
    _one_line_error(cli("train", "distill", "--data", empty, "--out", tmp_path / "r1", *common, env=THREADS))
    # missing SAM checkpoint for L_cs
    line = _one_line_error(cli("train", "distill", "--data", data, "--out", tmp_path / "r2", "--masks", "none",
                                   "--sam-checkpoint", tmp_path / "sam_vit_b.pth", *common, env=THREADS))
    assert "no such SAM checkpoint" in line

    # a run, then resuming it with an incompatible config
    run = tmp_path / "run"
    done = cli("train", "distill", "--data", data, "--out", run, "--masks", "none", *common, env=THREADS)
    assert done.returncode == 0, done.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**FAST, "teacher_width": 0.25}))
    line = _one_line_error(cli("train", "distill", "--data", data, "--out", run, "--masks", "none", "--preset",
                                   "smoke", "--config", other, "--resume", "--no-progress", env=THREADS))
    assert "cannot resume" in line and "teacher_width" in line
    line = _one_line_error(cli("train", "distill", "--data", data, "--out", run, "--masks", "none", *common,
                                   env=THREADS))
    assert "--resume" in line  # never silently overwrites a run
    line = _one_line_error(cli("train", "distill", "--data", data, "--out", tmp_path / "nothing", "--masks",
                                   "none", "--resume", *common, env=THREADS))
    assert "nothing to resume" in line

    # labels of the wrong size
    (data / "RoadScene" / "labels").mkdir()
    stem = Path(sorted((data / "RoadScene" / "ir").iterdir())[0]).stem
    cv2.imwrite(str(data / "RoadScene" / "labels" / f"{stem}.png"), np.zeros((10, 12), np.uint8))
    line = _one_line_error(cli("train", "distill", "--data", data, "--out", tmp_path / "r3", "--masks", "none",
                                   *common, env=THREADS))
    assert "label is 12x10" in line
    assert not (tmp_path / "r3").exists()  # no partial output


def test_interrupted_run_resumes_to_the_same_student(tmp_path, ivif_dir, monkeypatch):
    import torch

    from sage_edge.models.checkpoint import load_state_dict
    from sage_edge.train import distill as trainer

    data = _linked_dataset(tmp_path / "data", ivif_dir, count=1)
    config = trainer.make_config("smoke", data=str(data), masks="none", epochs=3, teacher_warmup_epochs=1,
                                 steps_per_epoch=2, max_pairs=1, checkpoint_every=1, progress=False)
    whole = trainer.distill(trainer.replace(config, out=str(tmp_path / "whole")))

    real_save = trainer.save_checkpoint
    calls = []

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # after epoch 2: one warm-up epoch and one alternation epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.distill(trainer.replace(config, out=str(tmp_path / "cut")))
    assert not (tmp_path / "cut" / "student.safetensors").exists()
    epochs_saved = []
    monkeypatch.setattr(trainer, "save_checkpoint",
                        lambda *a, **k: (epochs_saved.append(a[-1]["epoch"]), real_save(*a, **k)))
    resumed = trainer.distill(trainer.replace(config, out=str(tmp_path / "cut")), resume=True)
    assert epochs_saved == [3]  # it continued after epoch 2; it did not start again

    a, b = load_state_dict(whole), load_state_dict(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)  # optimizer + schedule state restored exactly
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "whole")


def test_segmentation_guidance_is_pluggable(tmp_path):
    import torch

    from sage_edge.samples import synthetic_pair
    from sage_edge.train import distill as trainer

    for sub in ("ir", "vis", "labels"):
        (tmp_path / "data" / "set" / sub).mkdir(parents=True)
    ir, vis = synthetic_pair(72, 96, seed=0)
    cv2.imwrite(str(tmp_path / "data" / "set" / "ir" / "a.png"), ir)
    cv2.imwrite(str(tmp_path / "data" / "set" / "vis" / "a.png"), vis)
    label = (np.arange(96)[None, :].repeat(72, 0) // 32).astype(np.uint8)  # class ids 0, 1, 2
    cv2.imwrite(str(tmp_path / "data" / "set" / "labels" / "a.png"), label)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 3, 1)), str(tmp_path / "seg.pt"))

    config = trainer.make_config("smoke", data=str(tmp_path / "data"), masks="none", epochs=2, teacher_warmup_epochs=1,
                                 steps_per_epoch=1, progress=False)
    trainer.distill(trainer.replace(config, out=str(tmp_path / "with"), segmenter=str(tmp_path / "seg.pt")))
    seg = [float(r["t_seg"]) for r in _rows(tmp_path / "with") if r["phase"] == "warmup"]
    assert all(v > 0.5 for v in seg)  # cross-entropy over 3 classes from an untrained 1x1 conv
    assert json.loads((tmp_path / "with" / "config.json").read_text())["summary"]["segmentation_guidance"]

    trainer.distill(trainer.replace(config, out=str(tmp_path / "without")))  # labels but no segmenter: off
    assert all(float(r["t_seg"]) == 0 for r in _rows(tmp_path / "without") if r["phase"] == "warmup")


def test_init_student_starts_from_given_weights(tmp_path, ivif_dir):
    import torch

    from sage_edge.errors import SageEdgeError
    from sage_edge.models.checkpoint import load_state_dict, save_student_safetensors
    from sage_edge.models.student import StudentNet
    from sage_edge.train import distill as trainer

    data = _linked_dataset(tmp_path / "data", ivif_dir, count=1)
    torch.manual_seed(123)
    save_student_safetensors(StudentNet(), tmp_path / "init.safetensors")
    config = trainer.make_config("smoke", data=str(data), masks="none", epochs=2, teacher_warmup_epochs=1,
                                 steps_per_epoch=1, max_pairs=1, lr_student=0.0, progress=False,
                                 init_student=str(tmp_path / "init.safetensors"), out=str(tmp_path / "run"))
    out = load_state_dict(trainer.distill(config))
    init = load_state_dict(tmp_path / "init.safetensors")
    weights = [k for k in init if k.endswith("weight")]
    assert all(torch.equal(out[k], init[k]) for k in weights)  # lr 0: the student is exactly its init
    with pytest.raises(SageEdgeError):
        trainer.distill(trainer.replace(config, init_student=str(tmp_path / "missing.safetensors"),
                                        out=str(tmp_path / "run2")))


def test_presets_and_config_files(tmp_path):
    from sage_edge.errors import SageEdgeError
    from sage_edge.train.distill import make_config

    paper = make_config("paper")
    assert (paper.lr_teacher, paper.lr_student, paper.lr_min) == (5e-4, 2e-3, 1e-5)
    assert (paper.crop_height, paper.crop_width, paper.batch_size, paper.seed, paper.hflip) == (192, 256, 4, 2, True)
    assert paper.teacher_width == 1.0
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 7, "teacher_width": 0.5}))
    config = make_config("smoke", tmp_path / "c.json", teacher_warmup_epochs=3, epochs=None)
    assert (config.epochs, config.teacher_width, config.teacher_warmup_epochs) == (7, 0.5, 3)  # preset < file < flags
    (tmp_path / "bad.json").write_text(json.dumps({"epoch": 7}))
    with pytest.raises(SageEdgeError, match="unknown config field"):
        make_config("paper", tmp_path / "bad.json")
