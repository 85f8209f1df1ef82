"""Bad input to `sage-edge fuse`: one line on stderr, exit code != 0, and no output file."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import run_cli
from sage_edge.cli import main

VIS_PNG = "MSRS/vis/00537D.png"
IR_PNG = "MSRS/ir/00537D.png"


def _fuse(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["fuse", *map(str, args)])
    return result.exit_code, result.stderr


def _assert_one_line_error(code: int, stderr: str, *fragments: str) -> None:
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def _bad_files(tmp_path: Path, ivif_dir: Path) -> dict[str, Path]:
    png = (ivif_dir / VIS_PNG).read_bytes()
    jpg = (ivif_dir / "VIFB/vis/fight.jpg").read_bytes()
    files = {
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "notes.svg": b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        "empty.png": b"",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize("bad", ["corrupt.png", "truncated.png", "truncated.jpg", "notes.svg", "empty.png"])
def test_undecodable_images(bad, tmp_path, ivif_dir, out_dir, official_onnx):
    path = _bad_files(tmp_path, ivif_dir)[bad]
    code, err = _fuse(path, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", official_onnx)
    _assert_one_line_error(code, err, bad)
    assert list(out_dir.iterdir()) == []


def test_missing_file(tmp_path, ivif_dir, out_dir, official_onnx):
    code, err = _fuse(tmp_path / "nope.png", ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", official_onnx)
    _assert_one_line_error(code, err, "nope.png", "no such file")
    assert list(out_dir.iterdir()) == []


def test_size_mismatch_fails_unless_resize(tmp_path, ivif_dir, out_dir, official_onnx):
    ir_small = tmp_path / "ir.png"
    shutil.copy(ivif_dir / "TNO/ir/07.png", ir_small)  # 256x256 against a 640x480 visible
    code, err = _fuse(ir_small, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", official_onnx)
    _assert_one_line_error(code, err, "256x256", "640x480", "--resize")
    assert list(out_dir.iterdir()) == []
    code, err = _fuse(ir_small, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", official_onnx, "--resize")
    assert code == 0, err
    import cv2

    assert cv2.imread(str(out_dir / "f.png")).shape == (480, 640, 3)


def test_empty_directory(tmp_path, ivif_dir, out_dir, official_onnx):
    (tmp_path / "ir").mkdir()
    code, err = _fuse(tmp_path / "ir", ivif_dir / "MSRS/vis", "-o", out_dir, "--model", official_onnx)
    _assert_one_line_error(code, err, "no images")
    assert list(out_dir.iterdir()) == []


def test_directories_without_common_stems(tmp_path, ivif_dir, out_dir, official_onnx):
    code, err = _fuse(ivif_dir / "TNO/ir", ivif_dir / "MSRS/vis", "-o", out_dir, "--model", official_onnx)
    _assert_one_line_error(code, err, "no file stems in common")
    assert list(out_dir.iterdir()) == []


def test_unknown_model_name(ivif_dir, out_dir):
    code, err = _fuse(ivif_dir / IR_PNG, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", "sage-huge")
    _assert_one_line_error(code, err, "unknown model 'sage-huge'")
    assert list(out_dir.iterdir()) == []


def test_checkpoint_with_wrong_keys(tmp_path, ivif_dir, out_dir):
    torch = pytest.importorskip("torch")
    bad = tmp_path / "other_net.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, bad)
    code, err = _fuse(ivif_dir / IR_PNG, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", bad)
    _assert_one_line_error(code, err, "not a SAGE student checkpoint", "missing", "unexpected")
    assert list(out_dir.iterdir()) == []


def test_non_onnx_file_named_onnx(tmp_path, ivif_dir, out_dir):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is a README, not a model\n")
    code, err = _fuse(ivif_dir / IR_PNG, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", fake)
    _assert_one_line_error(code, err, "model.onnx", "not a loadable ONNX model")
    assert list(out_dir.iterdir()) == []


def test_onnx_that_is_not_a_fusion_model(tmp_path, ivif_dir, out_dir):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    code, err = _fuse(ivif_dir / IR_PNG, ivif_dir / VIS_PNG, "-o", out_dir / "f.png", "--model", path)
    _assert_one_line_error(code, err, "not a sage-edge fusion model")


def test_unknown_output_extension(ivif_dir, out_dir, official_onnx):
    code, err = _fuse(ivif_dir / IR_PNG, ivif_dir / VIS_PNG, "-o", out_dir / "f.xyz", "--model", official_onnx)
    _assert_one_line_error(code, err, "unknown output format")
    assert list(out_dir.iterdir()) == []


def test_real_process_prints_one_line_and_exit_1(tmp_path, ivif_dir):
    """Through a real subprocess too: no traceback escapes the CLI."""
    result = run_cli("fuse", tmp_path / "missing.png", ivif_dir / VIS_PNG, "-o", tmp_path / "f.png")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")


def test_directory_fusion_pairs_by_stem_with_progress(tmp_path, ivif_dir, official_onnx):
    out = tmp_path / "fused"
    code, err = _fuse(ivif_dir / "MSRS/ir", ivif_dir / "MSRS/vis", "-o", out, "--model", official_onnx)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem + ".png" for p in (ivif_dir / "MSRS/ir").iterdir())
    assert "fuse" in err and "4/4" in err  # tqdm progress bar on stderr
