"""Soak: many frames through the `run` pipeline (file sources, --loop); no memory, thread or handle leaks.

    python benchmarks/soak.py [--frames 10000] [--size 160x128] [--model M] [--warmup 1000]

Runs ``Pipeline`` on two looping PNG image sequences with a video file output and an HTTP output
(no viewer), sampling the process's RSS, thread count and open file descriptors while it runs. After the
warm-up frames, RSS may grow at most 5 %; after the run, threads and file descriptors are back to what they
were before it. Prints the numbers and PASS/FAIL (exit 1 on FAIL).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import resolve_onnx, write_frame_folders  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, help="frames before the RSS baseline (default: 10 %%, at least 100)")
    parser.add_argument("--size", default="160x128")
    parser.add_argument("--model")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-growth", type=float, default=5.0, help="allowed RSS growth after warm-up, %%")
    args = parser.parse_args()
    from sage_edge.runtime.pipeline import Pipeline, parse_size

    warmup = args.warmup if args.warmup is not None else max(100, args.frames // 10)
    if warmup >= args.frames:
        parser.error("--warmup must be smaller than --frames")
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="sage-soak-") as tmp:
        scratch = Path(tmp)
        model = resolve_onnx(args.model, scratch)
        ir_uri, vis_uri = write_frame_folders(scratch, size)
        outputs = [f"file://{scratch}/soak.avi", "http://127.0.0.1:0"]
        # one short run first: libraries open their one-time files (ONNX Runtime's telemetry db) and threads
        Pipeline(ir_uri, vis_uri, model=str(model), backend=args.backend,
                 loop=True, frames=20, outputs=[f"file://{scratch}/warm.avi", "http://127.0.0.1:0"],
                 log=lambda message: None).run()
        threads_before, fds_before = threading.active_count(), open_fds()
        pipe = Pipeline(ir_uri, vis_uri, model=str(model), backend=args.backend,
                        loop=True, frames=args.frames, outputs=outputs,
                        log=lambda message: None)
        samples: list[tuple[int, int, int, int]] = []  # frames, rss, threads, fds
        done = threading.Event()

        def monitor() -> None:
            while not done.wait(0.5):
                samples.append((pipe.frames, rss_bytes(), threading.active_count(), open_fds()))

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        start = time.monotonic()
        try:
            from tqdm import tqdm

            tqdm.monitor_interval = 0  # no tqdm monitor thread: it would count as a leaked thread
            bar = tqdm(total=args.frames, unit="frame", desc="soak", mininterval=2.0)

            def progress() -> None:
                last = 0
                while not done.wait(1.0):
                    bar.update(pipe.frames - last)
                    last = pipe.frames
                bar.update(pipe.frames - last)

            reporter = threading.Thread(target=progress, daemon=True)
            reporter.start()
            summary = pipe.run()
        finally:
            done.set()
            watcher.join()
            reporter.join()
        bar.close()
        wall = time.monotonic() - start
        time.sleep(0.5)  # let exiting threads finish
        threads_after, fds_after = threading.active_count(), open_fds()
        video_frames = None
        import cv2

        cap = cv2.VideoCapture(str(scratch / "soak.avi"))
        video_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
    after = [s for s in samples if s[0] >= warmup]
    if len(after) < 2:
        print(f"too few samples after warm-up ({len(after)}); run more frames", file=sys.stderr)
        return 1
    base_rss, end_rss, peak_rss = after[0][1], after[-1][1], max(s[1] for s in after)
    growth = 100.0 * (end_rss - base_rss) / base_rss
    peak_growth = 100.0 * (peak_rss - base_rss) / base_rss
    max_threads = max(s[2] for s in samples)
    run_fds = [s[3] for s in after]
    print(summary.format())
    print(f"soak: {summary.frames} frames of {size[0]}x{size[1]} in {wall:.0f} s; video holds {video_frames} frames")
    print(f"RSS after warm-up ({warmup} frames) {base_rss / 2**20:.1f} MiB -> end {end_rss / 2**20:.1f} MiB "
          f"({growth:+.2f} %), peak {peak_rss / 2**20:.1f} MiB ({peak_growth:+.2f} %)")
    print(f"threads: before {threads_before}, during max {max_threads}, after {threads_after}; "
          f"fds: before {fds_before}, during {min(run_fds)}..{max(run_fds)}, after {fds_after}")
    # files open for a moment (PNGs being decoded) make the count flicker by a few; a leak makes it climb
    quarter = max(1, len(run_fds) // 4)
    fds_trend_ok = max(run_fds[-quarter:]) <= max(run_fds[:quarter]) + 2
    ok = (growth <= args.max_growth and threads_after == threads_before and fds_after == fds_before
          and summary.frames == args.frames and video_frames == args.frames and fds_trend_ok)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
