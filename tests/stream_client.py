"""A stream receiver for the live tests: decodes a stream with OpenCV (GStreamer or FFmpeg) and reports it.

    python tests/stream_client.py SOURCE --api gstreamer|ffmpeg [--frames N] [--timeout S] [--save DIR]

SOURCE is a GStreamer pipeline ending in appsink (``--api gstreamer``) or a URL/file (``--api ffmpeg``).
Prints ``open`` once the capture is open, then one JSON line when done: ``frames`` decoded, ``sizes`` seen
(``[width, height]``), ``first_s`` (seconds from open to the first frame), ``end`` (``count``: got --frames;
``eos``: the stream ended; ``timeout``). ``--save DIR`` keeps the first and the last frame as PNGs.
It runs in its own process so that a read that blocks (a stream that never starts) cannot hang the tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import cv2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--api", choices=("gstreamer", "ffmpeg"), default="gstreamer")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args(argv)
    api = cv2.CAP_GSTREAMER if args.api == "gstreamer" else cv2.CAP_FFMPEG
    report = {"frames": 0, "sizes": [], "first_s": None, "end": "timeout"}
    done = threading.Event()

    def finish() -> None:  # print once, from whichever comes first: the reader or the timer
        if not done.is_set():
            done.set()
            print(json.dumps(report), flush=True)

    def give_up() -> None:  # a read that never returns: report what we have and leave, whatever happens
        try:
            finish()
        finally:
            _exit(0)

    timer = threading.Timer(args.timeout, give_up)
    timer.daemon = True
    timer.start()
    cap = cv2.VideoCapture(args.source, api)
    if not cap.isOpened():
        report["end"] = "not opened"
        finish()
        return
    print("open", flush=True)
    start = time.monotonic()
    last = None
    while report["frames"] < args.frames and not done.is_set():
        ok, frame = cap.read()
        if not ok:
            report["end"] = "eos"
            break
        if report["first_s"] is None:
            report["first_s"] = round(time.monotonic() - start, 3)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(args.save / "first.png"), frame)
        size = [int(frame.shape[1]), int(frame.shape[0])]
        if size not in report["sizes"]:
            report["sizes"].append(size)
        report["frames"] += 1
        last = frame
    else:
        if report["frames"] >= args.frames:
            report["end"] = "count"
    if args.save and last is not None:
        cv2.imwrite(str(args.save / "last.png"), last)
    finish()
    _exit(0)  # skip OpenCV/GStreamer teardown of a live pipeline (it can block or print GStreamer-CRITICAL)


def _exit(code: int) -> None:
    import os

    try:
        sys.stdout.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    main()
