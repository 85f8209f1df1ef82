"""ONNX export: dynamic shapes, static shapes, float graphs, and the export self-check."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from sage_edge.errors import SageEdgeError  # noqa: E402
from sage_edge.export import onnx_export  # noqa: E402
from sage_edge.models.checkpoint import load_student  # noqa: E402
from sage_edge.runtime.backend import open_backend  # noqa: E402
from sage_edge.runtime.fuser import Fuser  # noqa: E402


@pytest.mark.parametrize("width,height", [(256, 256), (575, 475), (1024, 768)])
def test_one_dynamic_graph_serves_every_size_and_matches_torch(width, height, official_onnx, official_checkpoint,
                                                               ivif_dir):
    ir = cv2.resize(cv2.imread(str(ivif_dir / "TNO/ir/05.png"), cv2.IMREAD_GRAYSCALE), (width, height))
    vis = cv2.resize(cv2.imread(str(ivif_dir / "MSRS/vis/00537D.png")), (width, height))
    with open_backend(official_onnx) as ort_backend, open_backend(official_checkpoint, "torch") as torch_backend:
        ort_out, torch_out = Fuser(ort_backend).fuse(ir, vis), Fuser(torch_backend).fuse(ir, vis)
    assert ort_out.shape == (height, width, 3)
    diff = np.abs(ort_out.astype(int) - torch_out.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_exported_graph_has_documented_io(official_onnx):
    model = onnx.load(str(official_onnx))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.input) + list(model.graph.output)}
    assert dims == {"ir": [1, "height", "width", 1], "vis": [1, "height", "width", 3],
                    "fused": [1, "height", "width", 3], "fused_y": [1, "height", "width", 1], "border_pad": [1]}
    elem = onnx.TensorProto.UINT8
    images = [v for v in list(model.graph.input) + list(model.graph.output) if v.name != "border_pad"]
    assert all(v.type.tensor_type.elem_type == elem for v in images)
    # border_pad: an int64 input with a default initializer (the exported amount), also in the metadata
    (pad,) = [v for v in model.graph.input if v.name == "border_pad"]
    assert pad.type.tensor_type.elem_type == onnx.TensorProto.INT64
    (default,) = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "border_pad"]
    assert default.tolist() == [16]
    assert {p.key: p.value for p in model.metadata_props}["sage_edge.border_pad"] == "16"


def test_static_export_fixes_the_shape_and_rejects_others(tmp_path, official_checkpoint, synthetic_pair):
    path = tmp_path / "static.onnx"
    report = onnx_export.export_onnx(load_student(official_checkpoint), path, static_size=(96, 128),
                                     check_pair=synthetic_pair)
    assert report.static_size == (96, 128) and report.max_abs_diff <= 1
    with open_backend(path) as backend:
        assert backend.inputs[1].shape == (1, 96, 128, 3)
        Fuser(backend).fuse(*synthetic_pair)  # right size runs
        with pytest.raises(Exception):
            Fuser(backend).fuse(np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_grey_visible_gives_grey_output(official_onnx, synthetic_pair):
    ir, vis = synthetic_pair
    grey = cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)
    with open_backend(official_onnx) as backend:
        out = Fuser(backend).fuse(ir, grey)
        colour_out = Fuser(backend).fuse(ir, np.repeat(grey[..., None], 3, axis=2))
    assert out.shape == grey.shape
    # Same luminance as the colour path's Y, within rounding.
    assert np.abs(out.astype(int) - cv2.cvtColor(colour_out, cv2.COLOR_BGR2GRAY).astype(int)).max() <= 2


def test_export_check_fails_when_onnx_and_torch_disagree(tmp_path, official_checkpoint, synthetic_pair, monkeypatch):
    """The self-check is real: a torch reference that drifts makes export fail and write nothing.

    ONNX Runtime and torch may already differ by up to one grey level on a given CPU (their float
    rounding differs), so the reported difference is the drift give or take that baseline, measured here.
    """
    import re

    student = load_student(official_checkpoint)
    baseline = onnx_export.export_onnx(student, tmp_path / "good.onnx", check_pair=synthetic_pair).max_abs_diff
    assert baseline <= onnx_export.TOLERANCE["uint8"]
    (tmp_path / "good.onnx").unlink()
    drift = 3
    real_reference = onnx_export.torch_reference

    def drifting_reference(*args, **kwargs):
        out = real_reference(*args, **kwargs)
        return {k: (v.astype(np.int16) + drift).clip(0, 255).astype(v.dtype) for k, v in out.items()}

    monkeypatch.setattr(onnx_export, "torch_reference", drifting_reference)
    target = tmp_path / "bad.onnx"
    with pytest.raises(SageEdgeError, match=r"differs from torch by \d+") as failure:
        onnx_export.export_onnx(student, target, check_pair=synthetic_pair)
    reported = float(re.search(r"differs from torch by (\d+)", str(failure.value)).group(1))
    assert drift - baseline <= reported <= drift + baseline, (reported, baseline)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_export_cli_prints_difference_and_writes_model(tmp_path, official_in_cache, ivif_dir):
    from conftest import run_cli
    import os

    out = tmp_path / "m.onnx"
    result = run_cli("export", "--model", "sage-official", "-o", out, "--io", "float", "--check-pair",
                     ivif_dir / "MSRS/ir/00537D.png", ivif_dir / "MSRS/vis/00537D.png",
                     env={"SAGE_EDGE_CACHE": os.environ["SAGE_EDGE_CACHE"]})
    assert result.returncode == 0, result.stderr
    assert "max abs diff" in result.stdout and out.is_file()
    onnx.checker.check_model(str(out))
    assert "check-trt: passes the ONNX parser rules of TensorRT 8.5, 8.6, 10, 11" in result.stdout
