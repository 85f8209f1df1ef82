"""Pipeline FPS vs bare inference FPS, on the same frames and backend, in one run.

    python benchmarks/bench_pipeline.py [--model M] [--backend onnxruntime] [--frames 200] [--size 320x256]

Bare inference: ``Fuser.fuse`` in a loop over frames already decoded and in memory (one thread).
Pipeline: ``sage_edge.runtime.pipeline.Pipeline`` on file sources (PNG image sequences, ``--loop``), so
decode, pairing, preprocess, inference and output overlap on their own threads; also on in-memory sources
(no decode) to separate the pipeline's own overhead from PNG decoding. Rounds alternate (bare, pipeline,
bare, ...) so that machine load hits both alike; the ratio is pipeline FPS / bare FPS (goal >= 0.95).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
IVIF = REPO.parent / "shared" / "data" / "ivif"


def load_frames(size: tuple[int, int], count: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """A few shared pairs resized to ``size`` (W, H); synthetic pairs if the shared data is absent."""
    from sage_edge.imageio import read_ir, read_visible
    from sage_edge.samples import synthetic_pair

    pairs = []
    for dataset in ("MSRS", "VIFB", "TNO", "RoadScene"):
        folder = IVIF / dataset / "ir"
        if not folder.is_dir():
            continue
        for ir_path in sorted(folder.iterdir()):
            vis_path = next((IVIF / dataset / "vis").glob(ir_path.stem + ".*"), None)
            if vis_path is None:
                continue
            ir = cv2.resize(read_ir(ir_path), size, interpolation=cv2.INTER_AREA)
            vis = read_visible(vis_path)
            vis = cv2.resize(vis if vis.ndim == 3 else cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR), size,
                             interpolation=cv2.INTER_AREA)
            pairs.append((ir, vis))
            if len(pairs) >= count:
                return pairs
    while len(pairs) < count:
        pairs.append(synthetic_pair(size[1], size[0], seed=len(pairs)))
    return pairs


def write_frame_folders(scratch: Path, size: tuple[int, int]) -> tuple[str, str]:
    """``load_frames(size)`` as numbered PNGs in scratch/ir and scratch/vis; returns their file:// URIs
    (a looping file source for a pipeline under test)."""
    from sage_edge.imageio import write_image

    for i, (ir, vis) in enumerate(load_frames(size)):
        write_image(scratch / "ir" / f"{i:03d}.png", ir)
        write_image(scratch / "vis" / f"{i:03d}.png", vis)
    return f"file://{scratch}/ir", f"file://{scratch}/vis"


def resolve_onnx(spec: str | None, scratch: Path) -> Path:
    """The model to time: ``spec``, else the bundled default, else the published student exported here."""
    from sage_edge.errors import SageEdgeError
    from sage_edge.zoo import resolve_model

    for candidate in ([spec] if spec else ["default"]):
        try:
            return resolve_model(candidate, want="onnx")
        except SageEdgeError as exc:
            if spec:
                raise
            print(f"note: {exc}; exporting the published student instead", file=sys.stderr)
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.models.checkpoint import load_student

    out = scratch / "sage_official_uint8.onnx"
    export_onnx(load_student(REPO.parent / "shared" / "data" / "sage_official" / "checkpoints.pt"), out,
                io_kind="uint8")
    return out


def bare_fps(model: Path, backend: str, frames, count: int, warmup: int) -> float:
    from sage_edge.runtime.backend import open_backend
    from sage_edge.runtime.fuser import Fuser

    with open_backend(model, backend) as engine:
        fuser = Fuser(engine)
        for i in range(warmup):
            fuser.fuse(*frames[i % len(frames)])
        start = time.perf_counter()
        for i in range(count):
            fuser.fuse(*frames[i % len(frames)])
        return count / (time.perf_counter() - start)


def pipeline_fps(model: Path, backend: str, ir, vis, count: int, warmup: int) -> tuple[float, object]:
    """Steady-state pipeline FPS: frames after the warm-up ones, over the time between their outputs."""
    from sage_edge.runtime.pipeline import Pipeline

    pipe = Pipeline(ir, vis, model=str(model), backend=backend, loop=True, frames=warmup + count,
                    log=lambda message: None)
    times: list[float] = []

    class Clock:  # an output that only records when each frame leaves the pipeline
        uri = "clock://"

        def write(self, frame):
            times.append(time.perf_counter())

        def close(self):
            pass

        abort = close

    pipe.outputs.append(Clock())
    summary = pipe.run()
    steady = times[warmup:]
    return (len(steady) - 1) / (steady[-1] - steady[0]), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ONNX model or engine (default: the bundled default, else sage-official)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=int, default=200, help="timed frames per measurement")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", default="320x256", help="WxH of the frames")
    args = parser.parse_args()
    from sage_edge.imageio import write_image
    from sage_edge.runtime.pipeline import parse_size
    from sage_edge.runtime.sources import ArraySource

    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="sage-bench-pipeline-") as tmp:
        scratch = Path(tmp)
        model = resolve_onnx(args.model, scratch)
        frames = load_frames(size)
        for i, (ir, vis) in enumerate(frames):
            write_image(scratch / "ir" / f"{i:03d}.png", ir)
            write_image(scratch / "vis" / f"{i:03d}.png", vis)
        rows = {"bare": [], "pipeline (PNG files)": [], "pipeline (memory)": []}
        summary = None
        for _ in range(args.rounds):
            rows["bare"].append(bare_fps(model, args.backend, frames, args.frames, args.warmup))
            fps, summary = pipeline_fps(model, args.backend, f"file://{scratch}/ir", f"file://{scratch}/vis",
                                        args.frames, args.warmup)
            rows["pipeline (PNG files)"].append(fps)
            fps, _ = pipeline_fps(model, args.backend, ArraySource([f[0] for f in frames], loop=True),
                                  ArraySource([f[1] for f in frames], loop=True), args.frames, args.warmup)
            rows["pipeline (memory)"].append(fps)
    bare = statistics.median(rows["bare"])
    print(f"model {model.name}, backend {summary.backend}, frames {size[0]}x{size[1]}, "
          f"{args.frames} timed frames x {args.rounds} rounds")
    for name, values in rows.items():
        med = statistics.median(values)
        ratio = "" if name == "bare" else f"   ratio to bare {med / bare:.3f}"
        print(f"  {name:22s} {med:8.1f} FPS  (rounds: {', '.join(f'{v:.1f}' for v in values)}){ratio}")
    t = summary.timings
    print("  last file-pipeline stages (p50 ms): " + ", ".join(
        f"{s} {t[s]['p50']:.2f}" for s in ("capture_wait", "preprocess", "inference", "postprocess", "output")))
    print(f"goal: pipeline / bare >= 0.95 -> {'met' if statistics.median(rows['pipeline (PNG files)']) / bare >= 0.95 else 'NOT met'} "
          "(file sources)")


if __name__ == "__main__":
    main()
