"""What border padding costs: the bundled default ONNX at 640x480 with --border-pad 0 and with its default,
as a ratio measured in one run (ONNX Runtime, iterations interleaved A, B, A, B, ...).

The graph is the same file for both: ``border_pad`` is an overridable initializer, so only the amount
changes. The padded run also computes the larger image: (W + 2p) x (H + 2p) pixels.

    python benchmarks/bench_border_pad.py [--iterations 30] [--threads 2] [--width 640 --height 480] [--pads 8 16 32]
"""
from __future__ import annotations

import argparse
import statistics
import time

import onnxruntime as ort

from sage_edge.io_contract import DEFAULT_BORDER_PAD
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.samples import synthetic_pair
from sage_edge.zoo import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--pads", type=int, nargs="+", default=[DEFAULT_BORDER_PAD])
    args = parser.parse_args()

    ir, vis = synthetic_pair(args.height, args.width, seed=0)
    pads = [0, *args.pads]
    backends = {p: open_backend(resolve_model("default"), "onnxruntime", intra_op_threads=args.threads, border_pad=p)
                for p in pads}
    fusers = {p: Fuser(b) for p, b in backends.items()}
    times: dict[int, list[float]] = {p: [] for p in pads}
    for i in range(args.warmup + args.iterations):
        for p in pads:
            start = time.perf_counter()
            fusers[p].fuse(ir, vis)
            if i >= args.warmup:
                times[p].append((time.perf_counter() - start) * 1e3)
    for b in backends.values():
        b.close()
    base = statistics.median(times[0])
    print(f"bundled default, {args.width}x{args.height}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"{args.iterations} interleaved iterations (median ms)")
    print(f"{'--border-pad':>12} {'ms':>8} {'time vs 0':>10} {'pixels vs 0':>12}")
    for p in pads:
        pixels = (args.width + 2 * p) * (args.height + 2 * p) / (args.width * args.height)
        print(f"{p:>12} {statistics.median(times[p]):>8.1f} {statistics.median(times[p]) / base:>9.3f}x {pixels:>11.3f}x")


if __name__ == "__main__":
    main()
