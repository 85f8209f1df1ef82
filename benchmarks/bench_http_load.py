"""The HTTP output under 200 hostile connections for 60 s: the pipeline's FPS against the same run with no
viewer, peak threads / RSS / file descriptors, frames delivered to the normal viewers, error answers.

    python benchmarks/bench_http_load.py [--seconds 60] [--rounds 2] [--size 160x128] [--model M]
                                         [--viewers 4 --slow 2 --stalled 2 --busy 12 --idle 100 --malformed 80]

The pipeline fuses two looping PNG sequences with the real model (as ``soak.py``) into an http:// output with
a credential and the default limits (8 viewers, 64 pending connections, 10 s request and stall timeouts).
The load (``tests/http_load.py``, 127.0.0.1 only) runs in its own process (``--client-nice`` can lower its
priority), standing in for the remote machines it would be on a Jetson; its CPU time and the server thread's
are reported, and so is the CPU a fused frame costs this process with and without the load: on a shared
machine FPS moves with everyone else's load, CPU per frame much less.
One pipeline runs throughout, in windows: quiet, loaded, quiet, loaded, quiet (``--rounds`` loaded ones), so
machine load hits both alike; each loaded window's FPS is divided by the mean of the quiet windows on either
side (goal >= 0.95, median over windows; the spread is printed). Exit 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_pipeline import resolve_onnx, write_frame_folders  # noqa: E402
import http_load  # noqa: E402  (tests/http_load.py: the load client and the measuring harness)

USER, PASSWORD = "bench", "load-test-only"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of fusing before the first window")
    parser.add_argument("--rounds", type=int, default=2, help="loaded windows (each between two quiet ones)")
    parser.add_argument("--size", default="160x128")
    parser.add_argument("--model")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-viewers", type=int, default=8)
    parser.add_argument("--client-nice", type=int, default=0,
                        help="the load client's niceness above ours (a lower priority makes its timings unreliable)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    mix = {"viewers": 4, "slow": 2, "stalled": 2, "busy": 12, "idle": 100, "malformed": 80}
    for kind, default in mix.items():
        parser.add_argument(f"--{kind}", type=int, default=default)
    args = parser.parse_args()
    if args.seconds > 600 or args.rounds > 5:
        parser.error("bounded: at most 600 s per window and 5 rounds")
    from sage_edge.runtime.credentials import Credentials
    from sage_edge.runtime.http_output import HttpSettings
    from sage_edge.runtime.pipeline import Pipeline, parse_size

    size = parse_size(args.size)
    settings = HttpSettings(credentials=Credentials(USER, PASSWORD), max_viewers=args.max_viewers)
    load_args = ["--user", USER, "--password", PASSWORD] + [
        item for kind in mix for item in (f"--{kind}", str(getattr(args, kind)))]
    connections = sum(getattr(args, kind) for kind in mix)
    windows = [("none", args.seconds), ("load", args.seconds)] * args.rounds + [("none", args.seconds)]
    with tempfile.TemporaryDirectory(prefix="sage-bench-http-") as tmp:
        scratch = Path(tmp)
        model = resolve_onnx(args.model, scratch)
        ir_uri, vis_uri = write_frame_folders(scratch, size)

        def make_pipeline() -> Pipeline:
            return Pipeline(ir_uri, vis_uri, model=str(model), backend=args.backend,
                            loop=True, duration=24 * 3600, outputs=["http://127.0.0.1:0"], http=settings,
                            log=lambda message: None)

        # a short first run: one-time imports, ONNX Runtime's files and threads are not counted as growth
        http_load.measure(make_pipeline, [("none", 1.0)], load_args, warmup_s=0.5)
        result = http_load.measure(make_pipeline, windows, load_args, args.client_nice, warmup_s=args.warmup)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return report(result, args, connections, settings)


def report(result: dict, args: argparse.Namespace, connections: int, settings) -> int:
    windows = result["windows"]
    ratios, cost_ratios = [], []
    for i, w in enumerate(windows):
        if w["mode"] == "load":  # against the mean of the quiet windows on either side
            ratios.append(w["fps"] / ((windows[i - 1]["fps"] + windows[i + 1]["fps"]) / 2))
            quiet_cost = (windows[i - 1]["pipeline_cpu_ms_per_frame"] + windows[i + 1]["pipeline_cpu_ms_per_frame"]) / 2
            cost_ratios.append(quiet_cost / (w["pipeline_cpu_ms_per_frame"] + w["server_cpu_ms_per_frame"]))
    print(f"{connections} connections, {args.rounds} loaded windows of {args.seconds:.0f} s between quiet ones, "
          f"one pipeline, {args.size} frames; limits: {settings.max_viewers} viewers, {settings.max_pending} pending, "
          f"timeouts {settings.request_timeout_s:.0f}/{settings.stall_timeout_s:.0f} s")
    print("  " + result["summary"].splitlines()[1])
    for w in windows:
        print(f"  {w['mode']:4s} {w['fps']:6.2f} FPS, {w['pipeline_cpu_ms_per_frame']:6.1f} + "
              f"{w['server_cpu_ms_per_frame']:4.1f} ms CPU/frame (pipeline + server)  peak threads "
              f"{w['peak']['py_threads']} Python, {w['peak']['threads']} OS  sockets {w['peak']['sockets']} fds "
              f"{w['peak']['fds']} (at end {w['last']['fds']})  RSS MiB {w['peak']['rss']:.1f} (at end "
              f"{w['last']['rss']:.1f})  server thread {100 * w['server_cpu_s'] / w['seconds']:.1f} % of a core, "
              f"load client CPU {w['client_cpu_s']:.2f} s")
    med = statistics.median(ratios)
    print(f"  FPS ratio loaded/quiet: median {med:.3f}, windows {', '.join(f'{x:.3f}' for x in ratios)} "
          f"(spread {min(ratios):.3f}..{max(ratios):.3f})")
    print(f"  CPU cost ratio, quiet/loaded per frame (the FPS ratio a fixed CPU budget would give): median "
          f"{statistics.median(cost_ratios):.3f}, windows {', '.join(f'{x:.3f}' for x in cost_ratios)}")
    quiet = [w for w in windows if w["mode"] == "none"]
    quiet_threads = max(w["peak"]["py_threads"] for w in quiet)
    quiet_sockets = max(w["peak"]["sockets"] for w in quiet)
    checks = {
        "fps ratio >= 0.95 (median)": med >= 0.95,
        "stopped by the bench, no error": result["stop_reason"] == "measured",
        "no internal error in the server": result["http"]["internal_errors"] == 0,
        "Python threads and fds after the run = before": (
            result["after"]["py_threads"] == result["before"]["py_threads"]
            and result["after"]["fds"] == result["before"]["fds"]),
    }
    for i, w in enumerate(windows):
        if w["mode"] != "load":
            continue
        c = w["client"]
        if c is None:
            checks[f"window {i}: the load client ran"] = False
            continue
        viewer_frames = [v["frames"] for v in c["viewers"]]
        print(f"  window {i}: normal viewers got {', '.join(map(str, viewer_frames))} frames ({w['frames']} fused in "
              f"the window), longest gap {max(v['max_gap_s'] for v in c['viewers']):.2f} s; slow readers "
              f"{[v['frames'] for v in c['slow']]} frames, dropped {[v['dropped'] for v in c['slow']]}")
        print(f"    stalled readers reset {c['stalled']['closed_by_server']}x, after {c['stalled']['lifetime_min_s']}.."
              f"{c['stalled']['lifetime_max_s']} s; over-limit viewers {c['busy']['statuses']} (answer p50 "
              f"{c['busy']['latency_p50_s']} s, max {c['busy']['latency_max_s']} s); idle sockets closed "
              f"{c['idle']['closed_by_server']}x after {c['idle']['lifetime_min_s']}..{c['idle']['lifetime_max_s']} s")
        print(f"    malformed: {c['malformed']['sent']} sent, {c['malformed']['answered']} answered "
              f"{c['malformed']['statuses']}, wrong code {c['malformed']['wrong']}; reset unanswered while the "
              f"server was full: {c['malformed']['unanswered']} malformed, {c['connect_errors']} at connect; peak "
              f"open {c['peak_open']}; server thread {w['server_wakeups_per_s']:.0f} context switches/s")
        before, after = windows[i - 1], windows[i + 1]
        checks.update({
            f"window {i}: viewers never dropped, whole JPEGs, >= 50 % of the frames": all(
                v["dropped"] == 0 and v["bad_parts"] == 0 and v["frames"] >= 0.5 * w["frames"] for v in c["viewers"]),
            f"window {i}: slow readers kept": all(v["dropped"] == 0 and v["frames"] > 0 for v in c["slow"]),
            f"window {i}: stalled readers reset": c["stalled"]["closed_by_server"] > 0,
            f"window {i}: every answered malformed request got its code": c["malformed"]["wrong"] == {},
            f"window {i}: over-limit viewers answered at once (p50 < 0.25 s)": (c["busy"]["latency_p50_s"] or 0) < 0.25,
            f"window {i}: peak Python threads no more than in quiet windows": w["peak"]["py_threads"] <= quiet_threads,
            # + 1: a connection being accepted while the table is full
            f"window {i}: sockets bounded by the limits":
                w["peak"]["sockets"] <= quiet_sockets + settings.max_viewers + settings.max_pending + 1,
            f"window {i}: fds and Python threads back in the next quiet window": (
                after["last"]["fds"] == before["last"]["fds"]
                and after["last"]["py_threads"] == before["last"]["py_threads"]),
            f"window {i}: RSS back within 8 MiB in the next quiet window":
                after["last"]["rss"] - before["last"]["rss"] <= 8,
        })
    h = result["http"]
    print(f"  server totals: accepted {h['accepted']}, requests {h['requests']}, evicted {h['evicted']}, timed out "
          f"{h['timed_out']}, stalled {h['stalled']}, busy {h['busy']}, unauthorized {h['unauthorized']}, frames sent "
          f"{h['frames_sent']}, skipped {h['frames_skipped']}, internal errors {h['internal_errors']}")
    print(f"  process before / after the pipeline: Python threads {result['before']['py_threads']} / "
          f"{result['after']['py_threads']}, OS threads {result['before']['threads']} / {result['after']['threads']}, "
          f"fds {result['before']['fds']} / {result['after']['fds']}, RSS {result['before']['rss']:.1f} / "
          f"{result['after']['rss']:.1f} MiB")
    for name, ok in checks.items():
        if not ok:
            print(f"  FAILED: {name}")
    print("PASS" if all(checks.values()) else "FAIL")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
