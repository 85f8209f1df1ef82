"""HTTP MJPEG output: decodable JPEGs for two concurrent viewers on loopback; viewers that leave or never
read do not stall the writer or the pipeline."""
from __future__ import annotations

import json
import socket
import threading
import urllib.request

import cv2
import numpy as np
import pytest

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.http_output import BOUNDARY, MjpegHttpOutput
from sage_edge.runtime.outputs import open_output
from sage_edge.runtime.pipeline import Pipeline
from sage_edge.runtime.sources import ArraySource


def read_parts(sock_file, count):
    """Read ``count`` JPEG parts from a multipart MJPEG response (after the HTTP headers)."""
    status = sock_file.readline()
    assert b"200" in status
    headers = {}
    while (line := sock_file.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    images = []
    while len(images) < count:
        line = sock_file.readline()
        if not line:
            break
        if line.strip() != f"--{BOUNDARY}".encode():
            continue
        part = {}
        while (line := sock_file.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            part[key.lower()] = value.strip()
        assert part["content-type"] == "image/jpeg"
        data = sock_file.read(int(part["content-length"]))
        images.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return images


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


def frame(i):
    image = np.zeros((128, 160, 3), np.uint8)
    image[:, : (i * 7) % 160] = (40, 160, 220)
    return image


def test_two_concurrent_viewers_get_decodable_frames_and_leavers_do_not_stall():
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0)
    try:
        assert out.address[0] == "127.0.0.1" and out.port > 0
        stop = threading.Event()
        written = []

        def writer():
            i = 0
            while not stop.is_set():
                out.write(frame(i))
                written.append(i)
                i += 1
                stop.wait(0.005)

        results = {}

        def viewer(name, count):
            with connect(out.port) as sock, sock.makefile("rb") as f:
                results[name] = read_parts(f, count)

        writer_thread = threading.Thread(target=writer)
        viewers = [threading.Thread(target=viewer, args=(n, 5)) for n in ("a", "b")]
        for t in viewers:
            t.start()
        writer_thread.start()
        # a viewer that leaves mid-stream, and one that connects and never reads
        with connect(out.port) as leaver, leaver.makefile("rb") as f:
            read_parts(f, 1)
        stuck = connect(out.port)
        for t in viewers:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in viewers)
        for name in ("a", "b"):
            assert len(results[name]) == 5
            for image in results[name]:
                assert image is not None and image.shape == (128, 160, 3)
        n_before = len(written)
        # with the stuck viewer still connected, the writer keeps going (every write returns)
        deadline = threading.Event()
        while len(written) < n_before + 200 and not deadline.wait(0.01):
            pass
        assert len(written) >= n_before + 200
        stop.set()
        writer_thread.join(timeout=10)
        assert not writer_thread.is_alive()
        stuck.close()
        # status page, snapshot and JSON
        page = urllib.request.urlopen(f"http://127.0.0.1:{out.port}/", timeout=10).read().decode()
        assert '<img src="/stream"' in page
        jpeg = urllib.request.urlopen(f"http://127.0.0.1:{out.port}/frame.jpg", timeout=10).read()
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (128, 160, 3)
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{out.port}/status.json", timeout=10).read())
        assert set(status) == {"http"}  # no pipeline status here; the server's own counters
        assert status["http"]["frames_sent"] >= 11 and status["http"]["internal_errors"] == 0
    finally:
        out.close()
    # closed: the port no longer accepts connections
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", out.port), timeout=2).close()


def test_busy_port_is_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(SageEdgeError, match="cannot listen on 127.0.0.1"):
            open_output(f"http://127.0.0.1:{port}")


def test_pipeline_serves_http_while_a_viewer_disconnects():
    rng = np.random.default_rng(0)
    ir = [rng.integers(0, 255, (64, 80), np.uint8) for _ in range(4)]
    vis = [rng.integers(0, 255, (64, 80, 3), np.uint8) for _ in range(4)]
    from test_pipeline import EchoBackend  # a uint8-contract stand-in model

    seen = {}
    pipeline = Pipeline(ArraySource(ir, loop=True), ArraySource(vis, loop=True),
                        backend_factory=EchoBackend, outputs=["http://127.0.0.1:0"], duration=60)
    http = pipeline.outputs[0]

    def viewer():
        try:
            with connect(http.port) as sock, sock.makefile("rb") as f:
                seen["frames"] = read_parts(f, 2)  # then hang up mid-stream
            seen["left_at"] = pipeline.frames
            seen["status"] = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{http.port}/status.json", timeout=10).read())
            # the pipeline keeps going without the viewer: wait for 100 more frames, then stop it
            waited = threading.Event()
            while pipeline.frames < seen["left_at"] + 100 and not waited.wait(0.01):
                pass
        finally:
            pipeline.stop("test done")

    t = threading.Thread(target=viewer)
    t.start()
    summary = pipeline.run()
    t.join(timeout=20)
    assert summary.stop_reason == "test done"
    assert summary.frames >= seen["left_at"] + 100
    assert len(seen["frames"]) == 2 and all(f.shape == (64, 80, 3) for f in seen["frames"])
    assert seen["status"]["sources"]["ir"]["uri"] == "array://"
