"""Straightforward reference formulations of fusion metrics, as the CDDFuse evaluator writes them.

Independent of ``sage_edge.metrics`` (plain scipy loops): the tests check sage-edge's fast versions against
them, and ``benchmarks/bench_metrics.py`` times them side by side.
"""
from __future__ import annotations

import numpy as np


def ref_vif(ref: np.ndarray, dist: np.ndarray) -> float:
    """vifp_mscale with scipy.signal.convolve2d, as the CDDFuse evaluator writes it."""
    from scipy.signal import convolve2d

    eps, sigma_nsq, num, den = 1e-10, 2.0, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        m = (n - 1) / 2
        yy, xx = np.ogrid[-m : m + 1, -m : m + 1]
        win = np.exp(-(xx * xx + yy * yy) / (2 * sd * sd))
        win /= win.sum()

        def conv(z):
            return convolve2d(z, np.rot90(win, 2), mode="valid")

        if scale > 1:
            ref, dist = conv(ref)[::2, ::2], conv(dist)[::2, ::2]
        mu1, mu2 = conv(ref), conv(dist)
        s1 = conv(ref * ref) - mu1 * mu1
        s2 = conv(dist * dist) - mu2 * mu2
        s12 = conv(ref * dist) - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return float(num / den)
