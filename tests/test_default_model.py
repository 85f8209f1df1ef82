"""The bundled default model: present, consistent with its weights, and a real fusion (better than averaging)."""
from __future__ import annotations

import numpy as np
import pytest

from sage_edge.imageio import read_ir, read_visible
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.zoo import resolve_model


def test_default_resolves_to_bundled_onnx_and_weights():
    assert resolve_model("default").name == "default.onnx"
    assert resolve_model("default", want="weights").name == "default.safetensors"


def test_bundled_onnx_matches_bundled_weights(ivif_dir):
    pytest.importorskip("torch")
    ir, vis = read_ir(ivif_dir / "RoadScene/ir/FLIR_04269.jpg"), read_visible(ivif_dir / "RoadScene/vis/FLIR_04269.jpg")
    with open_backend(resolve_model("default")) as onnx_backend, \
            open_backend(resolve_model("default", want="weights"), "torch") as torch_backend:
        diff = np.abs(Fuser(onnx_backend).fuse(ir, vis).astype(int) - Fuser(torch_backend).fuse(ir, vis).astype(int))
    assert diff.max() <= 1


def test_default_fuses_better_than_the_mean_rule(ivif_dir):
    """On the first pair of every dataset, averaged: more detail (Qabf, AG) and contrast (SD) than averaging."""
    from sage_edge.evaluation import baseline_fuse
    from sage_edge.metrics import compute_metrics, mean_metrics
    from sage_edge.pairs import find_datasets

    names = ["Qabf", "SD", "AG"]
    ours, baseline = [], []
    with open_backend(resolve_model("default")) as backend:
        fuser = Fuser(backend)
        for pairs in find_datasets(ivif_dir).values():
            ir, vis = read_ir(pairs[0].ir), read_visible(pairs[0].vis)
            ours.append(compute_metrics(ir, vis, fuser.fuse(ir, vis), metrics=names))
            baseline.append(compute_metrics(ir, vis, baseline_fuse("mean", ir, vis), metrics=names))
    ours_mean, baseline_mean = mean_metrics(ours), mean_metrics(baseline)
    for name in names:
        assert ours_mean[name] > baseline_mean[name], (name, ours_mean[name], baseline_mean[name])


def test_zoo_name_on_torch_backend_runs_the_weights(tmp_path, ivif_dir):
    """`--model default --backend torch` runs default.safetensors, and agrees with the bundled ONNX."""
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from sage_edge.cli import main

    pair = [str(ivif_dir / "TNO/ir/19.png"), str(ivif_dir / "TNO/vis/19.png")]
    for backend in ("torch", "onnxruntime"):
        result = CliRunner().invoke(main, ["fuse", *pair, "-o", str(tmp_path / f"{backend}.png"), "--backend", backend])
        assert result.exit_code == 0, result.stderr
    import cv2

    a, b = (cv2.imread(str(tmp_path / f"{n}.png"), cv2.IMREAD_UNCHANGED).astype(int) for n in ("torch", "onnxruntime"))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1
