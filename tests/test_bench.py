"""sage-edge bench: the JSON schema, --compare, skipping, stage splitting, and the issue's command end to end.

No test asserts a timing: only that every stage carries its statistics and that reported numbers are
consistent with each other (p50 <= p90 <= p99 <= max, FPS = 1000 / mean, ratios = B / A).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from sage_edge import benchmarking as bm
from sage_edge import environment
from sage_edge.errors import SageEdgeError
from sage_edge.runtime.backend import Backend, TensorSpec

TINY = (64, 48)


def _opts(**kw) -> bm.RunOptions:
    return bm.RunOptions(**{"warmup": 1, "iterations": 4, "progress": False, **kw})


@pytest.fixture(scope="module")
def tiny_run(official_onnx: Path, ivif_dir: Path) -> dict:
    """fp32 (runs) and fp16 (skipped on onnxruntime) on real pairs at 64x48."""
    inputs = bm.load_inputs(ivif_dir, frames=3, seed=0, echo=lambda s: None)
    cells = bm.grid([str(official_onnx)], ["onnxruntime"], ["fp32", "fp16"], [TINY])
    return bm.run_grid(cells, inputs, _opts(), echo=lambda s: None)


def _check_stage_stats(entry: dict) -> None:
    for stage in bm.STAGES:
        block = entry["stages"][stage]
        for key in ("p50", "p90", "p99", "mean", "std", "min", "max", "count", "source"):
            assert key in block, (stage, key)
        assert block["min"] <= block["p50"] <= block["p90"] <= block["p99"] <= block["max"]
        assert block["count"] == entry["iterations"]


def test_grid_result_follows_the_schema(tiny_run: dict) -> None:
    doc = bm.validate(tiny_run)
    assert doc["schema_version"] == bm.SCHEMA_VERSION
    ok, skipped = doc["results"]
    assert ok["status"] == "ok" and ok["precision"] == "fp32" and ok["resolution"] == "64x48"
    _check_stage_stats(ok)
    assert ok["iterations"] == 4 and len(ok["samples_ms"]["end_to_end"]) == 4
    assert ok["fps"] == pytest.approx(1000.0 / ok["stages"]["end_to_end"]["mean"])
    # CPU onnxruntime: no device copies; they are recorded as n/a, not invented.
    assert ok["stages"]["h2d"]["source"] == ok["stages"]["d2h"]["source"] == "n/a"
    assert ok["stages"]["inference"]["source"] == "host"
    assert ok["memory"]["peak_rss_mb"] > 0
    assert skipped["status"] == "skipped" and "fp16" in skipped["reason"]
    inputs = doc["settings"]["inputs"]
    assert inputs["frames"] == 3 and all("/" in n for n in inputs["names"])  # real pairs, dataset/stem
    env = doc["environment"]
    for key in ("cpu", "onnxruntime", "gpu", "jetson", "temperatures_start_c", "temperatures_end_c", "warnings"):
        assert key in env
    assert "CPUExecutionProvider" in env["onnxruntime"]["providers"]
    json.dumps(doc, allow_nan=False)  # strict JSON


def test_validate_rejects_broken_documents(tiny_run: dict) -> None:
    for breaker in (
        lambda d: d.pop("schema_version"),
        lambda d: d["results"][0]["stages"].pop("d2h"),
        lambda d: d["results"][0]["stages"]["inference"].pop("p99"),
        lambda d: d["results"][1].update(reason=None),
        lambda d: d.update(schema_version=bm.SCHEMA_VERSION + 1),
    ):
        doc = copy.deepcopy(tiny_run)
        breaker(doc)
        with pytest.raises(SageEdgeError):
            bm.validate(doc)


def _with_latency(doc: dict, scale: float) -> dict:
    out = copy.deepcopy(doc)
    entry = out["results"][0]
    for stage in entry["stages"].values():
        for k in ("mean", "min", "p50", "p90", "p99", "max"):
            stage[k] = 10.0 * scale if k != "p99" else 20.0 * scale
    entry["fps"] = 1000.0 / (10.0 * scale)
    return out


def test_compare_ratios(tiny_run: dict, tmp_path: Path) -> None:
    a, b = _with_latency(tiny_run, 1.0), _with_latency(tiny_run, 0.5)
    rows = bm.compare(a, b)
    assert len(rows) == 1 and rows[0]["key"] == a["results"][0]["key"]
    metrics = rows[0]["metrics"]
    assert metrics["e2e p50"] == {"a": 10.0, "b": 5.0, "ratio": 0.5}
    assert metrics["e2e p99"]["ratio"] == 0.5
    assert metrics["FPS"]["ratio"] == pytest.approx(2.0)
    assert metrics["mJ/frame"]["ratio"] is None  # no power off Jetson
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    bm.write_json(a, pa)
    bm.write_json(b, pb)
    done = run_cli("bench", "--compare", pa, pb)
    assert done.returncode == 0, done.stderr
    assert "B/A   0.500" in done.stdout and "B/A   2.000" in done.stdout
    assert a["results"][0]["key"] in done.stdout


def test_compare_errors_are_one_line(tiny_run: dict, tmp_path: Path) -> None:
    a = _with_latency(tiny_run, 1.0)
    b = copy.deepcopy(a)
    b["results"][0]["key"] = "other | onnxruntime | fp32 | 64x48 | inference"
    pa, pb, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    bm.write_json(a, pa)
    bm.write_json(b, pb)
    bad.write_text('{"results": []}')
    for args, needle in (((pa, pb), "no configuration in common"), ((pa, bad), "not a sage-edge bench result"),
                         ((pa, tmp_path / "missing.json"), "no such file")):
        done = run_cli("bench", "--compare", *args)
        assert done.returncode == 1
        assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


class _FakeGpuBackend(Backend):
    """A uint8-graph backend that reports device stage times the way TensorRT's does (last_stage_times)."""

    name = "fake"

    @staticmethod
    def is_available() -> bool:
        return True

    @property
    def inputs(self):
        return [TensorSpec("ir", np.dtype(np.uint8), (1, "H", "W", 1)),
                TensorSpec("vis", np.dtype(np.uint8), (1, "H", "W", 3))]

    @property
    def outputs(self):
        return [TensorSpec("fused", np.dtype(np.uint8), (1, "H", "W", 3)),
                TensorSpec("fused_y", np.dtype(np.uint8), (1, "H", "W", 1))]

    def infer(self, feed):
        self.calls = getattr(self, "calls", 0) + 1
        return {"fused": feed["vis"].copy(), "fused_y": feed["ir"].copy()}

    def last_stage_times(self):
        return {"h2d_ms": 0.25, "inference_ms": 1.0 + 0.01 * self.calls, "d2h_ms": 0.125}


