"""``http://@:8080``: an MJPEG stream and a small status page, served by one ``selectors`` thread.

    /              status page: the stream, FPS, latency, drops, pairing skew (refreshes itself)
    /stream        multipart/x-mixed-replace MJPEG (any browser, VLC, ffplay, OpenCV)
    /frame.jpg     the newest frame as one JPEG
    /status.json   the pipeline's status as JSON, plus this server's counters under "http"

Watch a headless Jetson from a laptop: ``sage-edge run ... --output http://@:8080`` then open
``http://JETSON:8080/``. ``@`` binds all interfaces; ``http://127.0.0.1:8080`` binds loopback only.

Access control (``HttpSettings.credentials`` / ``token``; where they come from: ``sage_edge.runtime.credentials``):
every request, whatever its path, must carry ``Authorization: Basic`` with USER:PASSWORD, or the token as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN``; otherwise it gets 401 (with ``WWW-Authenticate``) and
nothing else. Secrets are compared as SHA-256 digests with ``hmac.compare_digest`` (constant time).

Bounded resources, whatever clients do: one thread in all (non-blocking sockets in a ``selectors`` loop, so
200 hostile connections cost 200 small objects, not 200 threads); at most ``max_viewers`` streams (the next
gets 503 at once); at most ``max_pending`` other connections (still sending their request, or receiving a
one-off response). Past that, a new connection replaces the oldest one that was already answered or has sent
no whole request for a second (so idle sockets cannot lock viewers out); while there is none, new connections
wait in the kernel's listen backlog (accepting pauses). A request that arrived with the connection is read
as soon as it is accepted. A request
must arrive whole within ``request_timeout_s`` (else 408), in at most ``max_request_bytes`` and
``max_headers`` header lines (else 414/431). A viewer whose client acknowledges no byte for
``stall_timeout_s`` while data waits for it (it stopped reading) is reset, and so is a one-off response the
socket takes nothing of for that long.

The pipeline never waits for a viewer: ``write`` only keeps a reference to the newest frame and wakes the
server thread. That thread JPEG-encodes it once (only while someone watches; OpenCV releases the GIL) and
hands the same bytes to every viewer; a viewer still sending an older frame gets the newest one next and
skips those in between.
"""
from __future__ import annotations

import base64
import binascii
import collections
import fcntl
import hashlib
import hmac
import html
import json
import selectors
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Callable
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.credentials import (Credentials, credentials_env, credentials_flag, credentials_from_env,
                                           token_from_env)
from sage_edge.runtime.outputs import Output

BOUNDARY = "sageedgeframe"
JPEG_QUALITY = 80
ALL_INTERFACES = ("0.0.0.0", "::", "")
REALM = "sage-edge"
LINGER_S = 1.0  # after an error response, read (and drop) what the client still sends, so it gets the response
LINGER_BYTES = 64 * 1024  # ... or at most this much; also what a client may send after its request
RECV_BYTES = 4096
ACCEPTS_PER_WAKE = 64
POLL_S = 0.25  # the loop checks timeouts at least this often
ROUND_S = 0.01  # ... and handles a flood in rounds at most this often, not one wake-up per packet
EVICT_AFTER_S = 1.0  # a pending connection may be dropped for a new one once this old (a request takes one trip)

COUNTERS = ("accepted", "requests", "served", "unauthorized", "not_found", "bad_request", "too_large",
            "method_not_allowed", "busy", "timed_out", "stalled", "evicted", "accept_paused", "frames_sent",
            "frames_skipped", "internal_errors")


