"""A small RTSP camera server for the live tests: GStreamer's RTSP server (PyGObject) on 127.0.0.1.

    python tests/rtsp_server.py --port PORT --fps 10 --epoch T --mount ir=DIR --mount vis=DIR [--frames N]

Each mount streams the PNG frames of its directory (sorted by name, looped) as H.264, like an IP camera.
All mounts share one clock: at wall-clock time t every mount shows frame ``floor((t - epoch) * fps) % count``,
so two cameras that show frames made from the same scene show the same instant, and a server restarted with
the same ``--epoch`` continues the same timeline (as a camera that was unplugged would). ``--port 0`` picks a
free port. Prints ``ready PORT`` on stdout when it accepts connections; SIGTERM/SIGINT stop it.

This is the test-appsrc pattern from gst-rtsp-server's examples: the media pipeline is
``appsrc ! videoconvert ! x264enc ! rtph264pay name=pay0`` and a thread pushes frames into every prepared
media's appsrc. Nothing here is sage-edge code: the tests point ``sage-edge run`` at it as at a camera.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import gi
import numpy as np

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class Mount:
    """One camera: its frames and the appsrc of each media currently prepared for it."""

    def __init__(self, name: str, directory: Path, fps: float) -> None:
        paths = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".png")
        if not paths:
            raise SystemExit(f"{directory}: no PNG frames")
        self.name = name
        self.frames = [np.ascontiguousarray(cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in paths]
        h, w = self.frames[0].shape[:2]
        self.caps = Gst.Caps.from_string(f"video/x-raw, format=BGR, width={w}, height={h}, framerate={int(fps)}/1")
        self.appsrcs: list = []
        self.lock = threading.Lock()

    def factory(self, fps: float) -> GstRtspServer.RTSPMediaFactory:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true ! videoconvert ! video/x-raw, format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max={int(fps)} "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )")
        factory.set_shared(True)
        factory.connect("media-configure", self._configure)
        return factory

    def _configure(self, _factory, media) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        appsrc.set_property("caps", self.caps)
        with self.lock:
            self.appsrcs.append(appsrc)
        media.connect("unprepared", lambda _media: self._forget(appsrc))

    def _forget(self, appsrc) -> None:
        with self.lock:
            if appsrc in self.appsrcs:
                self.appsrcs.remove(appsrc)

    def push(self, index: int) -> None:
        with self.lock:
            targets = list(self.appsrcs)
        if targets:
            buffer = Gst.Buffer.new_wrapped(self.frames[index % len(self.frames)].tobytes())
            for appsrc in targets:
                appsrc.emit("push-buffer", buffer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--epoch", type=float, default=None, help="wall-clock time of frame 0 (default: now)")
    parser.add_argument("--mount", action="append", required=True, metavar="NAME=DIR")
    args = parser.parse_args(argv)
    Gst.init(None)
    epoch = time.time() if args.epoch is None else args.epoch
    mounts = [Mount(name, Path(directory), args.fps) for name, _, directory in (m.partition("=") for m in args.mount)]

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(str(args.port))
    for mount in mounts:
        server.get_mount_points().add_factory("/" + mount.name, mount.factory(args.fps))
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    stop = threading.Event()

    def pump() -> None:
        period = 1.0 / args.fps
        index = int((time.time() - epoch) * args.fps)
        while not stop.is_set():
            wait = epoch + (index + 1) * period - time.time()
            if wait > 0 and stop.wait(wait):
                break
            index = int((time.time() - epoch) * args.fps)
            for mount in mounts:
                mount.push(index)

    def quit_loop() -> bool:
        stop.set()
        loop.quit()
        return GLib.SOURCE_REMOVE

    for sig in (signal.SIGTERM, signal.SIGINT):  # delivered inside the GLib loop (Python handlers would wait)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, quit_loop)
    threading.Thread(target=pump, daemon=True).start()
    print(f"ready {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    sys.exit(main())
