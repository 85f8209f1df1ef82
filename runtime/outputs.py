"""Outputs for ``sage-edge run``, by URI (jetson-inference's conventions).

    display://0          a window (needs OpenCV with a GUI: ``pip install 'sage-edge[gui]'``)
    file://out.mp4|.avi  a video (mp4v / MJPG); written to a temporary name and renamed into place when closed,
                         so the file is always complete and playable, also after Ctrl-C
    file://DIR/          numbered PNG frames DIR/000000.png, 000001.png, ... (each written atomically)
    rtp://HOST:PORT      H.264 over RTP/UDP through GStreamer (needs OpenCV with GStreamer)
    rtsp://@:8554/name   an RTSP server (``sage_edge.runtime.rtsp_output``: GStreamer's RTSP server through
                         PyGObject, as on JetPack); rtsp://USER:PASSWORD@@:8554/name asks viewers for that credential
    http://@:8080        an MJPEG stream plus a status page (``sage_edge.runtime.http_output``);
                         http://USER:PASSWORD@@:8080 asks every client for that credential

``open_output`` validates a URI at once (one-line error); devices and files are opened on the first frame,
when the frame size is known, so a run that fails before its first frame leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError

if TYPE_CHECKING:
    from sage_edge.runtime.http_output import HttpSettings
    from sage_edge.runtime.credentials import Credentials

VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "MJPG", ".mov": "mp4v"}
OUTPUT_SCHEMES = ("display://", "file://", "rtp://", "rtsp://", "http://")


class Output(ABC):
    uri: str = "output"

    @abstractmethod
    def write(self, frame: np.ndarray) -> None:
        """Write one BGR (or grey) uint8 frame."""

    def close(self) -> None:
        """Flush and release. Idempotent."""

    def abort(self) -> None:
        """Release after a failure: leave no partial file. Defaults to close()."""
        self.close()


def _bgr(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame


def opencv_has_gui() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line.split(":", 1)[1].upper()
    return False


class DisplayOutput(Output):
    def __init__(self, uri: str) -> None:
        if not opencv_has_gui():
            raise SageEdgeError(
                f"{uri}: this OpenCV has no GUI (opencv-python-headless); install one with "
                "pip install 'sage-edge[gui]' (or use JetPack's python3-opencv)"
            )
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SageEdgeError(f"{uri}: no display (DISPLAY is not set); use an http://@:8080 output to watch remotely")
        self.uri = uri
        self.window = f"sage-edge {uri}"
        self.closed_by_user = False
        self._created = False

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if not self._created:
            # a plain window at the frame's size: with a Qt highgui (Debian's OpenCV) the default window has a
            # toolbar and a zoomable view that, under a bare X server, never showed the frame at all
            cv2.namedWindow(self.window, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            self._created = True
        cv2.imshow(self.window, frame)
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.closed_by_user = True

    def close(self) -> None:
        import cv2

        with contextlib.suppress(Exception):
            cv2.destroyWindow(self.window)


class VideoFileOutput(Output):
    """A video file written under a temporary name and renamed into place by ``close``."""

    def __init__(self, uri: str, path: Path, fps: float) -> None:
        self.uri, self.path, self.fps = uri, path, fps
        self.fourcc = VIDEO_CODECS[path.suffix.lower()]
        if path.exists() and path.is_dir():
            raise SageEdgeError(f"{uri}: is a directory")
        self._stack: contextlib.ExitStack | None = None
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, frame: np.ndarray) -> None:
        import cv2

        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=".part" + self.path.suffix))
        self._size = (frame.shape[1], frame.shape[0])
        writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size)
        if not writer.isOpened():
            self._stack.__exit__(SageEdgeError, None, None)
            self._stack = None
            raise SageEdgeError(f"{self.uri}: OpenCV cannot write {self.path.suffix} video ({self.fourcc})")
        self._writer = writer

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            self._open(frame)
        frame = _bgr(frame)
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(frame)
        self.frames += 1

    def _finish(self, ok: bool) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the index / moov atom: the file is playable from here
            self._writer = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            if ok:
                stack.close()  # renames into place
            else:
                stack.__exit__(SageEdgeError, SageEdgeError("aborted"), None)  # removes the temporary file

    def close(self) -> None:
        self._finish(ok=True)

    def abort(self) -> None:
        self._finish(ok=False)


class FrameDirOutput(Output):
    """Numbered PNG frames in a directory."""

    def __init__(self, uri: str, directory: Path, ext: str = ".png") -> None:
        if directory.exists() and not directory.is_dir():
            raise SageEdgeError(f"{uri}: is a file; a frame directory must end in '/'")
        self.uri, self.directory, self.ext = uri, directory, ext
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        from sage_edge.imageio import write_image

        write_image(self.directory / f"{self.frames:06d}{self.ext}", frame)
        self.frames += 1


# --------------------------------------------------------------------------------------------- GStreamer


def _gst_encoder(gop: int = 30) -> str:
    """The best H.264 encoder element present (Jetson's hardware one, else x264), from BGR frames, with a key
    frame at least every ``gop`` frames, so a receiver that joins late or loses packets has a picture again
    within about a second (x264enc's default is 250 frames). x264 runs one thread, so each frame is one slice:
    FFmpeg's RTSP/RTP client (OpenCV, ffplay) decodes the multi-slice frames of x264's sliced threads (what
    tune=zerolatency turns on) as corrupt, smeared pictures; GStreamer's does not."""
    x264 = ("videoconvert ! video/x-raw, format=I420 ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max={gop}")
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        Gst.init(None)
        if Gst.ElementFactory.find("nvv4l2h264enc"):  # nvvidconv takes BGRx, not BGR
            return ("videoconvert ! video/x-raw, format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM), format=I420 ! "
                    f"nvv4l2h264enc insert-sps-pps=true iframeinterval={gop} idrinterval={gop}")
        if Gst.ElementFactory.find("x264enc"):
            return x264
        if Gst.ElementFactory.find("openh264enc"):
            return f"videoconvert ! video/x-raw, format=I420 ! openh264enc gop-size={gop}"
    except Exception:
        pass
    return x264


class GstWriterOutput(Output):
    """A ``cv2.VideoWriter`` on a GStreamer pipeline starting with appsrc."""

    def __init__(self, uri: str, sink: str, fps: float) -> None:
        from sage_edge.runtime.sources import require_gstreamer

        require_gstreamer(uri)
        self.uri, self.sink, self.fps = uri, sink, fps
        self._writer = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        frame = _bgr(frame)
        if self._writer is None:
            self._size = (frame.shape[1], frame.shape[0])
            encoder = _gst_encoder(max(1, int(round(self.fps))))
            pipeline = f"appsrc is-live=true ! video/x-raw, format=BGR ! {encoder} ! {self.sink}"
            self._writer = cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, self.fps, self._size, True)
            if not self._writer.isOpened():
                raise SageEdgeError(f"{self.uri}: GStreamer could not start the pipeline ({pipeline})")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


# --------------------------------------------------------------------------------------------- URIs


def _host_port(uri: str, rest: str, default_port: int | None) -> tuple[str, int, str]:
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not port:
        if default_port is None:
            raise SageEdgeError(f"{uri}: give a port, e.g. rtp://192.168.1.10:5000")
        port = str(default_port)
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise SageEdgeError(f"{uri}: bad port '{port}'")
    return host or "@", int(port), path


def open_output(uri: str, fps: float = 30.0, status: Callable[[], dict] | None = None,
                http: HttpSettings | None = None, rtsp_credentials: Credentials | None = None) -> Output:
    """An ``Output`` for ``uri``. Validates now (one line on error); files are created on the first frame.

    ``http``: access control and limits for ``http://`` outputs (``sage_edge.runtime.http_output``).
    ``rtsp_credentials``: the credential ``rtsp://`` outputs ask viewers for (``--rtsp-credentials FILE``); the
    URI's (``rtsp://USER:PASSWORD@@:8554/name``) or else ``SAGE_EDGE_RTSP_CREDENTIALS`` is used without it.
    """
    uri = str(uri)
    if "://" not in uri:
        uri = "file://" + uri
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme == "display":
        return DisplayOutput(uri)
    if scheme == "file":
        if not rest:
            raise SageEdgeError(f"{uri}: give a path, e.g. file://out.mp4 or file://frames/")
        path = Path(rest)
        suffix = path.suffix.lower()
        if rest.endswith(("/", os.sep)) or path.is_dir() or not suffix:
            return FrameDirOutput(uri, path)
        if suffix in VIDEO_CODECS:
            return VideoFileOutput(uri, path, fps)
        raise SageEdgeError(
            f"{uri}: unknown output type '{suffix}'; use a video ({', '.join(VIDEO_CODECS)}) or a directory ending in '/'"
        )
    if scheme == "rtp":
        host, port, _ = _host_port(uri, rest, None)
        if host == "@":
            raise SageEdgeError(f"{uri}: rtp:// needs the receiver's address, e.g. rtp://192.168.1.10:5000")
        # config-interval=-1: SPS/PPS with every key frame, so a receiver can start at any key frame
        return GstWriterOutput(uri, f"rtph264pay config-interval=-1 pt=96 ! udpsink host={host} port={port} sync=false", fps)
    if scheme == "rtsp":
        from sage_edge.runtime.credentials import credentials_from_env, redact_uri, split_userinfo
        from sage_edge.runtime.rtsp_output import RtspServerOutput

        uri_credentials, rest = split_userinfo(uri, rest)
        uri = redact_uri(uri)  # the password never reaches a message
        host, port, mount = _host_port(uri, rest, 8554)
        if host not in ("@", "0.0.0.0", "localhost", "127.0.0.1"):
            raise SageEdgeError(f"{uri}: sage-edge serves RTSP itself; use rtsp://@:{port}/{mount or 'name'}")
        if uri_credentials is not None and rtsp_credentials is not None:
            raise SageEdgeError(f"{uri_credentials.source}: a credential is also given by "
                                f"{rtsp_credentials.source}; give it once")
        credentials = uri_credentials or rtsp_credentials or credentials_from_env("rtsp")
        bind = {"@": "0.0.0.0", "localhost": "127.0.0.1"}.get(host, host)
        return RtspServerOutput(uri, port, mount or "fused", fps, bind=bind, credentials=credentials)
    if scheme == "http":
        from sage_edge.runtime.credentials import redact_uri, split_userinfo
        from sage_edge.runtime.http_output import MjpegHttpOutput, resolve_http_settings

        uri_credentials, rest = split_userinfo(uri, rest)
        uri = redact_uri(uri)  # the password never reaches a message or the page
        host, port, _ = _host_port(uri, rest, 8080)
        return MjpegHttpOutput(uri, "0.0.0.0" if host == "@" else host, port, status=status,
                               settings=resolve_http_settings(http, uri_credentials))
    raise SageEdgeError(f"{uri}: unsupported output; use {', '.join(s + '...' for s in OUTPUT_SCHEMES)}")
