"""``rtsp://@:PORT/NAME``: fused frames served over RTSP by GStreamer's RTSP server (PyGObject, as on JetPack).

How it works: the server builds one shared media pipeline when the first viewer asks for the stream,

    appsrc (our frames, BGR) ! queue (leaky: a slow encoder drops old frames) ! H.264 encoder ! rtph264pay

and ``write`` pushes each fused frame into that appsrc (nothing is encoded while nobody watches). The
encoder starts with the first viewer, so its first frame is a key frame carrying SPS/PPS
(``config-interval=-1``: with every key frame); a viewer joining a stream already running forces a new key
frame; buffers are stamped with the pipeline clock as they are pushed (``do-timestamp``), so the stream's
timing is the real one whatever rate the fusion runs at. The media is torn down when the last viewer leaves.

Why not the earlier design (every frame encoded once, sent over a loopback UDP hop into ``udpsrc`` inside the
media): ``udpsrc`` only binds when a viewer arrives, so the key frame and SPS/PPS sent before were lost, and
they were repeated every 250 frames / once per second of *stream* time (frame count / nominal fps). At a few
fused frames per second a client waited for minutes at "Retrieving media info" (the server cannot describe
the stream before it has seen SPS/PPS), which is how it looked broken.

Access control: a ``Credentials`` (``sage_edge.runtime.credentials``: ``--rtsp-credentials FILE``,
``SAGE_EDGE_RTSP_CREDENTIALS``, or ``rtsp://USER:PASSWORD@@:8554/name``) makes every request need it
(RTSP digest authentication, GStreamer's ``RTSPAuth``); a client without it gets 401. Serving every
interface without one is reported by ``warning``.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.credentials import Credentials, credentials_env, credentials_flag
from sage_edge.runtime.outputs import Output, _bgr, _gst_encoder

ALL_INTERFACES = ("0.0.0.0", "::", "")
ROLE = "viewer"  # the one role a credential grants: watch the stream


def _gst_rtsp(uri: str) -> tuple[Any, Any, Any, Any]:
    """(GLib, Gst, GstRtspServer, GstVideo), or one line saying what to install."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        gi.require_version("GstVideo", "1.0")
        gi.require_version("GstRtsp", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer, GstVideo
    except (ImportError, ValueError):
        raise SageEdgeError(
            f"{uri}: serving RTSP needs GStreamer's RTSP server through PyGObject (apt install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly; in a venv use --system-site-packages); "
            "or send rtp://HOST:PORT instead"
        ) from None
    Gst.init(None)
    return GLib, Gst, GstRtspServer, GstVideo


def _fraction(fps: float) -> str:
    """A GStreamer fraction for ``fps`` (caps want integers): 30 -> '30/1', 8.7 -> '87/10'."""
    for denominator in (1, 10, 100, 1000):
        if abs(fps * denominator - round(fps * denominator)) < 1e-6:
            return f"{int(round(fps * denominator))}/{denominator}"
    return f"{int(round(fps * 1000))}/1000"


class RtspServerOutput(Output):
    """An RTSP server on ``bind``:``port`` serving the fused frames at ``/mount``."""

    def __init__(self, uri: str, port: int, mount: str, fps: float, bind: str = "0.0.0.0",
                 credentials: Credentials | None = None) -> None:
        GLib, Gst, GstRtspServer, GstVideo = _gst_rtsp(uri)
        self._Gst, self._GstVideo = Gst, GstVideo
        self.uri, self.fps, self.bind, self.mount = uri, float(fps), bind, "/" + mount.strip("/")
        self.credentials = credentials
        self.frames = 0
        self._lock = threading.Lock()
        self._caps: Any = None
        self._size: tuple[int, int] | None = None
        self._medias: list[tuple[Any, Any, Any]] = []  # (media, appsrc, payloader) of each prepared media
        self._closed = False
        gop = max(1, int(round(self.fps)))  # a key frame about every second: lost packets heal within a second

        self._server = GstRtspServer.RTSPServer()
        self._server.set_address(bind)
        self._server.set_service(str(port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true "
            "! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream "
            f"! {_gst_encoder(gop)} ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_shared(True)  # one encoder for every viewer
        factory.connect("media-configure", self._on_media_configure)
        if credentials is not None:
            self._protect(GstRtspServer, factory, credentials)
        self._server.get_mount_points().add_factory(self.mount, factory)
        self._server.connect("client-connected", self._on_client)
        # our own main context and loop: several servers (or other GLib users) in one process never share one
        self._context = GLib.MainContext.new()
        self._source_id = self._server.attach(self._context)
        if self._source_id == 0:
            raise SageEdgeError(f"{uri}: cannot serve RTSP on {bind}:{port} (port in use, or no such address?)")
        self.bound_port = int(self._server.get_bound_port())  # (not .port: run.py reads that as the HTTP output's)
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="sage-rtsp", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ access control
    def _protect(self, GstRtspServer: Any, factory: Any, credentials: Credentials) -> None:
        """RTSP digest authentication (the password never crosses the network; RTSP has no TLS here), every
        request; a client without the credential gets 401. Digest only: PyGObject cannot pass GStreamer the
        BASIC|DIGEST mask (it maps the type as an enum), and every common client (FFmpeg, GStreamer, VLC,
        live555) speaks digest."""
        from gi.repository import GstRtsp

        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
        auth.add_digest(credentials.user, credentials.password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        self._server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(ROLE, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role(ROLE, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)

    @property
    def protected(self) -> bool:
        return self.credentials is not None

    @property
    def url(self) -> str:
        host = "localhost" if self.bind in ALL_INTERFACES else self.bind
        return f"rtsp://{host}:{self.bound_port}{self.mount}"

    @property
    def warning(self) -> str | None:
        """One line when every interface is served without a credential, else None."""
        if self.protected or self.bind not in ALL_INTERFACES:
            return None
        return (f"{self.uri} serves every network interface without a credential: anyone who can reach port "
                f"{self.bound_port} can watch; set {credentials_env('rtsp')}=USER:PASSWORD or "
                f"{credentials_flag('rtsp')} FILE, or bind one address (rtsp://127.0.0.1:{self.bound_port}{self.mount})")

    # ------------------------------------------------------------------ GLib thread callbacks
    def _on_media_configure(self, _factory: Any, media: Any) -> None:
        element = media.get_element()
        appsrc, pay = element.get_child_by_name("src"), element.get_child_by_name("pay0")
        with self._lock:
            if self._caps is not None:
                appsrc.set_property("caps", self._caps)
            self._medias.append((media, appsrc, pay))
        media.connect("unprepared", self._on_unprepared)

    def _on_unprepared(self, media: Any) -> None:
        with self._lock:
            self._medias = [entry for entry in self._medias if entry[0] is not media]

    def _on_client(self, _server: Any, client: Any) -> None:
        client.connect("play-request", self._on_play)

    def _on_play(self, _client: Any, _context: Any) -> None:
        """A viewer starts playing: ask the encoder for a key frame so a late joiner sees a picture at once."""
        event = self._GstVideo.video_event_new_upstream_force_key_unit(self._Gst.CLOCK_TIME_NONE, True, 0)
        with self._lock:
            pays = [pay for _, _, pay in self._medias]
        for pay in pays:
            pay.get_static_pad("sink").push_event(event.copy())

    # ------------------------------------------------------------------ Output
    def write(self, frame: np.ndarray) -> None:
        import cv2

        frame = _bgr(frame)
        if self._size is None:
            self._size = (frame.shape[1], frame.shape[0])
            caps = self._Gst.Caps.from_string(
                f"video/x-raw, format=BGR, width={self._size[0]}, height={self._size[1]}, "
                f"framerate={_fraction(self.fps)}")
            with self._lock:
                self._caps = caps
                for _, appsrc, _ in self._medias:  # a viewer that came before the first frame
                    appsrc.set_property("caps", caps)
        elif (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self.frames += 1
        with self._lock:
            appsrcs = [appsrc for _, appsrc, _ in self._medias]
        if not appsrcs:
            return  # nobody watches: nothing to encode
        buffer = self._Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
        for appsrc in appsrcs:
            appsrc.emit("push-buffer", buffer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            appsrcs = [appsrc for _, appsrc, _ in self._medias]
        for appsrc in appsrcs:  # viewers get an orderly end of stream
            appsrc.emit("end-of-stream")
        source = self._context.find_source_by_id(self._source_id)
        if source is not None:
            source.destroy()  # stop listening
        self._loop.quit()
        self._thread.join(2.0)
