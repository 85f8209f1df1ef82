"""``http://@:8080``: an MJPEG stream and a small status page, on the standard library's HTTP server.

    /              status page: the stream, FPS, latency, drops, pairing skew (refreshes itself)
    /stream        multipart/x-mixed-replace MJPEG (any browser, VLC, ffplay, OpenCV)
    /frame.jpg     the newest frame as one JPEG
    /status.json   the pipeline's status as JSON

Watch a headless Jetson from a laptop: ``sage-edge run ... --output http://@:8080`` then open
``http://JETSON:8080/``. ``@`` binds all interfaces; ``http://127.0.0.1:8080`` binds loopback only.

The pipeline never waits for a viewer. ``write`` encodes the frame once (only while someone watches) and
puts it into each client's one-frame slot, replacing a frame the client has not sent yet; each client is
served by its own thread. A slow viewer skips frames; a viewer that disconnects just ends its thread.
"""
from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.outputs import Output

BOUNDARY = "sageedgeframe"
JPEG_QUALITY = 80


class _Client:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: bytes | None = None
        self.closed = False
        self.skipped = 0

    def offer(self, jpeg: bytes) -> None:
        with self.cond:
            if self.frame is not None:
                self.skipped += 1
            self.frame = jpeg
            self.cond.notify()

    def take(self, timeout: float) -> bytes | None:
        with self.cond:
            if self.frame is None and not self.closed:
                self.cond.wait(timeout)
            frame, self.frame = self.frame, None
            return frame

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>sage-edge {title}</title>
<style>body{{font-family:sans-serif;background:#111;color:#ddd;margin:1em}}img{{max-width:100%;border:1px solid #444}}
td{{padding:0 1em 0 0}}</style></head><body>
<h3>sage-edge run: {title}</h3><img src="/stream" alt="fused stream"><table id="s"></table>
<script>
async function tick(){{try{{const r=await fetch('/status.json');const s=await r.json();
let rows='';for(const[k,v]of Object.entries(s)){{rows+='<tr><td>'+k+'</td><td>'+JSON.stringify(v)+'</td></tr>';}}
document.getElementById('s').innerHTML=rows;}}catch(e){{}}}}
setInterval(tick,1000);tick();
</script></body></html>"""


class MjpegHttpOutput(Output):
    """An ``Output`` serving MJPEG over HTTP. ``status`` returns the dict shown on the page."""

    def __init__(self, uri: str, host: str, port: int, status: Callable[[], dict] | None = None,
                 quality: int = JPEG_QUALITY) -> None:
        self.uri = uri
        self.status = status or (lambda: {})
        self.quality = quality
        self.clients: set[_Client] = set()
        self.lock = threading.Lock()
        self.latest: bytes | None = None
        self.latest_frame: np.ndarray | None = None
        self.frames = 0
        self._closed = threading.Event()
        output = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:  # keep the terminal for the pipeline's summary
                pass

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", PAGE.format(title=html.escape(uri)).encode())
                elif path == "/status.json":
                    self._send(200, "application/json", json.dumps(output.status(), default=str).encode())
                elif path == "/frame.jpg":
                    jpeg = output.snapshot()
                    if jpeg is None:
                        self._send(503, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif path == "/stream":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _stream(self) -> None:
                client = output._add_client()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while not output._closed.is_set() and not client.closed:
                        jpeg = client.take(timeout=0.5)
                        if jpeg is None:
                            continue
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg + b"\r\n"
                        )
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, OSError):
                    pass  # the viewer left
                finally:
                    output._remove_client(client)

        class Server(ThreadingHTTPServer):
            daemon_threads = True  # a stuck viewer never blocks shutdown
            allow_reuse_address = True

        try:
            self.server = Server((host, port), Handler)
        except OSError as exc:
            raise SageEdgeError(f"{uri}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sage-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _add_client(self) -> _Client:
        client = _Client()
        with self.lock:
            self.clients.add(client)
            jpeg = self.latest
        if jpeg is not None:
            client.offer(jpeg)
        return client

    def _remove_client(self, client: _Client) -> None:
        client.close()
        with self.lock:
            self.clients.discard(client)

    @property
    def viewers(self) -> int:
        with self.lock:
            return len(self.clients)

    def _encode(self, frame: np.ndarray) -> bytes:
        import cv2

        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise SageEdgeError(f"{self.uri}: JPEG encoding failed")
        return data.tobytes()

    def snapshot(self) -> bytes | None:
        with self.lock:
            if self.latest is None and self.latest_frame is not None:
                self.latest = self._encode(self.latest_frame)
            return self.latest

    def write(self, frame: np.ndarray) -> None:
        self.frames += 1
        with self.lock:
            clients = list(self.clients)
            self.latest_frame = frame
            self.latest = None
        if not clients:
            return  # nobody watching: do not spend time encoding
        jpeg = self._encode(frame)
        with self.lock:
            self.latest = jpeg
        for client in clients:
            client.offer(jpeg)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self.lock:
            clients = list(self.clients)
        for client in clients:
            client.close()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)

    def abort(self) -> None:
        self.close()