def test_backend_stage_times_split_h2d_inference_d2h(synthetic_pair) -> None:
    backend = _FakeGpuBackend()
    timing = bm.time_inference(backend, [synthetic_pair], _opts(warmup=2, iterations=5))
    assert backend.calls == 7  # warm-up ran and was excluded
    stages = timing["stages"]
    assert stages["h2d"]["source"] == stages["inference"]["source"] == stages["d2h"]["source"] == "cuda-events"
    assert stages["h2d"]["p50"] == 0.25 and stages["d2h"]["p99"] == 0.125
    assert stages["inference"]["min"] == pytest.approx(1.03) and stages["inference"]["max"] == pytest.approx(1.07)
    assert "infer_call_host" in timing["extra_stages"]


def test_synthetic_fallback_when_the_data_folder_is_absent(tmp_path: Path) -> None:
    said = []
    inputs = bm.load_inputs(tmp_path / "nothing-here", frames=2, seed=5, echo=said.append)
    assert inputs.source.startswith("synthetic") and len(inputs.frames) == 2
    assert any("synthetic_pair" in line for line in said)
    ir, vis = inputs.at(40, 30)[0]
    assert ir.shape == (30, 40) and vis.shape == (30, 40, 3)


def test_seeded_inputs_are_the_same_for_every_run(ivif_dir: Path) -> None:
    a = bm.load_inputs(ivif_dir, frames=4, seed=11, echo=lambda s: None)
    b = bm.load_inputs(ivif_dir, frames=4, seed=11, echo=lambda s: None)
    assert a.names == b.names
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a.at(*TINY), b.at(*TINY)))


