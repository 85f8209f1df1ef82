"""Automatic IR -> visible registration (runtime.auto_registration, calibrate --auto, fuse --homography and
--register auto, run --register auto): the benchmark at a smaller scale, different sizes, one-line refusals,
and drift tracking that follows a moving rig without flapping.

The benchmark (benchmarks/bench_registration.py) has three truths: the issue's protocol on the real shared
IR ("vs dataset": the datasets' registration taken as exact, which it is not, by several pixels), the real
IR relative to the pair's own estimate ("vs warp"), and a cross-modal synthetic IR made from the visible
image, whose geometry is exact. Tests that need an exact truth use the synthetic IR (``bench.fake_ir``).
"""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT, run_cli
from sage_edge.errors import SageEdgeError
from sage_edge.runtime.auto_registration import RegistrationRefused, corner_distance, estimate_homography


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_registration", REPO_ROOT / "benchmarks" / "bench_registration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


fake_ir = bench.fake_ir  # the benchmark's cross-modal stand-in for IR (exact geometry)


@pytest.fixture(scope="module")
def shared_pairs(ivif_dir):
    if not ivif_dir.is_dir():
        pytest.skip("shared pairs not found")
    return bench.load_pairs()


def rig_640x512_beside_1280x720(vis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 640x512 thermal core beside a 1280x720 camera with a wider lens (IR covers ~60 % of its width),
    slightly off-centre and turned: (IR, visible, the true IR -> visible homography)."""
    vis = cv2.resize(vis[96:672], (1280, 720), interpolation=cv2.INTER_LINEAR)  # a 1024x768 frame cut to 16:9
    turn = np.array([[1.2 * np.cos(0.02), -1.2 * np.sin(0.02), 0.0], [1.2 * np.sin(0.02), 1.2 * np.cos(0.02), 0.0],
                     [0.0, 0.0, 1.0]])
    truth = (np.array([[1.0, 0.0, 640.0 + 12.0], [0.0, 1.0, 360.0 - 7.0], [0.0, 0.0, 1.0]]) @ turn
             @ np.array([[1.0, 0.0, -319.5], [0.0, 1.0, -255.5], [0.0, 0.0, 1.0]]))
    ir = cv2.warpPerspective(fake_ir(vis), truth, (640, 512), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP)
    return ir, vis, truth


# --------------------------------------------------------------------------------------------- accuracy


SUBSET_PAIRS = 5  # the benchmark's cases for 5 shared pairs spread over the datasets, 1 warp each


@pytest.fixture(scope="module")
def subset_run(ivif_dir):
    """``benchmarks/bench_registration.py`` at a smaller scale: the same code, the same seeded cases (the
    first warp of each of these pairs in the full run), sage-edge and the two fast baselines (SIFT is
    left to the benchmark for time; it fails on these cross-modal pairs there as well)."""
    if not ivif_dir.is_dir():
        pytest.skip("shared pairs not found")
    methods = {name: bench.METHODS[name] for name in ("sage-edge (structure maps)", "ECC on raw intensities",
                                                      "ORB + RANSAC")}
    results, names, _, residuals = bench.run_cases(bench.load_pairs(SUBSET_PAIRS), methods, warps=1)
    return results, names, residuals


def goal_met(errors) -> bool:
    """The issue's goal: median corner error <= 1 px and >= 90 % of the cases within 3 px."""
    errors = np.asarray(errors)
    return bool(np.median(errors) <= 1.0 and (errors <= 3.0).mean() >= 0.9)


@pytest.mark.xfail(strict=True, reason="not met under the issue's protocol on the shared pairs: the datasets' own "
                                       "registration is off by several pixels (see the next test and "
                                       "benchmarks/RESULTS.md), and truth here takes it as exact")
def test_issue_protocol_real_ir_goal(subset_run):
    """The issue's protocol: real IR warped by known homographies, truth = the warp with the dataset's
    registration taken as exact. Strict xfail: if this starts to pass, the results and docs need updating."""
    results, _, _ = subset_run
    assert goal_met(results["sage-edge (structure maps)"]["dataset"])


def test_real_ir_subset_recovers_the_warp_and_beats_the_baselines(subset_run):
    """What the real pairs do show: (1) the content itself says the datasets are misregistered: independent
    patch matching (gradient magnitude, not the estimator's maps) finds less misalignment at sage-edge's
    estimate than at the dataset's registration; (2) the known warp is recovered relative to the pair's own
    estimate ("vs warp"); (3) on the issue's protocol sage-edge is far closer than the baselines measured in
    the same run, which fail on cross-modal pairs."""
    results, names, residuals = subset_run
    at_dataset = np.array([r[1] for r in residuals])
    at_estimate = np.array([r[2] for r in residuals])
    assert (at_estimate < at_dataset).sum() > len(residuals) / 2, residuals  # most pairs
    assert np.nanmean(at_estimate) < np.nanmean(at_dataset), residuals
    ours = results["sage-edge (structure maps)"]
    assert np.median(ours["warp"]) <= 3.0, ours["warp"]
    for baseline in ("ECC on raw intensities", "ORB + RANSAC"):
        theirs = np.asarray(results[baseline]["dataset"])
        assert np.median(theirs) > 4 * np.median(ours["dataset"]), (baseline, theirs, ours["dataset"])


def test_subset_goal_with_exact_truth(subset_run):
    """Where the truth is exact (the benchmark's synthetic cross-modal IR, made from the visible image and
    warped by the same homographies), the goal is met."""
    results, _, _ = subset_run
    assert goal_met(results["sage-edge (structure maps)"]["synthetic"]), results["sage-edge (structure maps)"]
    for baseline in ("ECC on raw intensities", "ORB + RANSAC"):
        assert not goal_met(results[baseline]["synthetic"])


def test_refuses_flat_unrelated_and_non_overlapping_frames(shared_pairs):
    _, ir, vis = shared_pairs[30]
    with pytest.raises(RegistrationRefused, match="flat"):
        estimate_homography(np.zeros_like(ir), vis)
    with pytest.raises(RegistrationRefused, match="flat"):
        estimate_homography(ir, np.full_like(vis, 128))
    _, other_ir, _ = shared_pairs[5]
    with pytest.raises(RegistrationRefused, match="confirm|overlap"):
        estimate_homography(cv2.resize(other_ir, (vis.shape[1], vis.shape[0])), vis)
    assert issubclass(RegistrationRefused, SageEdgeError)


def test_low_confidence_estimates_carry_a_warning():
    from sage_edge.runtime.auto_registration import AutoRegistrationConfig, Estimate

    def estimate(confidence: float) -> Estimate:
        return Estimate(np.eye(3), (64, 48), (64, 48), confidence, 20, 80, 0.5, 1.0)

    threshold = AutoRegistrationConfig().low_confidence
    assert estimate(threshold).warning() is None
    line = estimate(threshold - 0.05).warning()
    assert line is not None and line.startswith("warning: low confidence") and "\n" not in line


# --------------------------------------------------------------------------------------------- CLI


def write(path, image):
    assert cv2.imwrite(str(path), image)
    return path


def test_calibrate_auto_at_different_sizes_writes_what_run_and_fuse_read(tmp_path, shared_pairs):
    """calibrate --auto on a 640x512 IR frame and a 1280x720 visible frame writes the H.json that
    `run --homography` loads (``load_homography`` + ``Registration``) and `fuse --homography` uses."""
    from sage_edge.runtime.registration import Registration, load_homography

    ir, vis, truth = rig_640x512_beside_1280x720(shared_pairs[2][2])  # M3FD, 1024x768
    ir_path, vis_path = write(tmp_path / "ir.png", ir), write(tmp_path / "vis.jpg", vis)
    result = run_cli("calibrate", "--auto", "--ir", ir_path, "--vis", vis_path, "--preview-layout", "checkerboard",
                     "-o", tmp_path / "H.json")  # no --hfov: the default footprint search (42 % to 119 % of the width)
    assert result.returncode == 0, result.stderr
    assert "confidence" in result.stdout and "warning" not in result.stdout
    assert cv2.imread(str(tmp_path / "H_preview.png")).shape[:2] == (720, 1280)
    homography = load_homography(tmp_path / "H.json")
    assert homography.ir_size == (640, 512) and homography.output_size == (1280, 720)
    assert corner_distance(homography.matrix, truth, (640, 512)) <= 1.5
    x, y, w, h = homography.crop  # the common field: inside the IR footprint (~770 x 620 visible px)
    assert 700 <= w <= 800 and 560 <= h <= 640
    registered_ir, cropped_vis = Registration(homography)(ir, vis)
    assert registered_ir.shape[:2] == cropped_vis.shape[:2] == (h, w)
    result = run_cli("fuse", ir_path, vis_path, "--homography", tmp_path / "H.json", "-o", tmp_path / "fused.png")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "fused.png")).shape[:2] == (h, w)


