"""Frame sources for ``sage-edge run``: cameras, streams and files behind one small interface.

URIs follow jetson-inference's conventions:

    csi://N              CSI camera N through GStreamer ``nvarguscamerasrc`` (Jetson; needs OpenCV with GStreamer)
    v4l2:///dev/videoN   USB/UVC camera (V4L2); with ``ir_format="y16"`` the 'Y16 ' FOURCC is requested and
                         OpenCV's RGB conversion is turned off, so 16-bit radiometric counts arrive intact
    rtsp://HOST/...      network stream (FFmpeg, or GStreamer when OpenCV has it)
    file://PATH          a video file, an image directory (sorted by name) or a glob (``file://frames/*.png``)
    gst://PIPELINE       a raw GStreamer pipeline ending in ``appsink``
    PATH                 a bare path is ``file://PATH`` (``/dev/videoN`` is ``v4l2://``)

Every frame is stamped: live sources with the monotonic capture time
(``time.monotonic()`` as the frame is read), files with their media timestamp
(video: the container's presentation time; image sequences: index / fps), so
that pairing is deterministic for files. ``SourceThread`` runs one source on its
own thread and reopens a live source that fails, with back-off (0.1 s doubling
to at most 0.5 s, so a device that comes back is used again within about half a second), and gives up with one line
when it has not come back within ``reconnect_timeout`` seconds (``--reconnect-timeout``, default 30).

FFmpeg's own log lines (e.g. ``Connection refused`` while a stream server is down) are silenced
(``OPENCV_FFMPEG_LOGLEVEL=-8`` unless the user set it): the reconnect loop reports each failure in one line of
our own log instead, and an ``rtsp://`` server that refuses the connection is found by a TCP probe before
FFmpeg is asked to open it.

Tests and benchmarks feed frames through the same interface (``Source``;
``ArraySource`` replays arrays held in memory).
"""
from __future__ import annotations

import glob
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sage_edge.errors import SageEdgeError, first_line
from sage_edge.imageio import IMAGE_EXTENSIONS, read_image

SCHEMES = ("csi://", "v4l2://", "rtsp://", "rtsps://", "file://", "gst://")
IR_FORMATS = ("auto", "gray8", "y16")
DEFAULT_CSI_SIZE = (1280, 720)
DEFAULT_FPS = 30.0
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 0.5  # a camera or stream that returns is tried again within half a second
LOG_EVERY_S = 10.0  # while a source stays away, "still unavailable" is logged at most this often
RECONNECT_TIMEOUT_S = 30.0  # a live source that has not come back after this long ends the run (0: never)
PROBE_TIMEOUT_S = 2.0
# FFmpeg's defaults read ~3 s of a new RTSP stream to learn its format (the SDP's SPS/PPS already say it):
# 3 s more to open, and a 3-s backlog of stale frames. Users' own OPENCV_FFMPEG_CAPTURE_OPTIONS win.
RTSP_FFMPEG_OPTIONS = "analyzeduration;0|probesize;32"
RTSP_TIMEOUT_MS = 5000  # an RTSP stream that does not open, or sends nothing, for 5 s has failed (OpenCV: 30 s)
_FFMPEG_OPTIONS_LOCK = threading.Lock()  # the options travel through the environment: one open at a time
CATCH_UP_MAX_S = 5.0  # longest we skip an RTSP stream's start-up backlog
CATCH_UP_FAST_S = 0.005  # without usable timestamps: a read this fast came from FFmpeg's buffer


class SourceFormatError(SageEdgeError):
    """A source delivers frames we cannot use (pixel format, channels): fatal at once, never retried."""


@dataclass
class Frame:
    """One captured frame. ``timestamp``: pairing time in seconds; ``arrival``: monotonic time it was read."""

    image: np.ndarray
    timestamp: float
    arrival: float
    index: int


class Source(ABC):
    """A camera, stream or file. ``read`` returns the next frame, ``None`` at the end of a file
    (or when a live device stops delivering), or raises on failure."""

    uri: str = "source"
    live: bool = True
    #: nominal frame period in seconds when known (file fps, requested camera fps); else measured by the pairer
    period: float | None = None

    def open(self) -> None:
        """(Re)open the device or file. Raise ``SageEdgeError`` (one line) if it cannot be opened."""

    @abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:
        """Release the device. Idempotent."""

    def _frame(self, image: np.ndarray, timestamp: float | None, index: int) -> Frame:
        now = time.monotonic()
        return Frame(image, now if timestamp is None else timestamp, now, index)


