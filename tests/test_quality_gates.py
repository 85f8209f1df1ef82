"""Quality gates (issue 11): the bundled default, pair by pair over all 45 shared pairs, against the published student.

The gates live in sage_edge/quality_gates.py and run through ``sage_edge.evaluation.evaluate`` (what
``sage-edge eval --reference`` reports), so the tests judge exactly what a user sees. Each model's outputs
are computed once per session (``default_gate_run`` in conftest.py).
"""
from __future__ import annotations

import numpy as np
import pytest

from sage_edge import quality_gates as qg
from sage_edge.zoo import resolve_model

PER_PAIR_GATES = ("shadows", "brightness", "EN", "VIF", "target")
# The one gate the bundled default misses, as MODEL_CARD.md says: (gate, pair) -> the smallest fraction of the
# limit it must still reach. VIFB/manwithbag's hot-target contrast is 92.5 against a limit of 94.1 (0.9x the
# published student's 104.5, itself 1.8x the IR's own 56.9). Anything else failing, or this one falling
# further, fails the test; when it passes, the test says to remove the entry.
KNOWN_MISSES = {("target", "VIFB/manwithbag"): 0.97}


@pytest.fixture(scope="session")
def gate_run(default_gate_run):
    return default_gate_run, default_gate_run.labels[0]


def _report(failed: dict[str, list[qg.Gate]]) -> str:
    return "\n".join(f"{key}: " + "; ".join(g.why for g in gates) for key, gates in sorted(failed.items()))


def test_every_shared_pair_is_judged(gate_run):
    result, label = gate_run
    assert result.pair_count() == 45
    gates = result.gates(label)["pairs"]
    assert len(gates) == 45
    # a clear hot target on most pairs, so the target gate is not vacuous
    assert sum(src["target"] is not None for by_stem in result.sources.values() for src in by_stem.values()) >= 25


@pytest.mark.parametrize("gate", PER_PAIR_GATES)
def test_default_passes_gate_on_every_pair(gate_run, gate):
    result, label = gate_run
    failed = {key: [g for g in gates if g.name == gate and not g.passed]
              for key, gates in result.gates(label)["pairs"].items()}
    failed = {key: gates for key, gates in failed.items() if gates}
    for (known_gate, key), floor in KNOWN_MISSES.items():
        if known_gate != gate:
            continue
        assert key in failed, f"{key} now passes the {gate} gate: remove it from KNOWN_MISSES and MODEL_CARD.md"
        assert all(g.value >= floor * g.limit for g in failed[key]), _report({key: failed[key]})
        del failed[key]
    assert not failed, f"{len(failed)} pair(s) fail the {gate} gate:\n{_report(failed)}"


def test_default_means_reach_nine_tenths_of_the_published_student(gate_run):
    result, label = gate_run
    means = result.gates(label)["means"]
    assert [g.name for g in means] == [f"mean {m}" for m in qg.MEANS_METRICS]
    assert not qg.failures(means), "; ".join(g.why for g in qg.failures(means))


def test_gates_fail_a_crushed_or_flattened_image(gate_run, ivif_dir):
    """The gates can fail: the default's own night output, darkened by 40 levels or flattened, is refused."""
    from sage_edge.imageio import read_ir, read_visible
    from sage_edge.metrics import metrics_from_levels, to_gray_levels
    from sage_edge.runtime.backend import open_backend
    from sage_edge.runtime.fuser import Fuser

    result, label = gate_run
    ir, vis = read_ir(ivif_dir / "MSRS/ir/00858N.png"), read_visible(ivif_dir / "MSRS/vis/00858N.png")
    with open_backend(resolve_model("default")) as backend:
        fused = to_gray_levels(Fuser(backend).fuse(ir, vis))
    a, b = to_gray_levels(ir), to_gray_levels(vis)
    sources = qg.source_facts(a, b)
    reference = result.facts["MSRS"][result.reference]["00858N"]

    def verdict(image):
        facts = qg.pair_facts(image, sources, metrics_from_levels(a, b, image, ("EN", "VIF")))
        return {g.name: g.passed for g in qg.judge_pair(facts, sources, reference)}

    assert all(verdict(fused).values())
    crushed = verdict(np.clip(fused - 40, 0, 255))
    assert not crushed["shadows"] and not crushed["brightness"] and not crushed["EN"]
    flat = verdict(np.full_like(fused, fused.mean()))
    assert not flat["EN"] and not flat["VIF"] and not flat["target"]


def test_hot_target_is_the_brightest_blob_with_a_ring():
    ir = np.full((120, 160), 60.0)
    ir[40:52, 30:36] = 230.0  # 72 pixels: the target
    ir[90:94, 100:110] = 250.0  # 40 pixels: hotter but too small
    target = qg.find_hot_target(ir)
    assert target is not None and target.area == 72 and target.box == (30, 40, 6, 12)
    assert target.ir_contrast == pytest.approx(170.0)
    assert not (target.ring & target.mask).any()
    assert qg.find_hot_target(np.full((120, 160), 60.0)) is None  # no blob
    faint = np.full((120, 160), 60.0)
    faint[40:52, 30:36] = 90.0
    assert qg.find_hot_target(faint) is None  # not 40 levels above the median
    edge = np.full((120, 160), 60.0)
    edge[0:12, 30:36] = 230.0
    assert qg.find_hot_target(edge) is None  # cut by the frame


def test_pair_gates_thresholds():
    sources = {"sources_black": 0.02, "darker_source_mean": 20.0, "target": None}
    reference = {"EN": 7.0, "VIF": 1.0, "target_contrast": float("nan"), "black": 0.0, "mean": 30.0}
    ok = {"black": 0.029, "mean": 20.0, "EN": 6.3, "VIF": 0.8, "target_contrast": float("nan")}
    assert all(g.passed for g in qg.judge_pair(ok, sources, reference))
    bad = {"black": 0.031, "mean": 19.9, "EN": 6.29, "VIF": 0.79, "target_contrast": float("nan")}
    assert [g.name for g in qg.failures(qg.judge_pair(bad, sources, reference))] == ["shadows", "brightness", "EN",
                                                                                       "VIF"]
    means = qg.judge_means({"SD": 36.0, "EN": 6.2}, {"SD": 40.0, "EN": 7.0})
    assert [(g.name, g.passed) for g in means] == [("mean EN", False), ("mean SD", True)]
