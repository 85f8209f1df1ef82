"""Multi-process training: 2 processes, gloo backend, under torchrun, on CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2


def test_torchrun_two_processes_gloo(tmp_path):
    from sage_edge.samples import synthetic_pair

    for sub in ("ir", "vis"):
        (tmp_path / "data" / "set" / sub).mkdir(parents=True)
    for i in range(2):
        ir, vis = synthetic_pair(72, 96, seed=i)
        cv2.imwrite(str(tmp_path / "data" / "set" / "ir" / f"{i}.png"), ir)
        cv2.imwrite(str(tmp_path / "data" / "set" / "vis" / f"{i}.png"), vis)
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"epochs": 3, "teacher_warmup_epochs": 1, "steps_per_epoch": 2}))
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "sage_edge.cli", "train", "distill", "--data", str(tmp_path / "data"), "--out", str(run),
         "--masks", "none", "--preset", "smoke", "--config", str(config), "--threads", "1", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "config.json").read_text())["summary"]
    assert summary["world_size"] == 2
    assert summary["ddp_student_checksum_spread"] == 0.0  # DDP kept both replicas identical
    assert summary["steps"] == 6  # per process: each rank saw its own half of the samples
    assert done.stdout.count("wrote ") == 1  # rank 0 writes, once
    from sage_edge.models.checkpoint import load_student

    load_student(run / "student.safetensors")
