"""Every CPU path side by side at 640x480: time ratios (interleaved, one run) and quality per held-back pair.

    python benchmarks/bench_cpu.py                      # the bundled default
    python benchmarks/bench_cpu.py --model ../shared/data/sage_official/checkpoints.pt
    python benchmarks/bench_cpu.py --threads 1 --threads 2 --iterations 8

Baseline: the ONNX Runtime FP32 uint8 graph shipped at commit 29a819d (``git show``; its colour maths ran on
N x H x W x 1 tensors), at ONNX Runtime's default thread count then (one per core). For a model other than
the bundled default, the baseline is that model exported by today's code.

Cells (each at every --threads value): ORT FP32 uint8 graph (today's export), ORT FP32 float graph + colour
in numpy on the host, OpenVINO FP32 and its default hint for this CPU, ORT INT8 (``quantize --target cpu``),
OpenVINO INT8 (``quantize --target openvino``). Both INT8 models are calibrated on every other shared pair and
judged on the others (held back): PSNR against ORT FP32 per pair, the worst pair named.

Timing uses ``sage_edge.benchmarking.time_interleaved``: the cells take turns, one frame each, so their
ratios hold on a shared machine; medians and the interquartile spread of each cell's ratio are printed.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "29a819d"


def export(weights: Path, out: Path, io_kind: str) -> Path:
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.models.checkpoint import load_student

    export_onnx(load_student(weights), out, io_kind=io_kind)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default, or student weights (.pt/.safetensors)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ivif"))
    parser.add_argument("--resolution", default="640x480")
    parser.add_argument("--threads", type=int, action="append", help="repeatable [default: 1 and 2]")
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations per cell")
    parser.add_argument("--samples", type=int, default=16, help="INT8 calibration crops")
    parser.add_argument("--eval-pairs", type=int, default=None, help="held-back pairs judged [default: all]")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    from sage_edge import benchmarking as bm
    from sage_edge.export.precision_check import load_eval_images, psnr, split_pairs
    from sage_edge.export.quantize_cpu import quantize_openvino, quantize_ort_cpu
    from sage_edge.pairs import find_datasets
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from sage_edge.runtime.openvino_backend import OpenVinoBackend
    from sage_edge.zoo import resolve_model

    width, height = bm.parse_resolution(args.resolution)
    threads = args.threads or [1, 2]
    pairs = [p for ps in find_datasets(args.data).values() for p in ps]
    calib, held = split_pairs(pairs)
    scratch = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    weights = resolve_model("default", want="weights") if args.model == "default" else Path(args.model)
    uint8 = export(weights, scratch / "fp32_uint8.onnx", "uint8")
    floatg = export(weights, scratch / "fp32_float.onnx", "float")
    if args.model == "default":
        baseline = scratch / f"baseline_{BASELINE_COMMIT}.onnx"
        baseline.write_bytes(subprocess.run(["git", "-C", str(REPO), "show",
                                             f"{BASELINE_COMMIT}:sage_edge/assets/default.onnx"],
                                            check=True, capture_output=True).stdout)
        baseline_label = f"ORT FP32 uint8 graph as shipped at {BASELINE_COMMIT}"
    else:
        baseline, baseline_label = uint8, "ORT FP32 uint8 graph (today's export)"
    t0 = time.time()
    cpu_int8 = scratch / "int8_cpu.onnx"
    quantize_ort_cpu(uint8, cpu_int8, calib, samples=args.samples, calib_shape=(height, width), progress=False)
    ov_int8 = scratch / "int8_openvino.xml"
    quantize_openvino(uint8, ov_int8, calib, samples=args.samples, calib_shape=(height, width), progress=False)
    print(f"quantized both INT8 models on {args.samples} crops from {len(calib)} pairs in {time.time() - t0:.0f} s",
          flush=True)

    configs = {  # label: (backend factory(threads), precision label)
        "baseline": (lambda t: OnnxRuntimeBackend(baseline, intra_op_threads=t), baseline_label),
        "ort_fp32": (lambda t: OnnxRuntimeBackend(uint8, intra_op_threads=t), "ORT FP32, uint8 graph (today)"),
        "ort_float_host": (lambda t: OnnxRuntimeBackend(floatg, intra_op_threads=t),
                           "ORT FP32, float graph + colour in numpy"),
        "ov_fp32": (lambda t: OpenVinoBackend(uint8, threads=t), "OpenVINO FP32"),
        "ov_bf16": (lambda t: OpenVinoBackend(uint8, precision="bf16", threads=t), "OpenVINO bf16 hint"),
        "ort_int8": (lambda t: OnnxRuntimeBackend(cpu_int8, intra_op_threads=t), "ORT INT8 (quantize --target cpu)"),
        "ov_int8": (lambda t: OpenVinoBackend(ov_int8, precision="int8", threads=t),
                    "OpenVINO INT8 (quantize --target openvino)"),
    }

    # Quality: every held-back pair (centre crop scaled to cover the resolution), against ORT FP32.
    images = load_eval_images(held, (height, width), args.eval_pairs)
    quality = {}
    reference = Fuser(OnnxRuntimeBackend(uint8))
    refs = [reference.fuse(ir, vis) for _, ir, vis in images]
    for key, (factory, label) in configs.items():
        if key == "ort_fp32":
            continue
        with factory(0) as backend:
            fuser = Fuser(backend)
            rows = []
            for (stem, ir, vis), ref in zip(images, refs):
                out = fuser.fuse(ir, vis)
                rows.append((stem, psnr(ref, out), int(np.abs(ref.astype(int) - out.astype(int)).max())))
        finite = [r[1] for r in rows if math.isfinite(r[1])]
        worst = min(rows, key=lambda r: r[1])
        quality[key] = {"pairs": len(rows), "psnr_min": worst[1], "worst_pair": worst[0],
                        "psnr_mean": float(np.mean(finite)) if finite else math.inf,
                        "max_abs": max(r[2] for r in rows), "below_35": sum(r[1] < 35 for r in rows)}
        print(f"quality {key:15s} min {worst[1]:7.2f} dB ({worst[0]}), max abs {quality[key]['max_abs']}, "
              f"{quality[key]['below_35']} of {len(rows)} pairs < 35 dB", flush=True)

    # Time: every (config, threads) cell interleaved, one frame per turn.
    inputs = bm.load_inputs(args.data, frames=8, seed=0, echo=lambda s: None)
    frames = inputs.at(width, height)
    cells, backends = {}, []
    for key, (factory, _) in configs.items():
        for t in threads:
            backend = factory(t)
            backends.append(backend)
            timer = bm._CellTimer(backend, frames)
            timer.warmup(2)
            cells[(key, t)] = (timer, backend.describe())
    opts = bm.RunOptions(warmup=0, iterations=args.iterations, progress=False)
    bm.time_interleaved([c[0] for c in cells.values()], opts)
    base_t = max(t for t in threads if t <= 2) if any(t <= 2 for t in threads) else threads[0]
    base = np.array(cells[("baseline", base_t)][0].host["end_to_end"])
    print(f"\n{args.resolution}, {args.iterations} interleaved iterations per cell; ratio = cell median / "
          f"baseline median ({baseline_label}, {base_t} threads); spread = ratio of per-round times, 25th-75th pct\n")
    print("| configuration | threads | median ms | ratio | spread | quality vs ORT FP32 (held-back pairs) |")
    print("|---|---:|---:|---:|---|---|")
    table = []
    for (key, t), (timer, described) in cells.items():
        ms = np.array(timer.host["end_to_end"])
        per_round = ms / base[:len(ms)]
        q = quality.get(key)
        qtext = "reference" if q is None else (
            "identical" if not math.isfinite(q["psnr_min"]) else
            f"min {q['psnr_min']:.2f} dB ({q['worst_pair']}), max abs {q['max_abs']}, {q['below_35']}/{q['pairs']} < 35 dB")
        ratio = float(np.median(ms) / np.median(base))
        print(f"| {configs[key][1]} | {t} | {np.median(ms):.0f} | {ratio:.3f} | "
              f"{np.percentile(per_round, 25):.2f}-{np.percentile(per_round, 75):.2f} | {qtext} |")
        table.append({"config": key, "label": configs[key][1], "threads": t, "described": described,
                      "median_ms": float(np.median(ms)), "ratio": ratio, "quality": q})
    for backend in backends:
        backend.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"resolution": args.resolution, "baseline": baseline_label,
                                               "cells": table}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