# --------------------------------------------------------------------------------------------- OpenCV sources


def opencv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's log off the terminal (OpenCV reads this once, before its first FFmpeg capture).

    ``OPENCV_FFMPEG_LOGLEVEL`` set by the user wins (e.g. 16 to see FFmpeg's errors while debugging a camera).
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def probe_tcp(uri: str, host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise one line if nothing accepts TCP connections at host:port (a stream server that is down)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SageEdgeError(f"{uri}: cannot connect to {host}:{port} ({reason.lower()})") from None


def _rtsp_address(uri: str) -> tuple[str, int]:
    """rtsp://[user:pass@]host[:port]/path -> (host, port); 554 by default (322 for rtsps)."""
    authority = uri.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    if authority.startswith("["):  # [IPv6]:port
        host, _, port = authority[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = authority.partition(":")
    default = 322 if uri.lower().startswith("rtsps://") else 554
    if port and not port.isdigit():
        raise SageEdgeError(f"{uri}: bad port '{port}'")
    return host, int(port) if port else default


def require_gstreamer(uri: str) -> None:
    if not opencv_has_gstreamer():
        raise SageEdgeError(
            f"{uri}: needs OpenCV built with GStreamer (on a Jetson use JetPack's python3-opencv; "
            "pip's opencv wheels have no GStreamer)"
        )


def csi_pipeline(sensor_id: int, size: tuple[int, int], fps: float) -> str:
    """The nvarguscamerasrc pipeline jetson-inference uses for csi://N, ending in a BGR appsink."""
    w, h = size
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={w}, height={h}, framerate={int(round(fps))}/1, format=NV12 ! "
        "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


class CaptureSource(Source):
    """Any ``cv2.VideoCapture`` target: camera, stream, pipeline or video file."""

    def __init__(
        self,
        uri: str,
        target: str | int,
        api: int,
        live: bool,
        props: Sequence[tuple[int, float]] = (),
        y16: bool = False,
        loop: bool = False,
        period: float | None = None,
        probe: tuple[str, int] | None = None,
    ) -> None:
        self.uri, self.target, self.api, self.live = uri, target, api, live
        self.props, self.y16, self.loop, self.period = list(props), y16, loop, period
        self.probe = probe  # (host, port) that must accept TCP before FFmpeg is asked to open the stream
        self._cap = None
        self._index = 0
        self._offset = 0.0  # media-time offset added on each --loop pass, so stamps keep increasing
        self._last_ts = -1.0
        self._size: tuple[int, int] | None = None
        self._catch_up = False  # a live network stream just opened: skip what FFmpeg buffered while probing

    def open(self) -> None:
        import cv2

        self.close()
        if self.probe is not None:
            probe_tcp(self.uri, *self.probe)
        if self.api == cv2.CAP_FFMPEG:
            quiet_ffmpeg()
        cap = self._open_capture()
        for prop, value in self.props:
            cap.set(prop, value)
        if not cap.isOpened():
            cap.release()
            raise SageEdgeError(f"{self.uri}: cannot open (no such device, stream or file, or it is busy)")
        self._cap = cap
        self._catch_up = self.live and self.probe is not None
        if not self.live:
            fps = cap.get(cv2.CAP_PROP_FPS)
            if self.period is None and fps and 0 < fps < 1000:
                self.period = 1.0 / fps
            self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _open_capture(self):
        import cv2

        if self.api != cv2.CAP_FFMPEG or self.probe is None:
            return cv2.VideoCapture(self.target, self.api)
        params: list[int] = []
        if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):  # OpenCV 4.5.3+
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, RTSP_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, RTSP_TIMEOUT_MS]
        with _FFMPEG_OPTIONS_LOCK:  # OpenCV reads them in open(): set them for this network stream only
            if "OPENCV_FFMPEG_CAPTURE_OPTIONS" in os.environ:  # the user's (ours never outlives the lock)
                return cv2.VideoCapture(self.target, self.api, params)
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = RTSP_FFMPEG_OPTIONS
            try:
                return cv2.VideoCapture(self.target, self.api, params)
            finally:
                del os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]

    def _decode_y16(self, image: np.ndarray) -> np.ndarray:
        """With CAP_PROP_CONVERT_RGB off, OpenCV hands Y16 over as uint16 H x W or as a raw byte buffer."""
        if image.dtype == np.uint16:
            return image[..., 0] if image.ndim == 3 else image
        import cv2

        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if image.dtype == np.uint8 and image.size == 2 * w * h:
            return np.frombuffer(np.ascontiguousarray(image).tobytes(), "<u2").reshape(h, w)
        raise SageEdgeError(f"{self.uri}: camera did not deliver Y16 frames ({image.shape} {image.dtype}); "
                            "try --ir-format gray8")

    def _check_gstreamer_frame(self, image: np.ndarray) -> None:
        """OpenCV hands some appsink formats over raw: planar YUV (I420, NV12) as one (H * 3/2) x W plane,
        YUY2 as 2 channels. Fusing those would silently give garbage: say what to put before appsink."""
        import cv2

        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        channels = 1 if image.ndim == 2 else image.shape[2]
        if channels in (1, 3, 4) and (w <= 0 or h <= 0 or image.shape[:2] == (h, w)):
            return
        raise SourceFormatError(
            f"{self.uri}: delivers {image.shape[1]}x{image.shape[0]} frames with {channels} channel(s) for a "
            f"{w}x{h} stream (a YUV format such as I420, NV12 or YUY2?); end the pipeline with "
            "'videoconvert ! video/x-raw,format=BGR ! appsink' (or format=GRAY8 / GRAY16_LE for IR)")

    def _read_live_edge(self) -> tuple[bool, np.ndarray | None]:
        """The first frame of a network stream that is live, not one FFmpeg buffered while it probed the stream.

        Opening an RTSP stream, FFmpeg reads (and keeps) a few seconds of it to learn its format; read back at
        once and stamped "now", those frames would be paired with the other camera's current frames, seconds
        apart. Frames arriving faster than their own timestamps advance are that backlog: skip them, until a
        read has to wait for the network (at most ``CATCH_UP_MAX_S``).
        """
        import cv2

        deadline = time.monotonic() + CATCH_UP_MAX_S
        previous = None
        while True:
            started = time.monotonic()
            if not self._cap.grab():
                return False, None
            now = time.monotonic()
            media = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if previous is not None:
                step = media - previous
                waited = now - started
                if (waited >= 0.5 * step if step > 0 else waited >= CATCH_UP_FAST_S) or now >= deadline:
                    return self._cap.retrieve()
            previous = media

    def read(self) -> Frame | None:
        import cv2

        if self._cap is None:
            self.open()
        if self._catch_up:
            self._catch_up = False
            ok, image = self._read_live_edge()
        else:
            ok, image = self._cap.read()
        if not ok or image is None:
            if self.live or not self.loop or self._index == 0:
                return None
            # --loop: start the file again, continuing the media clock one frame period after the last stamp
            self._offset = self._last_ts + (self.period or 1.0 / DEFAULT_FPS)
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if not ok:
                self.open()
                ok, image = self._cap.read()
                if not ok:
                    return None
        if self.y16:
            image = self._decode_y16(image)
        elif self.api == cv2.CAP_GSTREAMER:
            self._check_gstreamer_frame(image)
        if self.live:
            frame = self._frame(image, None, self._index)
        else:
            ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            media = ms / 1000.0 if ms > 0 or self._index == 0 else None
            if media is None or media + self._offset <= self._last_ts:
                media = (self._last_ts - self._offset) + (self.period or 1.0 / DEFAULT_FPS) if self._last_ts >= 0 else 0.0
            ts = media + self._offset
            self._last_ts = ts
            frame = self._frame(image, ts, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageSequenceSource(Source):
    """Image files (a directory sorted by name, or a glob), stamped index / fps. Depth kept (16-bit IR works)."""

    live = False

    def __init__(self, uri: str, paths: Sequence[Path], fps: float = DEFAULT_FPS, loop: bool = False) -> None:
        if not paths:
            raise SageEdgeError(f"{uri}: no images found")
        self.uri, self.paths, self.loop = uri, list(paths), loop
        self.period = 1.0 / fps
        self._index = 0

    def open(self) -> None:
        self._index = 0

    def read(self) -> Frame | None:
        n = len(self.paths)
        if self._index >= n and not self.loop:
            return None
        image = read_image(self.paths[self._index % n])
        frame = self._frame(image, self._index * self.period, self._index)
        self._index += 1
        return frame


class ArraySource(Source):
    """Frames held in memory (tests, benchmarks). ``timestamps`` default to index * period."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        period: float = 1.0 / DEFAULT_FPS,
        timestamps: Sequence[float] | None = None,
        live: bool = False,
        loop: bool = False,
        uri: str = "array://",
        count: int | None = None,
    ) -> None:
        self.images, self.period, self.live, self.loop, self.uri = list(images), period, live, loop, uri
        self.timestamps = None if timestamps is None else list(timestamps)
        self.count = count  # stop after this many frames (with loop)
        self._index = 0

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        n = len(self.images)
        if (self._index >= n and not self.loop) or (self.count is not None and self._index >= self.count):
            return None
        image = self.images[self._index % n]
        if self.live:
            ts = None
        elif self.timestamps is not None:
            ts = self.timestamps[self._index]
        else:
            ts = self._index * self.period
        frame = self._frame(image, ts, self._index)
        self._index += 1
        return frame


# --------------------------------------------------------------------------------------------- URIs


def _parse_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    return None if size is None else (int(size[0]), int(size[1]))


def _file_source(uri: str, spec: str, loop: bool, fps: float | None) -> Source:
    import cv2

    if any(ch in spec for ch in "*?["):
        paths = [Path(p) for p in sorted(glob.glob(spec)) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        if not paths:
            raise SageEdgeError(f"{uri}: the glob matches no images")
        return ImageSequenceSource(uri, paths, fps or DEFAULT_FPS, loop)
    path = Path(spec)
    if not path.exists():
        raise SageEdgeError(f"{uri}: no such file or directory")
    if path.is_dir():
        paths = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not paths:
            raise SageEdgeError(f"{uri}: the directory holds no images")
        return ImageSequenceSource(uri, paths, fps or DEFAULT_FPS, loop)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSequenceSource(uri, [path], fps or DEFAULT_FPS, loop)
    return CaptureSource(uri, str(path), cv2.CAP_FFMPEG, live=False, loop=loop,
                         period=1.0 / fps if fps else _video_period(path))


def _video_period(path: Path) -> float | None:
    """The frame period a video file's container declares, known before the pipeline opens its outputs
    (so a recording of a 9 fps file plays at 9 fps); None when the file does not say."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return 1.0 / fps if fps and 0 < fps < 1000 else None


def open_source(
    uri: str,
    *,
    ir_format: str = "auto",
    loop: bool = False,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
) -> Source:
    """A ``Source`` for a jetson-inference style URI (not opened yet). Bad URIs fail here with one line.

    ``ir_format`` matters for V4L2 (``y16`` requests 16-bit frames); ``size``/``fps`` are requested from
    cameras (csi, v4l2) and set the frame rate of image sequences.
    """
    import cv2

    if ir_format not in IR_FORMATS:
        raise SageEdgeError(f"unknown IR format '{ir_format}'; choose from {', '.join(IR_FORMATS)}")
    size = _parse_size(size)
    uri = str(uri)
    if uri.startswith("/dev/video"):
        uri = "v4l2://" + uri
    if "://" not in uri:
        return _file_source(uri, uri, loop, fps)
    scheme = uri.split("://", 1)[0].lower() + "://"
    rest = uri.split("://", 1)[1]
    if scheme == "file://":
        return _file_source(uri, rest, loop, fps)
    if scheme == "csi://":
        if not rest.isdigit():
            raise SageEdgeError(f"{uri}: expected csi://N with a sensor number, e.g. csi://0")
        require_gstreamer(uri)
        pipeline = csi_pipeline(int(rest), size or DEFAULT_CSI_SIZE, fps or DEFAULT_FPS)
        return CaptureSource(uri, pipeline, cv2.CAP_GSTREAMER, live=True, period=1.0 / (fps or DEFAULT_FPS))
    if scheme == "v4l2://":
        device = rest if rest.startswith("/") else f"/dev/{rest}" if rest else ""
        if not device.startswith("/dev/video"):
            raise SageEdgeError(f"{uri}: expected v4l2:///dev/videoN")
        if not os.path.exists(device):
            raise SageEdgeError(f"{uri}: no such device {device} (is the camera plugged in? see `v4l2-ctl --list-devices`)")
        props: list[tuple[int, float]] = []
        if ir_format == "y16":
            props += [(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"Y16 ")), (cv2.CAP_PROP_CONVERT_RGB, 0)]
        if size:
            props += [(cv2.CAP_PROP_FRAME_WIDTH, size[0]), (cv2.CAP_PROP_FRAME_HEIGHT, size[1])]
        if fps:
            props.append((cv2.CAP_PROP_FPS, fps))
        return CaptureSource(uri, device, cv2.CAP_V4L2, live=True, props=props, y16=ir_format == "y16",
                             period=None if not fps else 1.0 / fps)
    if scheme in ("rtsp://", "rtsps://"):
        return CaptureSource(uri, uri, cv2.CAP_FFMPEG, live=True, probe=_rtsp_address(uri))
    if scheme == "gst://":
        require_gstreamer(uri)
        if "appsink" not in rest:
            raise SageEdgeError(f"{uri}: a gst:// pipeline must end in appsink")
        return CaptureSource(uri, rest, cv2.CAP_GSTREAMER, live=True)
    raise SageEdgeError(f"{uri}: unsupported source; use {', '.join(s + '...' for s in SCHEMES)}")