def test_torch_backend_and_precision_skips(official_checkpoint: Path, official_onnx: Path, ivif_dir: Path) -> None:
    inputs = bm.load_inputs(ivif_dir, frames=2, seed=0, echo=lambda s: None)
    cells = [bm.Cell(str(official_checkpoint), "torch", "fp32", *TINY),
             bm.Cell(str(official_checkpoint), "torch", "int8", *TINY),
             bm.Cell(str(official_onnx), "torch", "fp32", *TINY),
             bm.Cell(str(official_onnx), "tensorrt", "fp16", *TINY)]
    said: list[str] = []
    doc = bm.run_grid(cells, inputs, _opts(iterations=2), echo=said.append)
    torch_ok, torch_int8, torch_onnx, trt = doc["results"]
    assert torch_ok["status"] == "ok" and torch_ok["backend_description"].startswith("torch")
    _check_stage_stats(torch_ok)
    assert torch_int8["status"] == "skipped" and "fp32 only" in torch_int8["reason"]
    assert torch_onnx["status"] == "skipped" and ".safetensors" in torch_onnx["reason"]
    assert trt["status"] == "skipped" and "engine" in trt["reason"]
    assert sum(line.startswith("skipped") for line in said) == 3


def test_pipeline_mode(monkeypatch: pytest.MonkeyPatch, official_onnx: Path, ivif_dir: Path) -> None:
    """--pipeline times sage_edge.runtime.pipeline on file sources; without it, the cell is skipped, saying why."""
    inputs = bm.load_inputs(ivif_dir, frames=2, seed=0, echo=lambda s: None)
    cell = bm.Cell(str(official_onnx), "onnxruntime", "fp32", *TINY, pipeline=True)
    doc = bm.run_grid([cell], inputs, _opts(warmup=2, iterations=5), echo=lambda s: None)
    entry = bm.validate(doc)["results"][0]
    assert entry["status"] == "ok" and entry["mode"] == "pipeline", entry.get("reason")
    assert entry["iterations"] == 5  # 7 frames fused through the looping file sources, 2 warm-up dropped
    _check_stage_stats(entry)
    assert entry["stages"]["h2d"]["source"] == "n/a" and entry["stages"]["inference"]["source"] == "host"
    assert "capture_wait" in entry["extra_stages"] and entry["key"].endswith("| pipeline")
    monkeypatch.setattr(bm, "pipeline_module", lambda: None)
    doc = bm.run_grid([cell], inputs, _opts(), echo=lambda s: None)
    assert doc["results"][0]["status"] == "skipped" and "pipeline" in doc["results"][0]["reason"]


def test_environment_warnings() -> None:
    env = {"jetson": {"jetson_clocks": False, "clock_domains": {}}, "temperatures_start_c": {"tj": 40.0},
           "temperatures_end_c": {"tj": 97.5, "cpu": 50.0}}
    found = environment.warnings(env, trips={"tj": 99.0, "cpu": 95.0})
    assert any("not locked" in w for w in found)
    assert any(w.startswith("tj at 97.5") for w in found)
    assert not any(w.startswith("cpu") for w in found)
    locked = {"jetson": {"jetson_clocks": True, "clock_domains": {"gpu": {"min": 9, "max": 9, "cur": 5}}},
              "temperatures_start_c": {}, "temperatures_end_c": {}}
    assert any("throttling" in w for w in environment.warnings(locked, trips={}))
    assert environment.warnings({"jetson": None, "temperatures_start_c": {"x": 30.0}}, trips={}) == []
    busy = {"cpu": {"cores": 2}, "load_average_start": [7.5, 7.0, 5.0], "load_average_end": [1.0, 1.0, 1.0]}
    (warning,) = environment.warnings(busy, trips={})
    assert "busy" in warning and "load 7.5 at the start, on 2 cores" in warning


