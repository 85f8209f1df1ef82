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
    """Read ``count`` JPEG parts from a multipart MJPEG response (its status line and headers first)."""
    status = sock_file.readline()
    assert b"200" in status
    headers = {}
    while (line := sock_file.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    return read_parts_more(sock_file, count)


def read_parts_more(sock_file, count):
    """``count`` more JPEG parts from a stream whose HTTP headers were already read."""
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


# --------------------------------------------------------------------------------------------- access control
# and bounded resources (issue 16). Small servers on 127.0.0.1 port 0, short timeouts.

import base64  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from sage_edge.runtime import http_output  # noqa: E402
from sage_edge.runtime.credentials import Credentials, read_credentials_file  # noqa: E402
from sage_edge.runtime.http_output import HttpSettings  # noqa: E402

PATHS = ("/", "/index.html", "/stream", "/frame.jpg", "/status.json", "/no/such/path")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def exchange(port, request: bytes, limit=64 * 1024, timeout=10.0):
    """Send raw bytes; return (status code, headers dict, body bytes) of what comes back (up to ``limit``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while len(data) < limit:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else None
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), []).append(value.strip())
    return code, headers, body


def get(port, path, authorization=None, method="GET", limit=64 * 1024):
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return exchange(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode(), limit=limit)


@pytest.fixture()
def protected():
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0,
                          settings=HttpSettings(credentials=Credentials("ops", "pa:ss wörd"), token="t0ken-123"))
    out.write(frame(3))
    yield out
    out.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_every_path_and_method_needs_the_credential(protected, path, method):
    for authorization in (None, basic("ops", "wrong"), basic("someone", "pa:ss wörd"), "Bearer wrong",
                          "Basic not-base64!", basic("ops", "pa:ss wörd") + "x"):
        code, headers, body = get(protected.port, path, authorization, method)
        assert code == 401, (authorization, code)
        assert 'Basic realm="sage-edge", charset="UTF-8"' in headers["www-authenticate"]
        assert 'Bearer realm="sage-edge"' in headers["www-authenticate"]
        assert b"\xff\xd8" not in body and b"frames" not in body  # no frame, no status
        if method == "HEAD":
            assert body == b""
        else:
            assert body.count(b"\n") == 1 and len(body) < 100
    code, _, _ = get(protected.port, path, basic("ops", "pa:ss wörd"), method, limit=100)
    expected = 405 if method == "POST" else 404 if path == "/no/such/path" else 200
    assert code == expected


def test_token_as_bearer_or_query_and_the_page_passes_it_on(protected):
    port = protected.port
    assert get(port, "/frame.jpg", "Bearer t0ken-123")[0] == 200
    assert get(port, "/frame.jpg?token=t0ken-123")[0] == 200
    assert get(port, "/frame.jpg?token=t0ken-12")[0] == 401
    assert get(port, "/frame.jpg?token=t0ken-1234")[0] == 401
    code, _, page = get(port, "/?token=t0ken-123")
    assert code == 200
    assert b'src="/stream?token=t0ken-123"' in page and b"fetch('/status.json?token=t0ken-123')" in page
    code, _, page = get(port, "/", basic("ops", "pa:ss wörd"))  # basic: the browser resends it by itself
    assert b'src="/stream"' in page


def test_secrets_are_compared_as_fixed_length_digests_in_constant_time(protected, monkeypatch):
    compared = []
    real = http_output.hmac.compare_digest

    def spy(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(http_output.hmac, "compare_digest", spy)
    for given in ("x", "p" * 500, "pa:ss wörd"):
        get(protected.port, "/status.json", basic("ops", given))
        get(protected.port, "/status.json", f"Bearer {given}")
    assert len(compared) == 6 and set(compared) == {(32, 32)}  # SHA-256 digests: timing says nothing of length


def test_credential_from_uri_env_or_file_and_never_shown(tmp_path, monkeypatch):
    monkeypatch.delenv("SAGE_EDGE_HTTP_CREDENTIALS", raising=False)
    monkeypatch.delenv("SAGE_EDGE_HTTP_TOKEN", raising=False)
    out = open_output("http://ops:p%40ss%3Aw0rd@127.0.0.1:0")
    try:
        assert out.uri == "http://ops:***@127.0.0.1:0" and out.protected
        code, _, page = get(out.port, "/", basic("ops", "p@ss:w0rd"))
        assert code == 200 and b"w0rd" not in page and b"ops:***@" in page
        assert get(out.port, "/", basic("ops", "p%40ss%3Aw0rd"))[0] == 401
    finally:
        out.close()
    monkeypatch.setenv("SAGE_EDGE_HTTP_CREDENTIALS", "env-user:env-pass")
    monkeypatch.setenv("SAGE_EDGE_HTTP_TOKEN", "env-token")
    out = open_output("http://127.0.0.1:0")
    try:
        assert get(out.port, "/status.json", basic("env-user", "env-pass"))[0] == 200
        assert get(out.port, "/status.json", "Bearer env-token")[0] == 200
        assert get(out.port, "/status.json")[0] == 401
    finally:
        out.close()
    path = tmp_path / "creds"
    path.write_text("# for the field laptop\n\n  file-user:file pass  \n")
    creds = read_credentials_file(path, "--http-credentials")
    assert (creds.user, creds.password) == ("file-user", "file pass") and "file pass" not in repr(creds)
    with pytest.raises(SageEdgeError, match="also given by --http-credentials"):
        open_output("http://a:b@127.0.0.1:0", http=HttpSettings(credentials=creds))


@pytest.mark.parametrize("uri_or_file, message", [
    ("http://ops@127.0.0.1:0", "give USER:PASSWORD before the '@'"),
    ("http://:s3cr3t-value@127.0.0.1:0", "USER:PASSWORD \\(both non-empty\\)"),
    ("file:missing", "no such file"),
    ("file:", "holds no USER:PASSWORD line"),
    ("file:just-a-password", "USER:PASSWORD"),
])
def test_bad_credentials_are_one_line_errors_without_the_secret(tmp_path, uri_or_file, message, monkeypatch):
    monkeypatch.delenv("SAGE_EDGE_HTTP_CREDENTIALS", raising=False)
    with pytest.raises(SageEdgeError, match=message) as info:
        if uri_or_file.startswith("file:"):
            path = tmp_path / "creds"
            if uri_or_file != "file:missing":
                path.write_text("# nothing yet\n" + uri_or_file[5:])
            read_credentials_file(path, "--http-credentials")
        else:
            open_output(uri_or_file)
    assert "\n" not in str(info.value) and "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("rest, user, password, host_part, shown", [
    ("ops:pw@@:8080", "ops", "pw", "@:8080", "http://ops:***@@:8080"),  # '@' host: every interface
    ("ops:p@w@@:8080", "ops", "p@w", "@:8080", "http://ops:***@@:8080"),
    ("ops:p%40w%2F%3A@10.0.0.2:8080/x", "ops", "p@w/:", "10.0.0.2:8080/x", "http://ops:***@10.0.0.2:8080/x"),
    ("@:8080", None, None, "@:8080", "http://@:8080"),
    ("127.0.0.1:8080", None, None, "127.0.0.1:8080", "http://127.0.0.1:8080"),
])
def test_uri_userinfo_is_split_from_the_host_and_redacted(rest, user, password, host_part, shown):
    from sage_edge.runtime.credentials import redact_uri, split_userinfo

    creds, remainder = split_userinfo("http://" + rest, rest)
    assert remainder == host_part
    assert (creds.user, creds.password) == (user, password) if creds else user is None
    assert redact_uri("http://" + rest) == shown


def test_all_interfaces_without_a_credential_warns_once(monkeypatch):
    monkeypatch.delenv("SAGE_EDGE_HTTP_CREDENTIALS", raising=False)
    monkeypatch.delenv("SAGE_EDGE_HTTP_TOKEN", raising=False)
    for uri, warns in (("http://@:0", True), ("http://0.0.0.0:0", True), ("http://127.0.0.1:0", False),
                       ("http://u:p@@:0", False)):
        out = open_output(uri)
        try:
            assert (out.warning is not None) == warns, uri
            if warns:
                assert "\n" not in out.warning and "SAGE_EDGE_HTTP_CREDENTIALS" in out.warning
        finally:
            out.close()


def test_viewers_past_the_limit_get_503_at_once_and_a_freed_slot_is_reused():
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0, settings=HttpSettings(max_viewers=2))
    try:
        out.write(frame(1))
        first, second = connect(out.port), connect(out.port)
        with first.makefile("rb") as f1, second.makefile("rb") as f2:
            read_parts(f1, 1), read_parts(f2, 1)
            start = time.monotonic()
            code, headers, body = get(out.port, "/stream")
            assert code == 503 and time.monotonic() - start < 1.0
            assert headers["retry-after"] == ["5"] and b"2 viewers already" in body
            assert out.viewers == 2 and out.stats()["busy"] == 1
        first.close()
        deadline = time.monotonic() + 5
        while out.viewers > 1 and time.monotonic() < deadline:
            out.write(frame(2))  # the server notices the hang-up when it next sends
            time.sleep(0.02)
        with connect(out.port) as third, third.makefile("rb") as f3:
            assert len(read_parts(f3, 1)) == 1
        second.close()
    finally:
        out.close()


def test_idle_and_trickling_connections_are_closed_at_the_request_timeout():
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0, settings=HttpSettings(request_timeout_s=0.5))
    try:
        idle = socket.create_connection(("127.0.0.1", out.port), timeout=5)
        trickle = socket.create_connection(("127.0.0.1", out.port), timeout=5)
        start = time.monotonic()
        for byte in b"GET /status.json HTTP/1.1\r\nX-Slow: " + b"a" * 40:  # one byte every 50 ms: never done
            if select.select([trickle], [], [], 0.05)[0] or time.monotonic() - start > 2:
                break  # the server answered
            trickle.send(bytes([byte]))
        for sock in (idle, trickle):
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.0 408 ")
            sock.close()
        assert 0.5 <= time.monotonic() - start < 2.5
        assert out.stats()["timed_out"] == 2
    finally:
        out.close()


def test_a_stalled_viewer_is_reset_and_the_writer_never_waits():
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0,
                          settings=HttpSettings(stall_timeout_s=0.5, send_buffer_bytes=32 * 1024))
    noise = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)  # ~50 KB as JPEG
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", out.port))
        sock.sendall(b"GET /stream HTTP/1.1\r\n\r\n")  # and never reads
        longest, start = 0.0, time.monotonic()
        while (out.viewers or time.monotonic() - start < 0.2) and time.monotonic() - start < 10:
            t0 = time.perf_counter()
            out.write(noise)
            longest = max(longest, time.perf_counter() - t0)
            time.sleep(0.01)
        assert out.viewers == 0 and out.stats()["stalled"] == 1
        assert time.monotonic() - start < 5  # buffers full (< 0.2 MB at ~5 MB/s), then 0.5 s without progress
        assert longest < 0.05  # write() only hands over a reference
        with pytest.raises(OSError):  # reset: the kernel dropped what it held for this client
            while sock.recv(1 << 20):
                pass
        sock.close()
    finally:
        out.close()


MALFORMED = [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
    (b"GET /stream\r\n\r\n", 400),  # HTTP/0.9
    (b"GET  /stream HTTP/1.1\r\n\r\n", 400),
    (b"GET /stream HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET stream HTTP/1.1\r\n\r\n", 400),
    (b"GET /stream HTTP/2.0\r\n\r\n", 505),
    (b"GET /stream HTTX/1.1\r\n\r\n", 400),
    (b"G\xc3\xa9T /stream HTTP/1.1\r\n\r\n", 400),
    (b"GET /stream HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /stream HTTP/1.1\r\nX-A: 1\r\n folded: continuation\r\n\r\n", 400),
    (b"GET /stream HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(33)) + b"\r\n", 431),
    (b"DELETE / HTTP/1.1\r\n\r\n", 405),
    (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", 404),
    (b"GET /stream/extra HTTP/1.1\r\n\r\n", 404),
]


@pytest.mark.parametrize("request_bytes, code", MALFORMED, ids=[f"{i}-{c}" for i, (_, c) in enumerate(MALFORMED)])
def test_malformed_requests_get_a_short_error_and_the_server_goes_on(request_bytes, code):
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0)
    try:
        out.write(frame(1))
        got, headers, body = exchange(out.port, request_bytes)
        assert got == code
        assert headers["connection"] == ["close"] and body.count(b"\n") == 1 and len(body) < 120
        assert body.startswith(str(code).encode()) and b"Traceback" not in body
        assert get(out.port, "/frame.jpg")[0] == 200  # still serving
        assert out.stats()["internal_errors"] == 0
    finally:
        out.close()


def test_an_idle_flood_cannot_lock_out_a_viewer():
    out = MjpegHttpOutput("http://127.0.0.1:0", "127.0.0.1", 0,
                          settings=HttpSettings(max_pending=4, request_timeout_s=30))
    flood = []
    try:
        out.write(frame(1))
        flood = [socket.create_connection(("127.0.0.1", out.port), timeout=5) for _ in range(4)]
        time.sleep(0.2)
        # the table is full of connections too young to judge: the next ones wait in the listen backlog
        flood += [socket.create_connection(("127.0.0.1", out.port), timeout=5) for _ in range(3)]
        time.sleep(0.2)
        assert out.stats()["accepted"] == 4 and out.stats()["accept_paused"] == 1 and out.stats()["pending"] == 4
        start = time.monotonic()
        with connect(out.port) as viewer, viewer.makefile("rb") as f:  # queued behind the 3
            assert len(read_parts(f, 1)) == 1
            # once the first 4 are a second old they make way, oldest first: the 3 queued ones, then the viewer
            assert time.monotonic() - start < http_output.EVICT_AFTER_S + 1.0
            assert out.stats()["evicted"] == 4 and out.stats()["accepted"] == 8 and out.viewers == 1
            assert out.stats()["pending"] == 3
    finally:
        for sock in flood:
            sock.close()
        out.close()


# --------------------------------------------------------------------------------------------- the run command

@pytest.fixture(scope="module")
def tiny_sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("http_sequences")
    rng = np.random.default_rng(2)
    for side, shape in (("ir", (64, 80)), ("vis", (64, 80, 3))):
        (root / side).mkdir()
        for i in range(3):
            cv2.imwrite(str(root / side / f"{i:03d}.png"), rng.integers(0, 255, shape, np.uint8))
    return root


def run_cli_args(seq, *extra):
    return [sys.executable, "-m", "sage_edge.cli", "run", "--ir", f"file://{seq}/ir", "--vis", f"file://{seq}/vis",
            "--model", "default", "--backend", "onnxruntime", *extra]


def test_run_warns_once_for_an_open_stream_and_checks_the_credentials_file(tiny_sequences, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGE_EDGE_HTTP")}
    result = subprocess.run(run_cli_args(tiny_sequences, "--frames", "2", "-o", "http://@:0", "--quiet"),
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "without a credential" in warnings[0]
    missing = subprocess.run(run_cli_args(tiny_sequences, "--frames", "2", "-o", "http://@:0", "--http-credentials",
                                          str(tmp_path / "nope")), capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"error: --http-credentials {tmp_path / 'nope'}: no such file"]
    (tmp_path / "creds").write_text("a:b\n")
    no_http = subprocess.run(run_cli_args(tiny_sequences, "-o", f"file://{tmp_path}/frames/", "--http-credentials",
                                          str(tmp_path / "creds")),
                             capture_output=True, text=True, env=env, timeout=300)
    assert no_http.returncode == 1 and no_http.stderr.strip().splitlines() == [
        "error: --http-credentials is for http:// outputs, and none is given"]
    assert not (tmp_path / "frames").exists()


def test_run_under_hostile_requests_serves_only_with_the_credential_and_prints_no_traceback(tiny_sequences, tmp_path):
    creds = tmp_path / "http.creds"
    creds.write_text("field:team-7-secret\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGE_EDGE_HTTP")}
    proc = subprocess.Popen(run_cli_args(tiny_sequences, "--loop", "-o", "http://127.0.0.1:0", "--http-credentials",
                                         str(creds), "--http-max-viewers", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        match = re.search(r"serving http://127\.0\.0\.1:0 at http://127\.0\.0\.1:(\d+)/ \(credential required\)", line)
        assert match, line
        port = int(match.group(1))
        good = basic("field", "team-7-secret")
        deadline = time.monotonic() + 60
        while get(port, "/frame.jpg", good)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the model loads, the first frame comes
        with connect_with(port, good) as viewer, viewer.makefile("rb") as f:
            assert len(read_parts(f, 2)) == 2
            for request_bytes, code in MALFORMED:  # unparseable: its error; parseable: 401 before any path
                assert exchange(port, request_bytes)[0] == (401 if code in (404, 405) else code)
            assert get(port, "/stream", basic("field", "wrong"))[0] == 401
            assert get(port, "/stream", good)[0] == 503  # one viewer allowed, and it is watching
            assert len(read_parts_more(f, 2)) == 2  # the viewer kept getting frames throughout
        status = json.loads(get(port, "/status.json", good)[2])
        assert status["state"] == "running" and status["http"]["internal_errors"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err and "team-7-secret" not in out + err
    assert re.search(r"^frames \d+ in", out, re.M)


def connect_with(port, authorization):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /stream HTTP/1.1\r\nAuthorization: {authorization}\r\n\r\n".encode())
    return sock