# --------------------------------------------------------------------------------------------- threads


class SourceThread(threading.Thread):
    """Reads one source on its own thread and hands each ``Frame`` to ``sink``.

    ``sink(frame)`` returns False when the consumer is stopping. ``sink(None)`` marks the end. A live source
    that raises, or stops delivering, is closed and reopened with back-off; ``state`` says ``ok``,
    ``reconnecting`` or ``ended``, ``reconnects`` counts recoveries, ``error`` holds a fatal error
    (a file source that fails, or a live source that cannot be opened the first time), ``lost`` the one-line
    reason a live source was given up after ``reconnect_timeout`` seconds of failed reopening (0: never).
    """

    def __init__(self, name: str, source: Source, sink: Callable[[Frame | None], bool],
                 stop: threading.Event, log: Callable[[str], None] | None = None,
                 reconnect_timeout: float = RECONNECT_TIMEOUT_S) -> None:
        super().__init__(name=f"sage-source-{name}", daemon=True)
        self.role, self.source, self.sink, self.stop_event = name, source, sink, stop
        self.log = log or (lambda message: None)
        self.reconnect_timeout = reconnect_timeout
        self.lost: SageEdgeError | None = None
        self._failing_since: float | None = None  # first failure since the last delivered frame
        self.state = "starting"
        self.reconnects = 0
        self.failures = 0
        self.frames = 0
        self.error: BaseException | None = None
        self.last_arrival: float | None = None

    def _reopen(self) -> bool:
        """Reopen a failed live source with back-off until it works or we are stopped."""
        self.state = "reconnecting"
        delay = BACKOFF_START_S
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        reason = "no frames"
        logged_at, logged_reason = 0.0, ""
        while not self.stop_event.is_set():
            if self.reconnect_timeout and time.monotonic() - self._failing_since >= self.reconnect_timeout:
                self.lost = SageEdgeError(
                    f"{self.role}: {self.source.uri} did not come back within {self.reconnect_timeout:g} s "
                    f"({reason}); gave up (--reconnect-timeout)")
                return False
            try:
                self.source.close()
            except Exception:
                pass
            if self.stop_event.wait(delay):
                return False
            try:
                self.source.open()
            except Exception as exc:  # still gone: keep trying
                reason = first_line(exc).replace(f"{self.source.uri}: ", "")
                if reason != logged_reason or time.monotonic() - logged_at >= LOG_EVERY_S:
                    self.log(f"{self.role}: {self.source.uri} still unavailable ({reason}); retrying")
                    logged_at, logged_reason = time.monotonic(), reason
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self.reconnects += 1
            self.state = "ok"
            self.log(f"{self.role}: {self.source.uri} reconnected")
            return True
        return False

    def run(self) -> None:
        try:
            try:
                self.source.open()
            except SageEdgeError as exc:
                self.error = exc
                return
            self.state = "ok"
            while not self.stop_event.is_set():
                try:
                    frame = self.source.read()
                    if frame is None and self.source.live:
                        raise SageEdgeError("stopped delivering frames")
                except Exception as exc:
                    if not self.source.live or isinstance(exc, SourceFormatError):
                        self.error = exc if isinstance(exc, SageEdgeError) else SageEdgeError(f"{self.source.uri}: {exc}")
                        return
                    self.failures += 1
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self.log(f"{self.role}: {self.source.uri} failed ({first}); reopening")
                    if not self._reopen():
                        return
                    continue
                if frame is None:
                    return
                self.frames += 1
                self.last_arrival = frame.arrival
                self._failing_since = None
                if not self.sink(frame):
                    return
        finally:
            self.state = "ended" if self.error is None and self.lost is None else "failed"
            try:
                self.source.close()
            except Exception:
                pass
            self.sink(None)
