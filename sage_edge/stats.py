"""Summary statistics for latency samples.

Percentiles use linear interpolation between closest ranks (numpy's default,
``method="linear"``, the same definition as Excel's PERCENTILE.INC and
Polygraphy/trtexec-style reports): for sorted samples x[0..n-1] the q-th
percentile sits at rank r = q/100 * (n - 1) and is
``x[floor(r)] + (r - floor(r)) * (x[floor(r)+1] - x[floor(r)])``.
``std`` is the population standard deviation (ddof=0): the spread of the
measured run itself, not an estimate for some larger population.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from sage_edge.errors import SageEdgeError

# Keys of a summary, in the order tables print them.
SUMMARY_KEYS = ("count", "mean", "std", "min", "p50", "p90", "p99", "max")


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0 <= q <= 100) by linear interpolation between closest ranks."""
    values = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    if values.size == 0:
        raise SageEdgeError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise SageEdgeError(f"percentile must be in [0, 100], got {q}")
    rank = q / 100.0 * (values.size - 1)
    low = int(math.floor(rank))
    high = min(low + 1, values.size - 1)
    if rank == low:  # exactly on a sample (also keeps inf samples from giving 0 * inf = nan)
        return float(values[low])
    return float(values[low] + (rank - low) * (values[high] - values[low]))


def summarize(samples: Iterable[float]) -> dict[str, float]:
    """count, mean, std (population), min, p50, p90, p99, max of ``samples``."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        raise SageEdgeError("no samples to summarize (zero timed iterations)")
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=0)),
        "min": float(values.min()),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": float(values.max()),
    }


def zero_summary(count: int) -> dict[str, float]:
    """The summary of a stage that does not exist for a backend (e.g. host->device on a CPU)."""
    return {"count": int(count), **{k: 0.0 for k in SUMMARY_KEYS if k != "count"}}


def fps_from_ms(mean_ms: float) -> float:
    """Frames per second for a mean per-frame latency in milliseconds (0 when the latency is 0)."""
    return 1000.0 / mean_ms if mean_ms > 0 else 0.0


def ratio(new: float | None, old: float | None) -> float | None:
    """new / old, or None when either is missing or old is 0."""
    if new is None or old is None or old == 0:
        return None
    return float(new) / float(old)