def test_engine_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "fused.engine"
    engine.write_bytes(b"\0")
    assert environment.sidecar(engine) is None
    from sage_edge.runtime.engine_sidecar import write_sidecar

    write_sidecar(engine, {"precision": "fp16", "tensorrt": "10.3"})  # what build-engine writes
    meta = environment.sidecar(engine)
    assert meta["precision"] == "fp16" and meta["tensorrt"] == "10.3"
    (tmp_path / "fused.engine.json").write_text("{not json")
    assert "unreadable engine sidecar" in environment.sidecar(engine)["error"]  # noted, never raised


def test_engine_cells_follow_the_sidecar_precision(tmp_path: Path) -> None:
    engine = tmp_path / "fused.engine"
    engine.write_bytes(b"\0")
    from sage_edge.runtime.engine_sidecar import write_sidecar

    write_sidecar(engine, {"precision": "int8+fp16"})
    inputs = bm.load_inputs(tmp_path / "none", frames=1, echo=lambda s: None)
    resolver = bm.ModelResolver(inputs, echo=lambda s: None)
    path, notes = resolver.resolve(bm.Cell(str(engine), "tensorrt", "int8", *TINY))
    assert path == engine and notes == []
    with pytest.raises(bm.Skip, match="built for int8"):
        resolver.resolve(bm.Cell(str(engine), "tensorrt", "fp16", *TINY))
    try:
        from sage_edge.runtime.backend import backend_class

        has_trt = backend_class("tensorrt").is_available()
    except Exception:
        has_trt = False
    if not has_trt:  # no TensorRT on this machine: the cell is skipped, saying so, and nothing fails
        doc = bm.run_grid([bm.Cell(str(engine), "tensorrt", "int8", *TINY)], inputs, _opts(), echo=lambda s: None)
        entry = doc["results"][0]
        assert entry["status"] == "skipped" and "tensorrt backend is not available" in entry["reason"]


def test_estimate_and_bad_flags_on_the_command_line(official_onnx: Path) -> None:
    done = run_cli("bench", "--model", official_onnx, "--resolution", "640x512", "--estimate", "orin-agx-64")
    assert done.returncode == 0, done.stderr
    assert "ROOFLINE ESTIMATE (not a measurement)" in done.stdout and "memory-bound" in done.stdout
    for args, needle in ((("--estimate", "orin-mega"), "unknown module"),
                         (("--resolution", "640by480"), "WIDTHxHEIGHT"),
                         (("--iterations", "3", "--duration", "1"), "not both"),
                         (("--json", "out.txt"), ".json")):
        done = run_cli("bench", "--model", official_onnx, *args)
        assert done.returncode == 1 and needle in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_issue_command_writes_json_and_plot(official_onnx: Path, tmp_path: Path) -> None:
    """The issue's command shape (with --iterations 5 to stay quick), on the published student."""
    out_json, out_png, out_md = tmp_path / "out.json", tmp_path / "out.png", tmp_path / "out.md"
    done = run_cli("bench", "--model", official_onnx, "--backend", "onnxruntime", "--resolution", "640x480",
                   "--iterations", "5", "--json", out_json, "--plot", out_png, "--markdown", out_md, "-q",
                   cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    doc = bm.load_result(out_json)
    (entry,) = doc["results"]
    assert entry["status"] == "ok" and entry["iterations"] == 5 and entry["warmup"] == 10
    _check_stage_stats(entry)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000
    table = out_md.read_text()
    assert "| sage_official_uint8.onnx | onnxruntime | fp32 | 640x480 | inference |" in table
    assert "sage_official_uint8.onnx" in done.stdout and "e2e p50" in done.stdout
