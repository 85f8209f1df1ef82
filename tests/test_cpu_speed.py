"""CPU paths: the OpenVINO backend, INT8 for CPUs with its quality floor, interleaved bench cells, thread defaults.

Quality is judged per held-back pair (PSNR against FP32, recomputed here from the written file), never as a
mean. Timing is asserted only as a ratio of cells timed interleaved in one run.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from sage_edge.errors import SageEdgeError

SHAPE = (128, 160)  # small crops: these tests quantize for real on a shared 2-core machine
# The default model bundled before issue #11's retrain: its activations span ~25 with typical values ~0.01, so
# 8-bit per-tensor activations lose it (20-32 dB). Any other bundled default must hold INT8 on every pair.
OLD_DEFAULT_SHA256 = "8390a768fe01afda711ff267db9da4f5ab035795085e17621b980e898e927437"

openvino = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def pairs(ivif_dir):
    from sage_edge.pairs import find_datasets

    return [p for ps in find_datasets(ivif_dir).values() for p in ps]


@pytest.fixture(scope="module")
def split(pairs):
    """(calibration, held back) exactly as quantize_checked splits the same list."""
    from sage_edge.export.precision_check import split_pairs

    return split_pairs(pairs)


@pytest.fixture(scope="module")
def held_back_images(split):
    from sage_edge.export.precision_check import load_eval_images

    return load_eval_images(split[1], SHAPE, 4)


def _per_pair_psnr(reference, test, images) -> list[float]:
    from sage_edge.export.precision_check import psnr
    from sage_edge.runtime.fuser import Fuser

    ref, out = Fuser(reference), Fuser(test)
    return [psnr(ref.fuse(ir, vis), out.fuse(ir, vis)) for _, ir, vis in images]


def test_openvino_backend_matches_onnxruntime_and_says_what_ran(official_onnx, held_back_images, monkeypatch):
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from sage_edge.runtime.openvino_backend import OpenVinoBackend

    monkeypatch.setenv("SAGE_EDGE_THREADS", "1")
    with OnnxRuntimeBackend(official_onnx) as ort_b, OpenVinoBackend(official_onnx) as ov_b:
        from sage_edge.runtime.fuser import Fuser

        for _, ir, vis in held_back_images[:2]:
            diff = np.abs(Fuser(ort_b).fuse(ir, vis).astype(int) - Fuser(ov_b).fuse(ir, vis).astype(int))
            assert diff.max() <= 1  # FP32 within one grey level of ONNX Runtime
        assert "1 thread" in ort_b.describe() and "1 thread" in ov_b.describe()
        assert ov_b.describe().startswith("openvino") and "f32" in ov_b.describe()
    for precision in ("bf16", "fp16"):
        with OpenVinoBackend(official_onnx, precision=precision) as b:
            native = b.precision != "f32"  # read back from OpenVINO: the precision that really runs
            assert native or f"{precision} is not native on this CPU: ran f32" in b.describe()
    with pytest.raises(SageEdgeError, match="needs a quantized model"):
        OpenVinoBackend(official_onnx, precision="int8")


def test_thread_default_env_cache_and_errors(official_onnx, isolated_cache, monkeypatch):
    from sage_edge.runtime import cpu_tuning
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.delenv("SAGE_EDGE_THREADS", raising=False)
    cpu_tuning.record_best("onnxruntime", 1, {1: 10.0, 2: 12.0})
    assert cpu_tuning.default_threads("onnxruntime") == 1 and cpu_tuning.measured_best("openvino") is None
    assert OnnxRuntimeBackend(official_onnx).threads == 1
    monkeypatch.setenv("SAGE_EDGE_THREADS", "two")
    with pytest.raises(SageEdgeError, match="whole number"):
        OnnxRuntimeBackend(official_onnx)


def test_auto_backend_is_openvino_only_where_measured_faster(official_onnx, isolated_cache, tmp_path):
    import platform

    from sage_edge.runtime import cpu_tuning
    from sage_edge.runtime.backend import choose_backend

    assert choose_backend(official_onnx) == "onnxruntime"  # nothing measured yet
    cpu_tuning.record_onnx_backend("openvino", {"onnxruntime": 10.0, "openvino": 8.0})
    x86 = platform.machine().lower() in cpu_tuning.X86_MACHINES
    assert choose_backend(official_onnx) == ("openvino" if x86 else "onnxruntime")
    assert choose_backend(official_onnx, "onnxruntime") == "onnxruntime"
    cpu_tuning.record_onnx_backend("onnxruntime", {"onnxruntime": 8.0, "openvino": 10.0})
    assert choose_backend(official_onnx) == "onnxruntime"


def test_same_model_twice_interleaved_agrees_within_5_percent(official_onnx, ivif_dir, tmp_path):
    """The issue's bias: the same file given twice came out at 1.00 and 0.75 when cells ran in sequence."""
    from sage_edge import benchmarking as bm

    twin = tmp_path / "twin.onnx"
    shutil.copyfile(official_onnx, twin)
    inputs = bm.load_inputs(ivif_dir, frames=2, seed=0, echo=lambda s: None)
    cells = bm.grid([str(official_onnx), str(twin)], ["onnxruntime"], ["fp32"], [(96, 72)], threads=[1])
    ratios = []
    for _ in range(3):  # a shared machine: allow retries, judge the medians of interleaved iterations
        doc = bm.run_grid(cells, inputs, bm.RunOptions(warmup=2, iterations=24, progress=False), echo=lambda s: None)
        a, b = (r["stages"]["end_to_end"]["p50"] for r in doc["results"])
        ratios.append(b / a)
        if abs(ratios[-1] - 1.0) <= 0.05:
            break
    assert abs(ratios[-1] - 1.0) <= 0.05, ratios
    first, second = doc["results"]
    assert first["quality"]["identical"] and second["quality"]["identical"]  # same file, same pixels
    assert "interleaved" in " ".join(second["notes"]) and doc["settings"]["interleaved"]


