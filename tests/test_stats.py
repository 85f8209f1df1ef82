"""Statistics on known samples (sage_edge.stats)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sage_edge import stats
from sage_edge.errors import SageEdgeError


def test_percentiles_of_one_to_ten_by_hand() -> None:
    samples = [7, 1, 10, 3, 5, 2, 9, 4, 8, 6]  # unsorted on purpose
    # rank = q/100 * (n-1): p50 -> 4.5 (between 5 and 6), p90 -> 8.1 (9 + 0.1), p99 -> 8.91 (9 + 0.91)
    assert stats.percentile(samples, 50) == pytest.approx(5.5)
    assert stats.percentile(samples, 90) == pytest.approx(9.1)
    assert stats.percentile(samples, 99) == pytest.approx(9.91)
    assert stats.percentile(samples, 0) == 1
    assert stats.percentile(samples, 100) == 10


def test_percentile_matches_numpy_linear_on_random_samples() -> None:
    rng = np.random.default_rng(3)
    samples = rng.lognormal(1.0, 0.5, size=257)
    for q in (1, 25, 50, 90, 99, 99.9):
        assert stats.percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)), rel=1e-12)


def test_summary_of_known_samples() -> None:
    s = stats.summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s["count"] == 8
    assert s["mean"] == pytest.approx(5.0)
    assert s["std"] == pytest.approx(2.0)  # the textbook population-std example
    assert (s["min"], s["max"]) == (2.0, 9.0)
    assert s["p50"] == pytest.approx(4.5)
    assert s["p90"] == pytest.approx(7.0 + 0.3 * 2.0)  # rank 6.3 between 7 and 9
    assert list(s) == list(stats.SUMMARY_KEYS)


def test_single_sample_and_constant_samples() -> None:
    one = stats.summarize([3.25])
    assert one["p50"] == one["p99"] == one["min"] == one["max"] == 3.25 and one["std"] == 0.0
    flat = stats.summarize([1.5] * 50)
    assert flat["p90"] == 1.5 and flat["std"] == 0.0


def test_fps_ratio_and_zero_summary() -> None:
    assert stats.fps_from_ms(4.0) == 250.0
    assert stats.fps_from_ms(0.0) == 0.0
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None and stats.ratio(1.0, 0.0) is None
    z = stats.zero_summary(7)
    assert z["count"] == 7 and all(z[k] == 0.0 for k in stats.SUMMARY_KEYS if k != "count")


def test_bad_input_is_a_one_line_error() -> None:
    with pytest.raises(SageEdgeError):
        stats.summarize([])
    with pytest.raises(SageEdgeError):
        stats.percentile([1, 2], 101)
    with pytest.raises(SageEdgeError):
        stats.percentile([], 50)
    assert not math.isnan(stats.percentile([1.0, float("inf")], 0))