@dataclass
class HttpSettings:
    """Access control and limits for ``MjpegHttpOutput``. Defaults suit a Jetson on a field network."""

    credentials: Credentials | None = None
    token: str | None = None
    max_viewers: int = 8
    max_pending: int = 64
    request_timeout_s: float = 10.0
    stall_timeout_s: float = 10.0
    max_request_bytes: int = 8192
    max_headers: int = 32
    # kernel send buffer of a stream (Linux doubles it): bounds what a stalled viewer pins in the kernel and
    # how long it takes to notice one; 512 KiB still carries ~10 MB/s over a 100 ms round trip
    send_buffer_bytes: int = 512 * 1024

    def check(self) -> None:
        if self.max_viewers < 1 or self.max_pending < 1:
            raise SageEdgeError("HTTP output: max viewers and max pending connections must be at least 1")
        if self.request_timeout_s <= 0 or self.stall_timeout_s <= 0:
            raise SageEdgeError("HTTP output: timeouts must be positive")
        if self.send_buffer_bytes < 4096:
            raise SageEdgeError("HTTP output: the send buffer must be at least 4096 bytes")
        if self.max_request_bytes < 256 or self.max_headers < 1:
            raise SageEdgeError("HTTP output: max request size must be at least 256 bytes, max headers at least 1")


def resolve_http_settings(settings: HttpSettings | None, uri_credentials: Credentials | None = None,
                          environ: dict | None = None) -> HttpSettings:
    """``settings`` completed with the URI's credential, else the environment's (see ``credentials``)."""
    settings = replace(settings) if settings is not None else HttpSettings()
    if uri_credentials is not None:
        if settings.credentials is not None:
            raise SageEdgeError(f"{uri_credentials.source}: a credential is also given by "
                                f"{settings.credentials.source}; give it once")
        settings.credentials = uri_credentials
    if settings.credentials is None:
        settings.credentials = credentials_from_env("http", environ)
    if settings.token is None:
        settings.token = token_from_env(environ)
    settings.check()
    return settings


class HttpError(Exception):
    """A request we answer with ``code`` and a one-line ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_request(head: bytes, max_headers: int) -> tuple[str, str, dict[str, str]]:
    """A request head (without its blank line) -> (method, target, {lower-case name: first value}).

    Strict RFC 7230 shapes; anything else is ``HttpError``. (``http.server`` parses from a blocking file, so
    a non-blocking server parses its own buffer; the rules are few.)
    """
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    try:
        request_line = lines[0].decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "bad request line") from None
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS or not parts[1]:
        raise HttpError(400, "bad request line; expected e.g. GET /stream HTTP/1.1")
    method, target, version = parts
    if not version.startswith("HTTP/") or len(version) != 8 or not (version[5].isdigit() and version[7].isdigit()
                                                                     and version[6] == "."):
        raise HttpError(400, "bad HTTP version")
    if version[5] != "1":
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1")
    if not (target.startswith("/") or target.lower().startswith(("http://", "https://"))):
        raise HttpError(400, "bad request target")
    if len(lines) - 1 > max_headers:
        raise HttpError(431, f"more than {max_headers} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not set(name.decode("latin-1")) <= _TOKEN_CHARS:
            raise HttpError(400, "bad header line")  # also obsolete line folding (RFC 7230 3.2.4)
        headers.setdefault(name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1"))
    return method, target, headers


def _response(code: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
              headers: tuple[tuple[str, str], ...] = (), head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.0 {code} {HTTPStatus(code).phrase}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


STREAM_HEAD = (f"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n"
               "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode()


def _part(jpeg: bytes) -> bytes:
    """One multipart part; built once per frame and shared by every viewer."""
    return b"".join((f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode(),
                     jpeg, b"\r\n"))


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _unacknowledged(sock: socket.socket) -> int | None:
    """Bytes in the socket's send queue not yet acknowledged by the peer (Linux SIOCOUTQ), or None."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError, ValueError):
        return None


