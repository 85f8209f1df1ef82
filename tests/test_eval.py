"""sage-edge eval: baselines, aggregation, report files, models through Fuser, bad input."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from sage_edge import evaluation as E
from sage_edge import io_contract as io
from sage_edge.errors import SageEdgeError
from sage_edge.metrics import METRIC_NAMES, compute_metrics
from sage_edge.runtime.backend import Backend, TensorSpec
from sage_edge.runtime.fuser import Fuser
from sage_edge.samples import synthetic_pair
from conftest import run_cli

DEFAULT_ONNX = Path(__file__).resolve().parents[1] / "sage_edge" / "assets" / "default.onnx"


class RuleBackend(Backend):
    """A float-graph 'model' computing a pixel rule on Y in [0, 1]: what the baselines claim to be."""

    name = "rule"

    def __init__(self, rule: str) -> None:
        self.rule = rule

    @property
    def inputs(self):
        return [TensorSpec(io.VIS_Y, np.dtype(np.float32), (1, 1, "H", "W")),
                TensorSpec(io.IR, np.dtype(np.float32), (1, 1, "H", "W"))]

    @property
    def outputs(self):
        return [TensorSpec(io.FUSED_Y, np.dtype(np.float32), (1, 1, "H", "W"))]

    def infer(self, feed):
        y, ir = feed[io.VIS_Y].astype(np.float64), feed[io.IR].astype(np.float64)
        fused = (y + ir) / 2 if self.rule == "mean" else np.maximum(y, ir)
        return {io.FUSED_Y: fused.astype(np.float32)}


@pytest.mark.parametrize("rule", E.BASELINES)
def test_baselines_match_fuser_colour_path(rule):
    ir, vis = synthetic_pair(40, 56, seed=3)
    expected = Fuser(RuleBackend(rule)).fuse(ir, vis)
    np.testing.assert_array_equal(E.baseline_fuse(rule, ir, vis), expected)
    grey = cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(E.baseline_fuse(rule, ir, grey), Fuser(RuleBackend(rule)).fuse(ir, grey))


def test_baseline_values_by_hand():
    ir = np.array([[0, 10, 200], [255, 3, 4]], np.uint8)
    vis = np.array([[1, 30, 100], [0, 3, 7]], np.uint8)
    np.testing.assert_array_equal(E.baseline_fuse("max", ir, vis), np.maximum(ir, vis))
    # (a + b) / 2 rounded half up: 0.5 -> 1, 20, 150, 127.5 -> 128, 3, 5.5 -> 6
    np.testing.assert_array_equal(E.baseline_fuse("mean", ir, vis), [[1, 20, 150], [128, 3, 6]])
    with pytest.raises(SageEdgeError, match="unknown baseline"):
        E.baseline_fuse("median", ir, vis)
    with pytest.raises(SageEdgeError, match="2x3|3x2"):
        E.baseline_fuse("max", ir, vis[:, :2])


def make_dataset(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """root/<dataset>/{ir,vis}/<stem>.png with synthetic pairs of the given (h, w)."""
    for k, (name, shapes) in enumerate(sizes.items()):
        for j, (h, w) in enumerate(shapes):
            ir, vis = synthetic_pair(h, w, seed=10 * k + j)
            for sub, img in (("ir", ir), ("vis", vis)):
                (root / name / sub).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / name / sub / f"p{j}.png"), img)
    return root


def test_evaluate_baselines_aggregates_per_dataset_and_overall(tmp_path: Path):
    data = make_dataset(tmp_path / "data", {"A": [(48, 64), (40, 60)], "B": [(50, 50), (44, 52), (48, 48)]})
    result = E.evaluate(data, models=(), baselines=True, limit=2, progress=False, grid_pairs=3)
    assert result.labels == ["mean", "max"]
    assert result.pair_count("A") == 2 and result.pair_count("B") == 2 and result.pair_count() == 4
    # per image: exactly compute_metrics on the decoded triple
    ir = cv2.imread(str(data / "B/ir/p1.png"), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(data / "B/vis/p1.png"))
    assert result.scores["B"]["max"]["p1"] == compute_metrics(ir, vis, E.baseline_fuse("max", ir, vis))
    # the overall mean pools every pair (not the mean of dataset means)
    rows = [result.scores[d]["mean"][s] for d in ("A", "B") for s in ("p0", "p1")]
    for name in METRIC_NAMES:
        assert result.overall_mean("mean")[name] == pytest.approx(np.mean([r[name] for r in rows]))
    # the mean rule cannot create gradients above both sources (Nabf ~ 0); max keeps the stronger source
    assert result.overall_mean("mean")["Nabf"] < result.overall_mean("max")["Nabf"] + 1e-3
    assert len(result.samples) == 3  # round robin: A/p0, B/p0, A/p1
    assert [(d, s) for d, s, *_ in result.samples] == [("A", "p0"), ("A", "p1"), ("B", "p0")]

    out = tmp_path / "report"
    E.write_report(result, out)
    for name in ("metrics.json", "metrics.csv", "report.md", "grid.png",
                 "chart_statistics.png", "chart_information.png", "chart_structure.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["lower_is_better"] == ["Nabf"]
    assert doc["datasets"]["A"]["images"]["max"]["p0"]["EN"] == result.scores["A"]["max"]["p0"]["EN"]
    assert doc["overall"]["pairs"] == 4
    with open(out / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * 4 + 2 * 2 + 2  # images + dataset means + overall means
    overall = {r["method"]: r for r in table if r["dataset"] == "overall"}
    assert float(overall["max"]["SD"]) == pytest.approx(result.overall_mean("max")["SD"])
    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape[0] == 3 * (E.GRID_TILE_HEIGHT + E.GRID_LABEL_HEIGHT + 4)

    # report.md: the best value of each column is bold, with Nabf's best the smallest
    md = (out / "report.md").read_text()
    overall_table = md.split("## Overall")[1].split("## A")[0]
    header = [c.strip() for c in overall_table.splitlines()[2].strip("|").split("|")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")]
            for line in overall_table.splitlines() if line.startswith("| mean") or line.startswith("| max")}
    for name in METRIC_NAMES:
        col = next(i for i, h in enumerate(header) if h.split()[0] == name)
        means = {label: result.overall_mean(label)[name] for label in ("mean", "max")}
        best = min(means, key=means.get) if name == "Nabf" else max(means, key=means.get)
        assert rows[best][col].startswith("**"), (name, rows)
        other = "max" if best == "mean" else "mean"
        if means[other] != means[best]:
            assert not rows[other][col].startswith("**"), (name, rows)


def test_best_labels_direction_and_ties():
    table = {"a": {"EN": 1.0, "Nabf": 0.2}, "b": {"EN": 2.0, "Nabf": 0.1}, "c": {"EN": 2.0, "Nabf": math.nan}}
    assert E.best_labels(table, "EN") == {"b", "c"}
    assert E.best_labels(table, "Nabf") == {"b"}


def test_eval_cli_official_model_and_baselines(official_in_cache: Path, ivif_dir: Path, tmp_path: Path):
    out = tmp_path / "rep"
    res = run_cli("eval", "--data", ivif_dir / "RoadScene", "--model", "sage-official", "--baselines",
                  "--limit", "2", "--out", out, "--no-charts")
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["methods"]) == ["sage-official", "mean", "max"]
    assert doc["methods"]["sage-official"]["backend"].startswith("torch")
    assert list(doc["datasets"]) == ["RoadScene"] and doc["datasets"]["RoadScene"]["pairs"] == 2
    official = doc["overall"]["mean"]["sage-official"]
    assert set(official) == set(METRIC_NAMES)
    # a trained fusion network keeps more edge information than averaging the sources
    assert official["Qabf"] > doc["overall"]["mean"]["mean"]["Qabf"]
    assert official["SD"] > doc["overall"]["mean"]["mean"]["SD"]
    assert "sage-official" in res.stdout and "| max |" in res.stdout
    assert (out / "grid.png").is_file() and not (out / "chart_structure.png").exists()


@pytest.mark.skipif(not DEFAULT_ONNX.is_file(), reason="bundled default model not trained yet")
def test_eval_cli_default_model(ivif_dir: Path, tmp_path: Path):
    res = run_cli("eval", "--data", ivif_dir / "TNO", "--model", "default", "--limit", "1",
                  "--out", tmp_path / "rep", "--no-charts", "--grid", "0")
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert doc["methods"]["default"]["backend"].lower().startswith("onnxruntime")
    assert all(v is not None for v in doc["overall"]["mean"]["default"].values())
    assert not (tmp_path / "rep" / "grid.png").exists()


def _one_line_error(res, *fragments: str) -> None:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), res.stderr
    assert not any("Traceback" in line for line in lines)
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def test_eval_cli_bad_input(tmp_path: Path, isolated_cache: Path):
    data = make_dataset(tmp_path / "data", {"A": [(32, 40)]})
    out = tmp_path / "rep"
    _one_line_error(run_cli("eval", "--data", data, "--model", "sage-official", "--out", out), "sage-edge fetch")
    _one_line_error(run_cli("eval", "--data", data, "--model", "nope.onnx", "--out", out), "nope.onnx")
    _one_line_error(run_cli("eval", "--data", tmp_path / "missing", "--baselines", "--model", "x", "--out", out),
                    "missing")
    _one_line_error(run_cli("eval", "--data", data, "--baselines", "--model", "default", "--metrics", "EN,Q",
                            "--out", out), "unknown metric 'Q'")
    # a mismatched pair stops the run with its file names, and leaves no report
    cv2.imwrite(str(data / "A" / "ir" / "p1.png"), np.zeros((30, 40), np.uint8))
    cv2.imwrite(str(data / "A" / "vis" / "p1.png"), np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(SageEdgeError, match="p1.png.*40x30.*40x32"):
        E.evaluate(data, models=(), baselines=True, progress=False)
    assert not out.exists()


def test_eval_cli_mismatched_pair(official_in_cache: Path, tmp_path: Path):
    data = make_dataset(tmp_path / "data", {"A": [(32, 40)]})
    cv2.imwrite(str(data / "A" / "ir" / "p0.png"), np.zeros((30, 40), np.uint8))
    out = tmp_path / "rep"
    _one_line_error(run_cli("eval", "--data", data, "--model", "sage-official", "--out", out),
                    "p0.png is 40x30", "40x32")
    assert not out.exists()


def test_report_gives_quality_gates_pair_by_pair(default_gate_run, tmp_path: Path):
    """metrics.json, metrics.csv and report.md carry every pair's gates against the reference, with why."""
    result = default_gate_run
    default, reference = result.labels
    out = tmp_path / "report"
    E.write_report(result, out, charts=False)
    doc = json.loads((out / "metrics.json").read_text())
    gates = doc["gates"]
    assert gates["reference"] == reference
    pairs = gates["methods"][default]["pairs"]
    assert len(pairs) == 45
    night = pairs["MSRS/00858N"]
    assert {g["gate"] for g in night["gates"]} == {"shadows", "brightness", "EN", "VIF", "target"}
    assert night["passed"] == all(g["passed"] for g in night["gates"])
    assert gates["sources"]["MSRS/00858N"]["hot_target"]["ir_contrast"] > 40
    # the reference is judged on the absolute gates only
    assert {g["gate"] for g in gates["methods"][reference]["pairs"]["MSRS/00858N"]["gates"]} == {"shadows",
                                                                                                 "brightness"}
    assert [g["gate"] for g in gates["methods"][default]["means"]][0] == "mean EN"
    with open(out / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == default]
    images = [r for r in rows if r["image"] != "mean"]
    assert len(images) == 45 and {r["gates"] for r in images} <= {"pass", "fail"}
    assert all((r["gates"] == "fail") == bool(r["gate_failures"]) for r in images)
    assert next(r for r in rows if r["dataset"] == "overall")["gates"] in ("pass", "fail")
    md = (out / "report.md").read_text()
    assert "## Quality gates" in md and f"| {default} | " in md.split("## Quality gates")[1]


def test_reference_must_be_one_of_the_models(tmp_path: Path):
    data = make_dataset(tmp_path / "data", {"A": [(48, 64)]})
    with pytest.raises(SageEdgeError, match="--reference sage-official: not one of the models"):
        E.evaluate(data, models=[str(DEFAULT_ONNX)], reference="sage-official", progress=False)
