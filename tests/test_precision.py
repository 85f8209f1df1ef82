"""check-precision for real on the CPU: FP16 range scan (planted overflow found, student passes) and
INT8 Q/DQ vs FP32 on held-back shared pairs (PSNR >= 35 dB asserted)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

import tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def split(ivif_dir):
    from sage_edge.export.precision_check import split_pairs
    from sage_edge.pairs import find_datasets

    return split_pairs([p for ps in find_datasets(ivif_dir).values() for p in ps])


def test_fp16_scan_finds_planted_overflow(tmp_path):
    from sage_edge.export.precision_check import FP16_MAX, fp16_range_scan, format_fp16_scan

    model = tiny_models.overflow_model(tmp_path / "overflow.onnx")
    rng = np.random.default_rng(0)
    feeds = [{"vis_y": rng.random((1, 1, 32, 32), dtype=np.float32),
              "ir": rng.random((1, 1, 32, 32), dtype=np.float32)} for _ in range(3)]
    scan = fp16_range_scan(model, feeds, progress=False)
    assert [t.name for t in scan.overflows] == ["huge"]
    assert scan.overflows[0].node == "/student/planted_overflow" and scan.overflows[0].max_abs > FP16_MAX
    assert not scan.ok and any("huge" in line for line in format_fp16_scan(scan))
    # Scaled inputs that stay small: nothing to report.
    small = [{k: v * 0.01 for k, v in f.items()} for f in feeds]
    assert fp16_range_scan(model, small, progress=False).ok


def test_fp16_scan_flags_underflow(tmp_path):
    from sage_edge.export.precision_check import fp16_range_scan

    model = tiny_models.overflow_model(tmp_path / "overflow.onnx")
    tiny = {"vis_y": np.full((1, 1, 8, 8), 1e-6, np.float32), "ir": np.full((1, 1, 8, 8), 1e-6, np.float32)}
    scan = fp16_range_scan(model, [tiny], progress=False)
    names = {t.name for t in scan.underflows}
    assert "sum" in names and "huge" not in names  # 2e-6 is subnormal in FP16; 2.0 is not


def test_student_passes_fp16_and_int8_on_held_back_pairs(official_onnx, split):
    from sage_edge.export.precision_check import check_precision

    calib, held_back = split
    common = dict(calib_shape=(256, 256), eval_shape=(256, 256), eval_limit=8, progress=False)
    report = check_precision(official_onnx, calib, held_back, precisions=("fp16",), samples=4, metrics=False,
                             **common)
    lines = "\n".join(report.lines())
    # FP16: no network tensor overflows. The colour maths stays in FP32 by node name (it needs 14 fractional
    # bits to stay exact), though since its fixed-point divisions are folded it no longer exceeds FP16's range.
    assert report.fp16_scan.ok and not report.fp16_scan.overflows
    assert report.fp16.min_psnr >= 45.0, lines
    assert report.ok
    # INT8 Q/DQ vs FP32 on pairs never used for calibration.
    report = check_precision(official_onnx, calib, held_back, precisions=("int8",), samples=8, **common)
    lines = "\n".join(report.lines())
    assert {p.stem for p in report.int8.pairs}.isdisjoint({p.stem for p in calib})
    assert len(report.int8.pairs) == 8
    assert report.int8.min_psnr >= 35.0, lines
    assert report.int8.max_abs_error >= 1  # it is really a different model
    deltas = report.int8.mean_metric_deltas()
    if deltas:  # metrics from the metrics issue
        assert {"EN", "SSIM", "Qabf"} <= set(deltas) and all(np.isfinite(v) for v in deltas.values())
    assert report.ok


def test_check_precision_cli_fails_cleanly(official_onnx, ivif_dir, tmp_path):
    result = run_cli("check-precision", official_onnx, "--calib", ivif_dir / "MSRS", "--precision", "int8",
                     "--samples", "2", "--shape", "96x96", "--eval-shape", "96x96", "--eval-pairs", "2",
                     "--no-metrics", "--int8-psnr", "99")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "INT8 vs FP32 on 2 held-back pairs" in result.stdout and "FAIL" in result.stdout
    assert "[modelopt]" not in result.stdout + result.stderr  # ModelOpt's INFO/WARNING lines are silenced
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "INT8 PSNR" in errors[0] and "< 99 dB" in errors[0]


def test_verify_cli_qdq_against_fp32(official_onnx, ivif_dir, tmp_path, split):
    from sage_edge.export.quantize import quantize_onnx

    calib, _ = split
    qdq = quantize_onnx(official_onnx, tmp_path / "q.onnx", calib, samples=4, calib_shape=(160, 160),
                        progress=False).path
    result = run_cli("verify", qdq, "--data", ivif_dir / "MSRS", "--reference", official_onnx,
                     "--eval-shape", "128x128", "--pairs", "2", "--no-metrics")
    assert result.returncode == 0, result.stderr
    assert "INT8 vs FP32 on 2 pairs (threshold PSNR >= 35 dB)" in result.stdout and "verify passed" in result.stdout
    missing = run_cli("verify", qdq, "--data", ivif_dir / "MSRS")
    assert missing.returncode == 1 and "--reference" in missing.stderr and missing.stderr.count("\n") == 1