class _Connection:
    """One client socket. ``kind``: request (reading its head) -> response (send, then linger) | stream."""

    __slots__ = ("sock", "kind", "inbuf", "out", "next_part", "generation", "accepted", "progress", "sent",
                 "acked", "acked_at", "linger_until", "received_after", "close_when_sent", "events")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.kind = "request"
        self.inbuf = bytearray()
        self.out: collections.deque = collections.deque()  # memoryviews still to send
        self.next_part: bytes | None = None  # stream: the newest frame, sent after the one in flight
        self.generation = 0  # stream: the newest frame handed to it
        self.accepted = now
        self.progress = now  # the last time the socket took a byte (or the response began)
        self.sent = 0  # bytes handed to the kernel
        self.acked = 0  # ... of which the client's TCP has acknowledged (stream)
        self.acked_at = now  # when that last grew, or nothing was owed (stream)
        self.linger_until = 0.0
        self.received_after = 0  # bytes the client sent after its request head
        self.close_when_sent = False  # the whole request was read: close after the response, no lingering
        self.events = 0  # selector events; 0: not registered (yet)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>sage-edge {title}</title>
<style>body{{font-family:sans-serif;background:#111;color:#ddd;margin:1em}}img{{max-width:100%;border:1px solid #444}}
td{{padding:0 1em 0 0}}</style></head><body>
<h3>sage-edge run: {title}</h3><img src="/stream{query}" alt="fused stream"><table id="s"></table>
<script>
async function tick(){{try{{const r=await fetch('/status.json{query}');const s=await r.json();
let rows='';for(const[k,v]of Object.entries(s)){{rows+='<tr><td>'+k+'</td><td>'+JSON.stringify(v)+'</td></tr>';}}
document.getElementById('s').innerHTML=rows;}}catch(e){{}}}}
setInterval(tick,1000);tick();
</script></body></html>"""


class MjpegHttpOutput(Output):
    """An ``Output`` serving MJPEG over HTTP. ``status`` returns the dict shown on the page."""

    def __init__(self, uri: str, host: str, port: int, status: Callable[[], dict] | None = None,
                 quality: int = JPEG_QUALITY, settings: HttpSettings | None = None) -> None:
        self.uri = uri
        self.status = status or (lambda: {})
        self.quality = quality
        self.settings = settings or HttpSettings()
        self.settings.check()
        creds, token = self.settings.credentials, self.settings.token
        self._basic_digest = None if creds is None else _digest(f"{creds.user}:{creds.password}".encode("utf-8"))
        self._token_digest = None if not token else _digest(token.encode("utf-8"))
        self.frames = 0
        self.counts = dict.fromkeys(COUNTERS, 0)  # fixed keys: other threads may copy it while it changes
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._generation = 0  # bumped by every write
        self._encoded: tuple[int, bytes] | None = None  # (generation, multipart part) of the newest encoding
        self._delivered = 0  # the generation last handed to the viewers
        self._woken = False
        self._closing = False
        self._pending: dict[_Connection, None] = {}  # reading a request or sending a response; oldest first
        self._lingering: dict[_Connection, None] = {}  # answered, dropping what the client still sends
        self._streams: set[_Connection] = set()
        self._accepting = True  # the listener is in the selector
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._listener = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise SageEdgeError(f"{uri}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self.address = self._listener.getsockname()[:2]
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="sage-http", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def port(self) -> int:
        return int(self.address[1])

    @property
    def viewers(self) -> int:
        return len(self._streams)

    @property
    def protected(self) -> bool:
        return self._basic_digest is not None or self._token_digest is not None

    @property
    def warning(self) -> str | None:
        """One line when every interface is served without a credential, else None."""
        if self.protected or self.address[0] not in ALL_INTERFACES:
            return None
        return (f"{self.uri} serves every network interface without a credential: anyone who can reach port "
                f"{self.port} can watch; set {credentials_env('http')}=USER:PASSWORD or "
                f"{credentials_flag('http')} FILE, or bind one address (http://127.0.0.1:{self.port})")

    def stats(self) -> dict:
        return {"viewers": len(self._streams), "max_viewers": self.settings.max_viewers,
                "pending": len(self._pending) + len(self._lingering), "protected": self.protected,
                **dict(self.counts)}

    def write(self, frame: np.ndarray) -> None:
        """Keep the newest frame and wake the server; never waits for a viewer (or encodes: the server does)."""
        self.frames += 1
        with self._lock:
            self._frame = frame
            self._generation += 1
            wake = not self._woken and bool(self._streams)
            self._woken = self._woken or wake
        if wake:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass  # the pipe is full (the server is already awake) or closing

    def snapshot(self) -> bytes | None:
        """The newest frame as JPEG (None before the first frame)."""
        newest = self._newest_part()
        if newest is None:
            return None
        part = newest[1]
        return part[part.index(b"\r\n\r\n") + 4:-2]

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        self._thread.join(timeout=5)

    def abort(self) -> None:
        self.close()

    # ------------------------------------------------------------------ frames
    def _newest_part(self) -> tuple[int, bytes] | None:
        """(generation, the newest frame as a multipart part), encoded at most once per frame."""
        import cv2

        with self._lock:
            frame, generation, encoded = self._frame, self._generation, self._encoded
        if frame is None:
            return None
        if encoded is not None and encoded[0] == generation:
            return encoded
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise SageEdgeError(f"{self.uri}: JPEG encoding failed")
        part = _part(data.tobytes())
        with self._lock:
            if self._encoded is None or self._encoded[0] < generation:
                self._encoded = (generation, part)
        return generation, part

    def _deliver(self, now: float) -> None:
        """Hand the newest frame (if new) to every viewer: sent now if the viewer is idle, else next."""
        with self._lock:
            generation = self._generation
            self._woken = False
        if generation == self._delivered or not self._streams:
            return
        newest = self._newest_part()
        self._delivered = generation
        if newest is None:
            return
        generation, part = newest
        for conn in list(self._streams):
            if conn.generation >= generation:
                continue  # it joined after this frame and got it then
            conn.generation = generation
            if conn.out:
                if conn.next_part is not None:
                    self.counts["frames_skipped"] += 1
                conn.next_part = part
            else:
                conn.out.append(memoryview(part))
                conn.progress = now  # the stall clock starts when there is something to send
                self.counts["frames_sent"] += 1
                self._flush(conn, now)

    # ------------------------------------------------------------------ the loop
    def _serve(self) -> None:
        last_round = 0.0
        try:
            while not self._closing:
                try:
                    last_round = self._round(last_round)
                except Exception:  # noqa: BLE001 - counted (tests and the load benchmark require 0); serving goes on
                    self.counts["internal_errors"] += 1
                    time.sleep(ROUND_S)
        finally:
            for conn in list(self._pending) + list(self._lingering) + list(self._streams):
                self._close(conn)
            self._selector.close()
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()

    def _round(self, last_round: float) -> float:
        """Wait for events, handle them; returns when this round began."""
        # Under a flood, events are taken in rounds at most every ROUND_S, so this thread wakes (and takes the
        # GIL from the pipeline) at most ~100 times a second whatever clients send; a lone event (a frame, a
        # request) is still handled at once.
        events = self._selector.select(0)
        if not events:
            events = self._selector.select(POLL_S)
        elif time.monotonic() - last_round < ROUND_S:
            time.sleep(max(0.0, ROUND_S - (time.monotonic() - last_round)))
            events = self._selector.select(0)
        now = time.monotonic()
        listener_ready = False
        for key, mask in events:
            if key.data == "listener":
                listener_ready = True  # after the requests that have arrived: they come first
            elif key.data == "wake":
                self._drain_wake()
            else:
                conn = key.data
                if conn.sock.fileno() < 0:
                    continue  # closed earlier in this round (evicted)
                try:
                    if mask & selectors.EVENT_READ:
                        self._on_read(conn, now)
                    if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                        self._flush(conn, now)
                except Exception:  # noqa: BLE001 - one client must never take the server down
                    self.counts["internal_errors"] += 1
                    self._close(conn)
        if listener_ready:
            self._accept(now)
        self._deliver(now)
        self._expire(now)
        self._resume_accepting(now)
        return now

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            victim = None
            if len(self._pending) + len(self._lingering) >= self.settings.max_pending:
                victim = self._evictable(now)
                if victim is None:  # full of connections too young to judge: new ones wait in the kernel's
                    self._pause_accepting()  # backlog (costing us nothing) until one can go
                    return
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors (EMFILE): try again next round, do not spin
                self.counts["internal_errors"] += 1
                self._pause_accepting()
                return
            self.counts["accepted"] += 1
            if victim is not None:
                self.counts["evicted"] += 1
                self._close(victim)
            sock.setblocking(False)
            conn = _Connection(sock, now)
            self._pending[conn] = None
            self._on_read(conn, now)  # a request that came with the handshake is served before anything else
            if conn.sock.fileno() >= 0 and not conn.events:
                self._set_events(conn, selectors.EVENT_READ)

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._selector.unregister(self._listener)
            self._accepting = False
            self.counts["accept_paused"] += 1

    def _resume_accepting(self, now: float) -> None:
        """Listen again once there is room, or a connection that may be replaced."""
        if not self._accepting and (len(self._pending) + len(self._lingering) < self.settings.max_pending
                                    or self._evictable(now) is not None):
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
            self._accepting = True

    def _evictable(self, now: float) -> _Connection | None:
        """The connection to drop for a new one: the oldest already answered (lingering), else the oldest
        that has not sent a whole request in ``EVICT_AFTER_S`` (idle or trickling), else None."""
        if self._lingering:
            return next(iter(self._lingering))
        for conn in self._pending:  # oldest first: usually the first one qualifies
            if conn.kind == "request" and now - conn.accepted >= EVICT_AFTER_S:
                return conn
        return None

    def _close(self, conn: _Connection, reset: bool = False) -> None:
        """Close; ``reset`` for a client that stopped reading: RST, so the kernel drops what it still holds
        for it at once instead of keeping it until the client reads (which it will not)."""
        if conn.sock.fileno() >= 0:
            if conn.events:
                self._selector.unregister(conn.sock)
                conn.events = 0
            if reset:
                try:
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            conn.sock.close()
        self._pending.pop(conn, None)
        self._lingering.pop(conn, None)
        self._streams.discard(conn)
        conn.out.clear()
        conn.next_part = None

    def _set_events(self, conn: _Connection, events: int) -> None:
        """Register for ``events`` (a connection answered at once is never registered: fewer system calls)."""
        if not conn.events:
            self._selector.register(conn.sock, events, conn)
        elif events != conn.events:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _expire(self, now: float) -> None:
        s = self.settings
        for conn in list(self._pending):
            if conn.kind == "request" and now - conn.accepted > s.request_timeout_s:
                self.counts["timed_out"] += 1
                self._respond(conn, 408, "the request did not arrive in time", now)
            elif conn.kind == "response" and conn.out and now - conn.progress > s.stall_timeout_s:
                self.counts["stalled"] += 1
                self._close(conn, reset=True)
        for conn in list(self._lingering):  # in the order they began: stop at the first still lingering
            if now <= conn.linger_until:
                break
            self._close(conn)
        for conn in list(self._streams):
            if self._stalled(conn, now):
                self.counts["stalled"] += 1
                self._close(conn, reset=True)

    def _stalled(self, conn: _Connection, now: float) -> bool:
        """A viewer that has taken nothing for ``stall_timeout_s`` while data was waiting for it.

        "Taken" is judged by TCP acknowledgements (Linux SIOCOUTQ: bytes sent but not yet acknowledged), so
        a client that stops reading is noticed once its own receive buffer is full, however slowly the
        stream fills ours; elsewhere, by our socket no longer taking data.
        """
        unacked = _unacknowledged(conn.sock)
        if unacked is None:
            return bool(conn.out) and now - conn.progress > self.settings.stall_timeout_s
        acked = conn.sent - unacked
        if acked > conn.acked or (unacked == 0 and not conn.out):
            conn.acked, conn.acked_at = acked, now
        return now - conn.acked_at > self.settings.stall_timeout_s

    # ------------------------------------------------------------------ reading requests
    def _on_read(self, conn: _Connection, now: float) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client left (or finished, while lingering)
            self._close(conn)
            return
        if conn.kind != "request":  # bytes after the request: dropped, up to a bound
            conn.received_after += len(data)
            if conn.received_after > LINGER_BYTES:
                self._close(conn)
            return
        conn.inbuf += data
        end = conn.inbuf.find(b"\r\n\r\n")
        if end < 0:
            end = conn.inbuf.find(b"\n\n")
            head_end = end + 2
        else:
            head_end = end + 4
        limit = self.settings.max_request_bytes
        if end < 0 or end > limit:
            if len(conn.inbuf) > limit:
                first_line_end = conn.inbuf.find(b"\n", 0, limit)
                if first_line_end < 0:
                    self.counts["too_large"] += 1
                    self._respond(conn, 414, f"request line longer than {limit} bytes", now)
                else:
                    self.counts["too_large"] += 1
                    self._respond(conn, 431, f"request head larger than {limit} bytes", now)
            return
        head = bytes(conn.inbuf[:end])
        conn.received_after = len(conn.inbuf) - head_end
        conn.inbuf = bytearray()
        self.counts["requests"] += 1
        try:
            method, target, headers = parse_request(head, self.settings.max_headers)
        except HttpError as exc:
            self.counts["too_large" if exc.code == 431 else "bad_request"] += 1
            self._respond(conn, exc.code, exc.message, now)
            return
        self._route(conn, method, target, headers, now)

    def _authorized(self, headers: dict[str, str], query: str) -> str | None:
        """How the request proved itself ("open", "basic", "bearer", "query"), or None: 401."""
        if not self.protected:
            return "open"
        scheme, _, value = headers.get("authorization", "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic" and self._basic_digest is not None:
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                given = b""
            if hmac.compare_digest(_digest(given), self._basic_digest):
                return "basic"
        if scheme == "bearer" and self._token_digest is not None:
            if hmac.compare_digest(_digest(value.encode("utf-8", "replace")), self._token_digest):
                return "bearer"
        if self._token_digest is not None and "token=" in query:
            for given_token in parse_qs(query).get("token", [])[:4]:
                if hmac.compare_digest(_digest(given_token.encode("utf-8", "replace")), self._token_digest):
                    return "query"
        return None

    def _route(self, conn: _Connection, method: str, target: str, headers: dict[str, str], now: float) -> None:
        url = urlsplit(target)
        path, query = url.path, url.query
        head_only = method == "HEAD"  # RFC 9110 9.3.2: the same head, no body
        # nothing more can come from this client: close right after answering (else linger, so that unread
        # bytes do not make our close a reset that could destroy the answer before the client reads it)
        conn.close_when_sent = (method in ("GET", "HEAD") and conn.received_after == 0
                                and "content-length" not in headers and "transfer-encoding" not in headers)
        how = self._authorized(headers, query)
        if how is None:
            self.counts["unauthorized"] += 1
            challenges = []
            if self._basic_digest is not None:
                challenges.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
            if self._token_digest is not None:
                challenges.append(("WWW-Authenticate", f'Bearer realm="{REALM}"'))
            self._respond(conn, 401, "this stream needs a credential", now, tuple(challenges), head_only)
            return
        if method not in ("GET", "HEAD"):
            self.counts["method_not_allowed"] += 1
            self._respond(conn, 405, "only GET and HEAD", now, (("Allow", "GET, HEAD"),))
            return
        if path in ("/", "/index.html"):
            token_query = ""
            if how == "query":  # the page's own requests carry the token the page was opened with
                token_query = "?token=" + quote(parse_qs(query)["token"][0], safe="")
            page = PAGE.format(title=html.escape(self.uri), query=html.escape(token_query))
            self._send(conn, _response(200, page.encode(), "text/html; charset=utf-8", head_only=head_only), now)
        elif path == "/status.json":
            try:
                status = dict(self.status())
            except Exception as exc:  # noqa: BLE001 - the page shows the error, the pipeline goes on
                self.counts["internal_errors"] += 1
                status = {"error": f"{type(exc).__name__}: {exc}"}
            status["http"] = self.stats()
            body = json.dumps(status, default=str).encode()
            self._send(conn, _response(200, body, "application/json", head_only=head_only), now)
        elif path == "/frame.jpg":
            jpeg = self.snapshot()
            if jpeg is None:
                self._respond(conn, 503, "no frame yet", now, (("Retry-After", "1"),), head_only)
            else:
                self._send(conn, _response(200, jpeg, "image/jpeg", head_only=head_only), now)
        elif path == "/stream":
            if head_only:
                self._send(conn, STREAM_HEAD, now)
            elif len(self._streams) >= self.settings.max_viewers:
                self.counts["busy"] += 1
                self._respond(conn, 503, f"{self.settings.max_viewers} viewers already; try again later", now,
                              (("Retry-After", "5"),))
            else:
                self._start_stream(conn, now)
        else:
            self.counts["not_found"] += 1
            self._respond(conn, 404, "try /, /stream, /frame.jpg or /status.json", now, head_only=head_only)

    # ------------------------------------------------------------------ writing
    def _respond(self, conn: _Connection, code: int, message: str, now: float,
                 headers: tuple[tuple[str, str], ...] = (), head_only: bool = False) -> None:
        """A short error (or notice) as one line of text, then close."""
        body = f"{code} {HTTPStatus(code).phrase.lower()}: {message}\n".encode()
        self._send(conn, _response(code, body, headers=headers, head_only=head_only), now)

    def _send(self, conn: _Connection, data: bytes, now: float) -> None:
        """A one-off response: sent, then the connection lingers briefly and closes."""
        if data.startswith(b"HTTP/1.0 2"):
            self.counts["served"] += 1
        conn.kind = "response"
        conn.progress = now
        conn.out.append(memoryview(data))
        self._flush(conn, now)

    def _start_stream(self, conn: _Connection, now: float) -> None:
        self.counts["served"] += 1
        self._pending.pop(conn, None)
        try:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_bytes)
        except OSError:
            pass
        conn.kind = "stream"
        conn.progress = now
        self._streams.add(conn)
        conn.out.append(memoryview(STREAM_HEAD))
        newest = self._newest_part()
        if newest is not None:
            conn.generation = newest[0]
            conn.out.append(memoryview(newest[1]))
            self.counts["frames_sent"] += 1
        self._flush(conn, now)

    def _flush(self, conn: _Connection, now: float) -> None:
        """Send what the socket takes now; then finish a response, or start a viewer's next frame."""
        while True:
            while conn.out:
                chunk = conn.out[0]
                try:
                    sent = conn.sock.send(chunk)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:  # the client left
                    self._close(conn)
                    return
                if sent:
                    conn.progress = now
                    conn.sent += sent
                if sent < len(chunk):
                    conn.out[0] = chunk[sent:]
                    self._set_events(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
                    return
                conn.out.popleft()
            if conn.kind == "stream" and conn.next_part is not None:
                conn.out.append(memoryview(conn.next_part))
                conn.next_part = None
                self.counts["frames_sent"] += 1
                continue
            break
        if conn.kind == "response" and conn.close_when_sent:
            self._close(conn)
            return
        if conn.kind == "response":  # all sent: half-close, then drop what the client still sends
            conn.kind = "linger"
            conn.linger_until = now + LINGER_S
            self._pending.pop(conn, None)
            self._lingering[conn] = None
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
        self._set_events(conn, selectors.EVENT_READ)