def test_calibrate_by_points_names_each_rejected_point(tmp_path, synthetic_pair):
    ir, _ = synthetic_pair
    truth = np.array([[0.95, -0.03, 6.0], [0.02, 0.97, 4.0], [1e-4, 0.0, 1.0]])
    vis = cv2.warpPerspective(cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR), truth, (128, 96))
    ir_pts = np.stack(np.meshgrid(np.linspace(8, 120, 4), np.linspace(8, 88, 3)), -1).reshape(-1, 2)
    vis_pts = cv2.perspectiveTransform(ir_pts.reshape(-1, 1, 2), truth).reshape(-1, 2)
    vis_pts[5] += (20.0, -11.0)  # one bad click: the 6th line
    (tmp_path / "points.txt").write_text("".join(f"{a} {b} {c} {d}\n" for (a, b), (c, d) in zip(ir_pts, vis_pts)))
    result = run_cli("calibrate", "--ir", write(tmp_path / "ir.png", ir), "--vis", write(tmp_path / "vis.png", vis),
                     "--points", tmp_path / "points.txt", "-o", tmp_path / "H.json")
    assert result.returncode == 0, result.stderr
    rejected = [line for line in result.stdout.splitlines() if line.startswith("rejected point")]
    assert len(rejected) == 1 and rejected[0].startswith("rejected point 6: IR (")
    assert float(rejected[0].split(" is ")[1].split(" px")[0]) == pytest.approx(np.hypot(20, 11), abs=0.5)


