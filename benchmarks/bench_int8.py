"""ONNX Runtime INT8 (ModelOpt Q/DQ) vs ONNX Runtime FP32 for the student on this CPU: time and quality, one run.

The published student (or --model weights) is exported as the uint8 end-to-end graph,
quantized on half of the shared pairs (every other pair), and both models fuse the other,
held-back half at --width x --height. Iterations are interleaved (FP32, INT8, FP32, ...)
so machine noise hits both alike. Quality: PSNR and max abs error of INT8's fused image
against FP32's, per pair. On a CPU, Q/DQ graphs are mostly a *quality* preview of what
TensorRT INT8 will give: ORT's CPU kernels may or may not run them faster.

    python benchmarks/bench_int8.py [--model PATH] [--data ../shared/data/ivif] [--iterations 20]
                                    [--threads 2] [--width 640 --height 480] [--samples 32] [--method max]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO.parent / "shared/data/sage_official/checkpoints.pt"))
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/ivif"))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--method", default="max", choices=["max", "entropy"])
    args = parser.parse_args()

    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.export.precision_check import load_eval_images, psnr, split_pairs
    from sage_edge.export.quantize import quantize_onnx
    from sage_edge.models.checkpoint import load_student
    from sage_edge.pairs import find_datasets
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    shape = (args.height, args.width)
    calib, held_back = split_pairs([p for ps in find_datasets(args.data).values() for p in ps])
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        export_onnx(load_student(args.model), fp32, io_kind="uint8")
        t0 = time.perf_counter()
        qdq = quantize_onnx(fp32, Path(scratch) / "int8.onnx", calib, method=args.method, samples=args.samples,
                            calib_shape=shape, progress=True).path
        quantize_s = time.perf_counter() - t0
        images = load_eval_images(held_back, shape)
        with OnnxRuntimeBackend(fp32, intra_op_threads=args.threads) as b32, \
                OnnxRuntimeBackend(qdq, intra_op_threads=args.threads) as b8:
            f32, f8 = Fuser(b32), Fuser(b8)
            psnrs, errors = [], []
            for _, ir, vis in images:
                a, b = f32.fuse(ir, vis), f8.fuse(ir, vis)
                psnrs.append(psnr(a, b))
                errors.append(int(np.abs(a.astype(int) - b.astype(int)).max()))
            _, ir, vis = images[0]
            for _ in range(args.warmup):
                f32.fuse(ir, vis)
                f8.fuse(ir, vis)
            times: dict[str, list[float]] = {"fp32": [], "int8": []}
            for _ in range(args.iterations):
                for name, fuser in (("fp32", f32), ("int8", f8)):
                    start = time.perf_counter()
                    fuser.fuse(ir, vis)
                    times[name].append(time.perf_counter() - start)

    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"student, uint8 end-to-end graph, {args.width}x{args.height}, ONNX Runtime CPU, {args.threads} threads, "
          f"{args.iterations} interleaved iterations")
    print(f"quantize ({args.method}, {args.samples} crops from {len(calib)} pairs): {quantize_s:.1f} s")
    print(f"FP32 median {med['fp32']:.1f} ms   INT8 Q/DQ median {med['int8']:.1f} ms   "
          f"INT8/FP32 time ratio {med['int8'] / med['fp32']:.2f}")
    finite = [p for p in psnrs if np.isfinite(p)]
    print(f"quality INT8 vs FP32 on {len(images)} held-back pairs: PSNR min {min(psnrs):.2f} dB, "
          f"mean {np.mean(finite):.2f} dB; max abs error {max(errors)} levels")


if __name__ == "__main__":
    main()
