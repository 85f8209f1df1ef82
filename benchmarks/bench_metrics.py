"""Time of each fusion metric on one 1024x768 IR/visible/fused triple, against the 2 s budget.

Per metric: the median of --repeats runs of ``metrics_from_levels`` on that metric alone; then
the whole ``compute_metrics`` call (grey conversion included). Where scipy is installed, the
slow metrics are also timed, side by side in the same run, the way the CDDFuse evaluator writes
them (scipy.signal.convolve2d for VIF and Qabf, np.histogram2d for MI), and the ratio printed.

    python benchmarks/bench_metrics.py [--repeats 5] [--pair DIR/ir/x.png DIR/vis/x.png]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sage_edge import metrics as M

# The reference formulations live with the tests that check sage-edge's metrics against them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cddfuse_reference import ref_vif  # noqa: E402
from sage_edge.evaluation import baseline_fuse
from sage_edge.imageio import read_ir, read_visible
from sage_edge.samples import synthetic_pair

BUDGET_S = 2.0
M3FD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ivif" / "M3FD"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- the CDDFuse-style formulations, for the side-by-side ratio -------------------------------


def cddfuse_qabf_edges(img):
    from scipy.signal import convolve2d

    sx = convolve2d(img, M.SOBEL_X, mode="same")
    sy = convolve2d(img, M.SOBEL_Y, mode="same")
    return np.hypot(sx, sy), np.where(sx == 0, math.pi / 2, np.arctan(sy / np.where(sx == 0, 1, sx)))


def histogram_mi(x, y):
    joint, _, _ = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[0, 256], [0, 256]])
    p = joint / joint.sum()
    px, py = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (px @ py)[nz])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pair", nargs=2, type=Path, metavar=("IR", "VIS"), help="a 1024x768 pair (default: M3FD)")
    args = parser.parse_args()

    if args.pair:
        ir, vis, source = read_ir(args.pair[0]), read_visible(args.pair[1]), str(args.pair[0])
    elif (M3FD / "ir" / "00000.png").is_file():
        ir, vis = read_ir(M3FD / "ir" / "00000.png"), read_visible(M3FD / "vis" / "00000.png")
        source = "M3FD/00000"
    else:
        ir, vis = synthetic_pair(768, 1024, seed=0)
        source = "synthetic"
    fused = baseline_fuse("max", ir, vis)
    a, b, f = M.to_gray_levels(ir), M.to_gray_levels(vis), M.to_gray_levels(fused)
    print(f"triple: {source}, {ir.shape[1]}x{ir.shape[0]}, fused = max rule; median of {args.repeats} runs")

    print(f"{'metric':<6} {'time ms':>9}")
    per_metric = {}
    for name in M.METRIC_NAMES:
        per_metric[name] = median_time(lambda: M.metrics_from_levels(a, b, f, [name]), args.repeats)
        print(f"{name:<6} {per_metric[name] * 1e3:9.1f}")
    total = median_time(lambda: M.compute_metrics(ir, vis, fused), args.repeats)
    print(f"{'sum':<6} {sum(per_metric.values()) * 1e3:9.1f}")
    print(f"all twelve (compute_metrics, grey conversion included): {total:.3f} s "
          f"= {total / BUDGET_S:.2f} x the {BUDGET_S:.0f} s budget -> {'OK' if total < BUDGET_S else 'OVER BUDGET'}")

    try:
        import scipy  # noqa: F401
    except ImportError:
        print("scipy not installed: skipping the side-by-side comparison")
        return
    print("\nside by side with the CDDFuse formulation (same run):")
    pairs = {
        "VIF": (lambda: M.vif(f, a, b), lambda: ref_vif(a, f) + ref_vif(b, f)),
        "Qabf edges (x3)": (lambda: [M._qabf_edges(z) for z in (a, b, f)],
                            lambda: [cddfuse_qabf_edges(z) for z in (a, b, f)]),
        "MI": (lambda: M.mutual_information(f, a, b), lambda: histogram_mi(f, a) + histogram_mi(f, b)),
    }
    ours_vif, theirs_vif = M.vif(f, a, b), ref_vif(a, f) + ref_vif(b, f)
    print(f"  VIF agreement: {ours_vif:.10f} vs {theirs_vif:.10f}")
    for name, (ours, theirs) in pairs.items():
        t_ours = median_time(ours, args.repeats)
        t_theirs = median_time(theirs, max(1, args.repeats // 2))
        print(f"  {name:<16} sage-edge {t_ours * 1e3:8.1f} ms   CDDFuse-style {t_theirs * 1e3:8.1f} ms   "
              f"speed-up x{t_theirs / t_ours:.1f}")


if __name__ == "__main__":
    main()