@pytest.mark.parametrize("case", ["unrelated", "black", "flat-visible", "no-overlap"])
def test_calibrate_auto_bad_input_is_one_line_and_writes_nothing(tmp_path, shared_pairs, case):
    _, ir, vis = shared_pairs[30]
    if case == "unrelated":
        ir = cv2.resize(shared_pairs[5][1], (vis.shape[1], vis.shape[0]))
    elif case == "black":
        ir = np.zeros_like(ir)
    elif case == "flat-visible":
        vis = np.full_like(vis, 90)
    else:  # IR of the left part of a wide scene, visible of the right part: nothing in common
        _, _, wide = shared_pairs[2]
        half = wide.shape[1] // 2
        ir, vis = fake_ir(wide[:, : half - 40]), wide[:, half + 40:]
    result = run_cli("calibrate", "--auto", "--ir", write(tmp_path / "ir.png", ir),
                     "--vis", write(tmp_path / "vis.png", vis), "-o", tmp_path / "H.json")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not (tmp_path / "H.json").exists() and not (tmp_path / "H_preview.png").exists()


def test_calibrate_auto_from_two_videos(tmp_path, shared_pairs):
    truth = bench.random_homography(np.random.default_rng(9), 320, 240)
    paths = {side: tmp_path / f"{side}.avi" for side in ("ir", "vis")}
    writers = {side: cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240)) for side, p in paths.items()}
    for index in (3, 16, 27, 40):  # four "moments" of the rig, 1 s apart at 5 fps
        vis = cv2.resize(shared_pairs[index][2], (320, 240), interpolation=cv2.INTER_AREA)
        vis = vis if vis.ndim == 3 else cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR)
        ir = cv2.cvtColor(bench.warp_ir(fake_ir(vis, index), truth), cv2.COLOR_GRAY2BGR)
        for _ in range(5):
            writers["ir"].write(ir)
            writers["vis"].write(vis)
    for writer in writers.values():
        writer.release()
    result = run_cli("calibrate", "--auto", "--ir", paths["ir"], "--vis", paths["vis"], "--frames", "3",
                     "--hfov", "40,40", "-o", tmp_path / "H.json")
    assert result.returncode == 0, result.stderr
    assert "3 frame pairs" in result.stdout and "agree within" in result.stdout
    matrix = np.asarray(json.loads((tmp_path / "H.json").read_text())["ir_to_visible"])
    assert corner_distance(matrix, truth, (320, 240)) <= 1.5  # MJPG compression on top of the fake IR


