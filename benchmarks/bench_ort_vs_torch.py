"""ONNX Runtime vs torch eager for the student at 640x480 on this CPU, as a ratio measured in one run.

Both engines run the same weights on the same input with the same thread count;
their iterations are interleaved (A, B, A, B, ...) so that machine noise hits
both alike. Two graphs are timed: the bare network (float Y/IR in, Y out) and the
uint8 end-to-end graph (colour maths included).

    python benchmarks/bench_ort_vs_torch.py [--iterations 30] [--threads 2] [--width 640 --height 480]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sage_edge.export.onnx_export import export_onnx, feed_for
from sage_edge.models.end_to_end import EndToEndFusion, FusedLuminance
from sage_edge.models.student import StudentNet
from sage_edge.samples import synthetic_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    student = StudentNet().eval()
    ir, vis = synthetic_pair(args.height, args.width, seed=0)
    print(f"student at {args.width}x{args.height}, {args.threads} threads, {args.iterations} interleaved iterations "
          f"(torch {torch.__version__}, onnxruntime {ort.__version__})")
    print(f"{'graph':<10} {'torch eager ms':>15} {'onnxruntime ms':>15} {'speed-up (torch/ORT)':>21}")
    with tempfile.TemporaryDirectory() as tmp:
        for io_kind, wrapper in (("float", FusedLuminance), ("uint8", EndToEndFusion)):
            path = Path(tmp) / f"{io_kind}.onnx"
            export_onnx(student, path, io_kind=io_kind, check_pair=(ir, vis))
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = feed_for(io_kind, ir, vis)
            module = wrapper(student).eval()
            torch_inputs = [torch.from_numpy(v) for v in feed.values()]

            def run_torch() -> None:
                with torch.inference_mode():
                    module(*torch_inputs)

            def run_ort() -> None:
                session.run(None, feed)

            times: dict[str, list[float]] = {"torch": [], "ort": []}
            for i in range(args.warmup + args.iterations):
                for name, fn in (("torch", run_torch), ("ort", run_ort)):
                    start = time.perf_counter()
                    fn()
                    if i >= args.warmup:
                        times[name].append((time.perf_counter() - start) * 1e3)
            t_ms, o_ms = statistics.median(times["torch"]), statistics.median(times["ort"])
            print(f"{io_kind:<10} {t_ms:>15.1f} {o_ms:>15.1f} {t_ms / o_ms:>20.2f}x")


if __name__ == "__main__":
    main()
