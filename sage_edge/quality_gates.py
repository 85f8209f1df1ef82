"""Per-pair quality gates: is one fused image acceptable, judged against its sources and a reference model.

A mean over pairs hides the pair that fails, so every gate is decided pair by pair (except the means gate)
and says why it failed. Used by the default model's tests (tests/test_quality_gates.py) and by
``sage-edge eval --reference LABEL`` (per-pair pass/fail in metrics.json, metrics.csv and report.md).

All inputs are grey levels 0..255 (``sage_edge.metrics.to_gray_levels``): A = IR, B = visible, F = fused.
The gates (issue 11; thresholds are the module constants below):

1. ``shadows``: no crushed shadows. The fraction of F's pixels at grey 0 is at most the fraction of
   pixels that are 0 in *both* sources, plus 1 point (only a pixel black in both sources may be black).
2. ``brightness``: not darker than both sources. mean(F) >= min(mean(A), mean(B)).
3. ``EN`` and ``VIF``: per pair, EN(F) >= 0.9 x the reference's EN, VIF(F) >= 0.8 x the reference's VIF.
4. ``means`` (over all pairs, not per pair): the mean of each of EN, SD, SF, AG, SCD, VIF and Qabf is at
   least 0.9 x the reference's mean.
5. ``target``: thermal targets keep their contrast. On pairs with a clear hot target (``find_hot_target``),
   contrast(F) >= 0.9 x contrast(reference), contrast = mean over the target - mean over a ring around it.

Hot target (``find_hot_target``), written down so that anyone can recompute it:
  * candidates: IR pixels at or above the IR's 99.5th percentile (the hottest 0.5 %), and at least
    ``TARGET_MIN_LEVEL_ABOVE_MEDIAN`` grey levels above the IR's median;
  * blobs: 8-connected components of the candidates with at least ``TARGET_MIN_AREA`` (50) pixels that
    do not touch the image border (a target cut by the frame has no ring all round);
  * the target: the blob with the highest mean IR level;
  * its ring: pixels whose distance to the target (Euclidean distance transform) is > 3 and <= 7;
  * it is *clear* when the IR's own contrast (target mean - ring mean) is at least
    ``TARGET_MIN_IR_CONTRAST`` grey levels. Pairs without a clear target skip gate 5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from sage_edge.metrics import entropy, vif

# Gate thresholds (issue 11).
SHADOW_SLACK = 0.01  # fraction of pixels (1 point)
EN_RATIO, VIF_RATIO = 0.9, 0.8
MEANS_RATIO = 0.9
MEANS_METRICS = ("EN", "SD", "SF", "AG", "SCD", "VIF", "Qabf")
TARGET_RATIO = 0.9
# Hot-target definition.
TARGET_PERCENTILE = 99.5
TARGET_MIN_LEVEL_ABOVE_MEDIAN = 40.0
TARGET_MIN_AREA = 50
TARGET_RING = (3.0, 7.0)
TARGET_MIN_IR_CONTRAST = 40.0
# What a pair's facts hold (``pair_facts``), besides the metrics.
PAIR_METRICS = ("EN", "VIF")


@dataclass(frozen=True)
class HotTarget:
    mask: np.ndarray  # H x W bool, the target
    ring: np.ndarray  # H x W bool, 3 < distance <= 7 pixels around it
    ir_contrast: float

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def box(self) -> tuple[int, int, int, int]:
        """x, y, width, height of the target."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def find_hot_target(ir: np.ndarray) -> HotTarget | None:
    """The IR's clear hot target (see the module docstring), or None when it has none."""
    ir = np.asarray(ir, np.float64)
    level = max(float(np.percentile(ir, TARGET_PERCENTILE)), float(np.median(ir)) + TARGET_MIN_LEVEL_ABOVE_MEDIAN)
    candidates = (ir >= level).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    best, best_mean = None, -math.inf
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        if area < TARGET_MIN_AREA or x == 0 or y == 0 or x + w == ir.shape[1] or y + h == ir.shape[0]:
            continue
        mask = labels == index
        mean = float(ir[mask].mean())
        if mean > best_mean:
            best, best_mean = mask, mean
    if best is None:
        return None
    distance = cv2.distanceTransform((~best).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ring = (distance > TARGET_RING[0]) & (distance <= TARGET_RING[1])
    if not ring.any():
        return None
    target = HotTarget(best, ring, 0.0)
    contrast = target_contrast(ir, target)
    if contrast < TARGET_MIN_IR_CONTRAST:
        return None
    return HotTarget(best, ring, contrast)


def target_contrast(image: np.ndarray, target: HotTarget) -> float:
    """mean over the target - mean over its ring, in grey levels."""
    image = np.asarray(image, np.float64)
    return float(image[target.mask].mean() - image[target.ring].mean())


def black_fraction(image: np.ndarray) -> float:
    return float(np.mean(np.asarray(image) == 0))


def source_facts(ir: np.ndarray, vis: np.ndarray) -> dict[str, object]:
    """What the gates need from the sources (grey levels): computed once per pair, shared by every method."""
    return {
        "sources_black": float(np.mean((np.asarray(ir) == 0) & (np.asarray(vis) == 0))),
        "darker_source_mean": float(min(np.mean(ir), np.mean(vis))),
        "target": find_hot_target(ir),
    }


def pair_facts(fused: np.ndarray, sources: Mapping[str, object], metrics: Mapping[str, float] | None = None,
               ir: np.ndarray | None = None, vis: np.ndarray | None = None) -> dict[str, float]:
    """The numbers the per-pair gates judge, for one fused image (grey levels).

    ``metrics`` may already hold EN and VIF (as ``sage-edge eval`` computes them); otherwise ``ir`` and
    ``vis`` are needed to compute VIF. ``target_contrast`` is nan when the pair has no clear hot target.
    """
    metrics = dict(metrics or {})
    if "EN" not in metrics:
        metrics["EN"] = entropy(fused)
    if "VIF" not in metrics:
        if ir is None or vis is None:
            raise ValueError("VIF needs the sources")
        metrics["VIF"] = vif(fused, ir, vis)
    target = sources["target"]
    return {
        "black": black_fraction(fused),
        "mean": float(np.mean(fused)),
        "target_contrast": target_contrast(fused, target) if target is not None else float("nan"),
        **{name: float(metrics[name]) for name in PAIR_METRICS},
    }


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float
    limit: float
    why: str  # what was compared, in words (shown for failures)

    def to_dict(self) -> dict[str, object]:
        return {"gate": self.name, "passed": self.passed, "value": self.value, "limit": self.limit, "why": self.why}


def judge_pair(facts: Mapping[str, float], sources: Mapping[str, object],
               reference: Mapping[str, float] | None = None) -> list[Gate]:
    """Gates 1, 2 (always) and 3, 5 (with the reference model's facts for the same pair)."""
    gates = []
    limit = float(sources["sources_black"]) + SHADOW_SLACK
    gates.append(Gate("shadows", facts["black"] <= limit, facts["black"], limit,
                      f"{100 * facts['black']:.1f} % of pixels at 0, sources black on "
                      f"{100 * float(sources['sources_black']):.1f} % (limit +{100 * SHADOW_SLACK:g} points)"))
    limit = float(sources["darker_source_mean"])
    gates.append(Gate("brightness", facts["mean"] >= limit, facts["mean"], limit,
                      f"mean grey {facts['mean']:.1f}, darker source {limit:.1f}"))
    if reference is None:
        return gates
    for name, ratio in (("EN", EN_RATIO), ("VIF", VIF_RATIO)):
        limit = ratio * reference[name]
        gates.append(Gate(name, facts[name] >= limit, facts[name], limit,
                          f"{name} {facts[name]:.3f}, reference {reference[name]:.3f} (x{ratio:g} = {limit:.3f})"))
    if sources["target"] is not None:
        limit = TARGET_RATIO * reference["target_contrast"]
        gates.append(Gate("target", facts["target_contrast"] >= limit, facts["target_contrast"], limit,
                          f"hot-target contrast {facts['target_contrast']:.1f}, reference "
                          f"{reference['target_contrast']:.1f} (x{TARGET_RATIO:g}), IR "
                          f"{sources['target'].ir_contrast:.1f}"))
    return gates


def judge_means(means: Mapping[str, float], reference_means: Mapping[str, float],
                metrics: Sequence[str] = MEANS_METRICS) -> list[Gate]:
    """Gate 4: each metric's mean over the pairs is at least 0.9 x the reference's (metrics absent: skipped)."""
    gates = []
    for name in metrics:
        if name not in means or name not in reference_means:
            continue
        limit = MEANS_RATIO * reference_means[name]
        gates.append(Gate(f"mean {name}", means[name] >= limit, means[name], limit,
                          f"mean {name} {means[name]:.3f}, reference {reference_means[name]:.3f} "
                          f"(x{MEANS_RATIO:g} = {limit:.3f})"))
    return gates


def failures(gates: Iterable[Gate]) -> list[Gate]:
    return [g for g in gates if not g.passed]