def test_cpu_int8_holds_per_pair_says_what_it_is_for_and_build_engine_refuses_it(
        official_onnx, pairs, held_back_images, tmp_path):
    from sage_edge.export.quantize_cpu import ORT_CPU_TARGET, model_int8_target
    from sage_edge.export.quantize_gate import quantize_checked
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    out = tmp_path / "cpu.onnx"
    done = quantize_checked(official_onnx, out, pairs, target="cpu", samples=4, calib_shape=SHAPE,
                            eval_pairs=4, progress=False)
    assert out.is_file() and model_int8_target(out) == ORT_CPU_TARGET
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    with OnnxRuntimeBackend(official_onnx) as ref, OnnxRuntimeBackend(out) as q:
        values = _per_pair_psnr(ref, q, held_back_images)
    assert min(values) >= 35.0, values
    assert min(values) < 80.0  # really quantized
    assert done.comparison.min_psnr >= 35.0
    result = run_cli("build-engine", out, "-o", tmp_path / "x.engine")
    assert result.returncode == 1 and "quantize --target cpu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.engine").exists()


def test_openvino_int8_holds_per_pair(official_onnx, pairs, held_back_images, tmp_path):
    from sage_edge.export.quantize_gate import quantize_checked
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from sage_edge.runtime.openvino_backend import OpenVinoBackend

    out = tmp_path / "ov.xml"
    quantize_checked(official_onnx, out, pairs, target="openvino", samples=4, calib_shape=SHAPE,
                     eval_pairs=4, progress=False)
    assert out.is_file() and out.with_suffix(".bin").is_file()
    with OnnxRuntimeBackend(official_onnx) as ref, OpenVinoBackend(out, precision="int8") as q:
        assert q.quantized and "int8" in q.describe()
        values = _per_pair_psnr(ref, q, held_back_images)
    assert 35.0 <= min(values) < 80.0, values


def test_quantize_takes_zoo_names_and_refuses_below_the_floor(official_in_cache, ivif_dir, tmp_path):
    """sage-official (weights only in the zoo) is exported, quantized, checked, and refused: one line, no file."""
    out = tmp_path / "q.onnx"
    result = run_cli("quantize", "sage-official", "--calib", ivif_dir / "TNO", "--target", "cpu", "-o", out,
                     "--samples", "2", "--shape", "64x64", "--eval-pairs", "2", "--min-psnr", "99")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "sage-official.onnx: INT8 (cpu) reaches only" in error[0], result.stderr
    assert "floor 99 dB" in error[0] and "nothing written" in error[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "cache"]
    wrong = run_cli("quantize", "default", "--calib", ivif_dir / "TNO", "--target", "openvino", "-o", out)
    assert wrong.returncode == 1 and ".xml" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def _bundled_default_sha() -> str:
    from sage_edge.zoo import resolve_model

    return hashlib.sha256(resolve_model("default", want="weights").read_bytes()).hexdigest()


@pytest.mark.xfail(_bundled_default_sha() == OLD_DEFAULT_SHA256, strict=True,
                   reason="the pre-#11 default quantizes to 20-32 dB (wide activation ranges); see benchmarks/RESULTS.md")
def test_default_model_int8_holds_on_every_held_back_pair(pairs, tmp_path):
    """The bundled default, quantized for TensorRT and for CPUs, >= 35 dB against FP32 on each held-back pair."""
    from sage_edge.export.quantize_gate import quantize_checked
    from sage_edge.zoo import resolve_model

    default = resolve_model("default", want="onnx")
    for target in ("cpu", "tensorrt"):
        # 16 crops: 4 are too few to be representative (34.8 dB on one CI run), the CLI's default is 32
        done = quantize_checked(default, tmp_path / f"{target}.onnx", pairs, target=target,
                                samples=16, calib_shape=(192, 256), eval_pairs=6, min_psnr=0.0, progress=False)
        worst = done.worst
        assert worst.psnr >= 35.0, f"{target}: {worst.stem} at {worst.psnr:.2f} dB"