def test_fuse_register_auto_reports_the_correction(tmp_path, shared_pairs):
    _, _, vis = shared_pairs[22]
    h, w = vis.shape[:2]
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])  # IR pixel (x, y) is visible (x+3, y-2)
    ir = cv2.warpPerspective(fake_ir(vis), shift, (w, h), flags=cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    result = run_cli("fuse", write(tmp_path / "ir.png", ir), write(tmp_path / "vis.png", vis), "-o",
                     tmp_path / "fused.png", "--register", "auto")  # the bundled default model
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if "registration:" in l)
    dx, dy = (float(v) for v in line.split("shift (")[1].split(")")[0].split(","))
    assert abs(dx - 3.0) < 0.5 and abs(dy + 2.0) < 0.5, line
    assert cv2.imread(str(tmp_path / "fused.png")).shape[:2] == (h, w)


# --------------------------------------------------------------------------------------------- drift


class EchoBackend:
    """The IR frame as the fused image (this test checks registration, not fusion)."""

    name = "echo"

    def __init__(self):
        from sage_edge.runtime.backend import TensorSpec

        self.inputs = [TensorSpec("ir", np.dtype(np.uint8), (1, "h", "w", 1)),
                       TensorSpec("vis", np.dtype(np.uint8), (1, "h", "w", 3))]
        self.outputs = [TensorSpec("fused", np.dtype(np.uint8), (1, "h", "w", 3)),
                        TensorSpec("fused_y", np.dtype(np.uint8), (1, "h", "w", 1))]

    def infer(self, feed):
        return {"fused": np.repeat(feed["ir"], 3, axis=3), "fused_y": feed["ir"].copy()}

    def describe(self):
        return self.name

    def close(self):
        pass


def drift_truth(t: float) -> np.ndarray:
    """Still for 1 s, then the IR camera creeps 1.5 px/s right and 1 px/s down and turns 0.1 deg/s for
    3 s, then still again: a warming mount. Maps IR pixels to visible pixels."""
    moving = min(max(t - 1.0, 0.0), 3.0)
    angle = np.deg2rad(0.1 * moving)
    c, s = np.cos(angle), np.sin(angle)
    centre = np.array([[1.0, 0.0, -159.5], [0.0, 1.0, -119.5], [0.0, 0.0, 1.0]])
    return np.array([[c, -s, 159.5 + 1.5 * moving], [s, c, 119.5 + 1.0 * moving], [0.0, 0.0, 1.0]]) @ centre


def test_run_register_auto_follows_a_drifting_rig_and_does_not_flap(shared_pairs):
    from sage_edge.runtime.pipeline import Pipeline
    from sage_edge.runtime.sources import ArraySource

    _, _, vis = shared_pairs[33]
    vis = cv2.resize(vis, (320, 240), interpolation=cv2.INTER_AREA)
    base = fake_ir(vis)
    fps, seconds = 10.0, 7.0
    times = np.arange(int(fps * seconds)) / fps
    irs = [bench.warp_ir(base, drift_truth(t)) for t in times]
    logs = []
    pipeline = Pipeline(ArraySource(irs, period=1 / fps), ArraySource([vis] * len(irs), period=1 / fps),
                        backend_factory=EchoBackend, register="auto", register_interval=0.5, log=logs.append)
    summary = pipeline.run()
    assert summary.frames == len(irs)
    history = pipeline.auto_register.history  # (frame time, matrix) of each homography installed
    assert history[0][0] == 0.0
    worst = 0.0
    for t in times:
        in_effect = [m for ts, m in history if ts <= t + 1e-9][-1]
        worst = max(worst, corner_distance(in_effect, drift_truth(t), (320, 240)))
    # it follows: the homography in effect lags the truth by at most two re-check intervals of drift
    # (1 s at <= 2.1 px/s at the corners) plus the estimate's own error
    assert worst <= 3.5, worst
    final = history[-1][1]
    assert corner_distance(final, drift_truth(seconds), (320, 240)) <= 0.8
    # it does not flap: no switch while the rig is still (before the drift, and once it has caught up)
    switches = [ts for ts, _ in history[1:]]
    assert switches and all(1.0 < ts <= 5.5 for ts in switches), switches
    assert sum("switched" in line for line in logs) == len(switches)
