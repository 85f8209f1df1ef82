"""A hostile HTTP load for ``http://`` outputs: normal viewers, slow and stalled readers, over-limit viewers,
idle sockets and malformed requests, all at once, on 127.0.0.1 only, bounded in count and time.

    python tests/http_load.py --port P [--seconds 60] [--viewers 4 --slow 2 --stalled 2 --busy 12
                              --idle 100 --malformed 80] [--user U --password P] [--host 127.0.0.1]

Standard library only and one thread (``selectors``), so it can run in its own process beside the pipeline
(``benchmarks/bench_http_load.py``, ``tests/test_http_load.py``) and stand for remote machines. Prints one
JSON object (see ``LoadReport``) on stdout. Every connection is reopened when the server closes it, so the
count holds for the whole run:

* viewer: GET /stream with the credential; reads everything, checks each multipart JPEG (SOI..EOI,
  Content-Length), records frames and the longest gap between two.
* slow: the same request; reads at most ``--slow-bytes`` per 0.5 s (a viewer on a poor link).
* stalled: the same request; one read, then never again (its receive buffer is small). It watches the
  TCP state (``TCP_INFO``, without reading) for the server closing it, records when, and reconnects.
* busy: GET /stream with the credential, while the viewer slots are taken: reads the status line
  (expect 503 at once, or 200 when a slot happens to be free) and hangs up; again every second.
* idle: connects and sends nothing; records when the server closes it.
* malformed: a cycle of bad requests (garbage, oversized or too many headers, a too long request line, no
  or wrong credential, unknown path, POST, HTTP/2.0), each expecting its error code; every 0.5 s.
"""
from __future__ import annotations

import argparse
import base64
import errno
import json
import selectors
import socket
import sys
import time

BOUNDARY = b"--sageedgeframe"  # runtime/http_output.py BOUNDARY
ESTABLISHED = 1  # Linux include/net/tcp_states.h TCP_ESTABLISHED; tcp_info's first byte is the state


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def good_request(path: str, auth: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: sage-edge-load"]
    if auth:
        lines.append(f"Authorization: Basic {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def malformed_requests(auth: str | None) -> list[tuple[str, bytes, int]]:
    """(name, request bytes, the status code the server must answer)."""
    auth_line = f"Authorization: Basic {auth}\r\n".encode() if auth else b""
    wrong = base64.b64encode(b"nobody:wrong").decode()
    cases = [
        ("garbage", b"\x00\x16\x03\x01 not http at all\r\n\r\n", 400),
        ("no_version", b"GET /stream\r\n\r\n", 400),
        ("http2", b"GET / HTTP/2.0\r\n\r\n", 505),
        ("header_without_colon", b"GET / HTTP/1.1\r\nthis is not a header\r\n\r\n", 400),
        ("long_request_line", b"GET /" + b"a" * 12000 + b" HTTP/1.1\r\n\r\n", 414),
        ("oversized_header", b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        ("too_many_headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n", 431),
    ]
    if auth:
        cases += [
            ("no_credential", b"GET /frame.jpg HTTP/1.1\r\n\r\n", 401),
            ("wrong_credential", f"GET /stream HTTP/1.1\r\nAuthorization: Basic {wrong}\r\n\r\n".encode(), 401),
            ("bad_base64", b"GET /status.json HTTP/1.1\r\nAuthorization: Basic %%%\r\n\r\n", 401),
        ]
    cases += [
        ("unknown_path", b"GET /../../etc/passwd HTTP/1.1\r\n" + auth_line + b"\r\n", 404),
        ("post", b"POST /stream HTTP/1.1\r\n" + auth_line + b"Content-Length: 5\r\n\r\nhello", 405),
    ]
    return cases


class Conn:
    def __init__(self, kind: str, index: int) -> None:
        self.kind, self.index = kind, index
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.opened = 0.0
        self.connected = False
        self.request = b""
        self.status: int | None = None
        self.headers_done = False
        self.expect = 0
        self.case = ""
        self.reopen_at = 0.0
        self.last_frame = 0.0


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.auth = base64.b64encode(f"{args.user}:{args.password}".encode()).decode() if args.user else None
        self.cases = malformed_requests(self.auth)
        self.case_index = 0
        self.start = time.monotonic()
        self.report = {
            "viewers": [dict(frames=0, bytes=0, dropped=0, bad_parts=0, max_gap_s=0.0, statuses={})
                        for _ in range(args.viewers)],
            "slow": [dict(frames=0, bytes=0, dropped=0, statuses={}) for _ in range(args.slow)],
            "stalled": dict(closed_by_server=0, lifetimes_s=[], statuses={}),
            "busy": dict(statuses={}, latencies_s=[]),
            "idle": dict(closed_by_server=0, lifetimes_s=[]),
            "malformed": dict(sent=0, answered=0, unanswered=0, wrong={}, statuses={}),
            "connect_errors": 0, "peak_open": 0, "seconds": 0.0,
        }
        self.conns: list[Conn] = []
        for kind, count in (("viewer", args.viewers), ("slow", args.slow), ("stalled", args.stalled),
                            ("busy", args.busy), ("idle", args.idle), ("malformed", args.malformed)):
            self.conns += [Conn(kind, i) for i in range(count)]
        self.open_count = 0

    # ------------------------------------------------------------------ connections
    def open(self, conn: Conn, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if conn.kind == "stalled":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        err = sock.connect_ex((self.args.host, self.args.port))
        if err not in (0, errno.EINPROGRESS):
            self.report["connect_errors"] += 1
            sock.close()
            conn.reopen_at = now + 0.5
            return
        conn.sock, conn.buf, conn.opened, conn.connected = sock, bytearray(), now, False
        conn.status, conn.headers_done, conn.last_frame = None, False, 0.0
        if conn.kind in ("viewer", "slow", "stalled", "busy"):
            conn.request = good_request("/stream", self.auth)
        elif conn.kind == "malformed":
            conn.case, conn.request, conn.expect = self.cases[self.case_index % len(self.cases)]
            self.case_index += 1
        else:
            conn.request = b""
        self.sel.register(sock, selectors.EVENT_WRITE, conn)
        self.open_count += 1
        self.report["peak_open"] = max(self.report["peak_open"], self.open_count)

    def close(self, conn: Conn, now: float, reopen_after: float) -> None:
        if conn.sock is not None:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            conn.sock = None
            self.open_count -= 1
        conn.reopen_at = now + reopen_after

    def server_closed(self, conn: Conn, now: float) -> None:
        """The server ended this connection (EOF or reset)."""
        kind = conn.kind
        if kind in ("viewer", "slow"):
            self.report["viewers" if kind == "viewer" else "slow"][conn.index]["dropped"] += 1
            self.close(conn, now, 0.2)
        elif kind == "idle":
            self.report["idle"]["closed_by_server"] += 1
            self.report["idle"]["lifetimes_s"].append(round(now - conn.opened, 3))
            self.close(conn, now, 0.5)
        elif kind == "stalled":
            self.report["stalled"]["closed_by_server"] += 1
            self.report["stalled"]["lifetimes_s"].append(round(now - conn.opened, 3))
            self.close(conn, now, 0.2)
        else:
            self.close(conn, now, 0.5)

    # ------------------------------------------------------------------ events
    def on_connected(self, conn: Conn, now: float) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.report["connect_errors"] += 1
            self.close(conn, now, 0.5)
            return
        conn.connected = True
        if conn.request:
            try:
                conn.sock.sendall(conn.request)  # small, or refused at once: loopback buffers take it
            except BlockingIOError:
                pass
            except OSError:
                self.server_closed(conn, now)
                return
            if conn.kind == "malformed":
                self.report["malformed"]["sent"] += 1
        if conn.kind == "slow":
            self.sel.unregister(conn.sock)  # reads on the timer only
        else:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def on_readable(self, conn: Conn, now: float) -> None:
        try:
            data = conn.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if conn.kind == "malformed" and conn.status is None:
                self.report["malformed"]["unanswered"] += 1  # closed before an answer (e.g. evicted)
            self.server_closed(conn, now)
            return
        self.consume(conn, data, now)

    def consume(self, conn: Conn, data: bytes, now: float) -> None:
        conn.buf += data
        if conn.status is None:
            line_end = conn.buf.find(b"\r\n")
            if line_end < 0:
                return
            try:
                conn.status = int(conn.buf[:line_end].split()[1])
            except (IndexError, ValueError):
                conn.status = -1
            self.on_status(conn, now)
            if conn.sock is None:
                return
        if conn.kind in ("viewer", "slow"):
            self.parse_parts(conn, now)
        elif conn.kind == "stalled":
            conn.buf = bytearray()
            if conn.sock is not None and conn.status == 200:
                self.sel.unregister(conn.sock)  # never reads again (until the check)

    def on_status(self, conn: Conn, now: float) -> None:
        key = str(conn.status)
        if conn.kind in ("viewer", "slow"):
            stats = self.report["viewers" if conn.kind == "viewer" else "slow"][conn.index]["statuses"]
            stats[key] = stats.get(key, 0) + 1
            if conn.status != 200:
                self.close(conn, now, 0.5)
        elif conn.kind == "stalled":
            stats = self.report["stalled"]["statuses"]
            stats[key] = stats.get(key, 0) + 1
            if conn.status != 200:
                self.close(conn, now, 0.5)
        elif conn.kind == "busy":
            busy = self.report["busy"]
            busy["statuses"][key] = busy["statuses"].get(key, 0) + 1
            busy["latencies_s"].append(round(now - conn.opened, 4))
            self.close(conn, now, 1.0)
        elif conn.kind == "malformed":
            bad = self.report["malformed"]
            bad["answered"] += 1
            bad["statuses"][key] = bad["statuses"].get(key, 0) + 1
            if conn.status != conn.expect:
                bad["wrong"][conn.case] = bad["wrong"].get(conn.case, 0) + 1
            self.close(conn, now, 0.5)
        elif conn.kind == "idle":  # a 408 before the close
            pass

    def parse_parts(self, conn: Conn, now: float) -> None:
        stats = self.report["viewers" if conn.kind == "viewer" else "slow"][conn.index]
        buf = conn.buf
        if not conn.headers_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[:end + 4]
            conn.headers_done = True
        while True:
            start = buf.find(BOUNDARY)
            if start < 0:
                return
            head_end = buf.find(b"\r\n\r\n", start)
            if head_end < 0:
                return
            length = None
            for line in bytes(buf[start:head_end]).split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length is None:
                stats["bad_parts"] = stats.get("bad_parts", 0) + 1
                del buf[:head_end + 4]
                continue
            body_start = head_end + 4
            if len(buf) < body_start + length + 2:
                return
            jpeg = bytes(buf[body_start:body_start + length])
            trailer = bytes(buf[body_start + length:body_start + length + 2])
            if not (jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")) or trailer != b"\r\n":
                stats["bad_parts"] = stats.get("bad_parts", 0) + 1
            else:
                stats["frames"] += 1
                stats["bytes"] += length
                if conn.last_frame and "max_gap_s" in stats:
                    stats["max_gap_s"] = max(stats["max_gap_s"], round(now - conn.last_frame, 3))
                conn.last_frame = now
            del buf[:body_start + length + 2]

    def tick(self, now: float) -> None:
        """Reopen closed connections, let slow readers read a little, check stalled ones."""
        for conn in self.conns:
            if conn.sock is None:
                if now >= conn.reopen_at:
                    self.open(conn, now)
                continue
            if conn.kind == "slow" and conn.connected:
                try:
                    data = conn.sock.recv(self.args.slow_bytes)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.server_closed(conn, now)
                else:
                    self.consume(conn, data, now)
            elif (conn.kind == "stalled" and conn.connected and conn.status == 200
                  and tcp_state(conn.sock) != ESTABLISHED):
                self.server_closed(conn, now)  # reset (or FIN) from the server; seen without reading

    def run(self) -> dict:
        end = self.start + self.args.seconds
        next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_tick:
                self.tick(now)
                next_tick = now + 0.5
            for key, mask in self.sel.select(timeout=min(0.1, max(0.0, end - now))):
                conn = key.data
                if conn.sock is None:
                    continue
                if not conn.connected:
                    self.on_connected(conn, time.monotonic())
                elif mask & selectors.EVENT_READ:
                    self.on_readable(conn, time.monotonic())
            # rounds of at least --round-ms: this process stands in for remote machines, so it should wake the
            # machine it shares with the pipeline as little as it can (the server sees the same load, batched)
            spare = self.args.round_ms / 1000.0 - (time.monotonic() - now)
            if spare > 0:
                time.sleep(spare)
        now = time.monotonic()
        ages = [now - c.opened for c in self.conns if c.kind == "stalled" and c.sock is not None and c.connected]
        self.report["stalled"]["open_at_end_max_age_s"] = round(max(ages), 3) if ages else None
        for conn in self.conns:
            self.close(conn, now, 0.0)
        self.report["seconds"] = round(now - self.start, 2)
        busy = self.report["busy"]
        lat = sorted(busy.pop("latencies_s"))
        busy["latency_max_s"] = lat[-1] if lat else None
        busy["latency_p50_s"] = lat[len(lat) // 2] if lat else None
        stalled = self.report["stalled"]
        life = sorted(stalled.pop("lifetimes_s"))
        stalled["lifetime_min_s"] = life[0] if life else None
        stalled["lifetime_max_s"] = life[-1] if life else None
        idle = self.report["idle"]
        life = sorted(idle.pop("lifetimes_s"))
        idle["lifetime_min_s"] = life[0] if life else None
        idle["lifetime_max_s"] = life[-1] if life else None
        return self.report


# --------------------------------------------------------------------------------------------- measuring
# A pipeline with an http:// output, with or without the load above (in its own process), and what it cost
# this process. Used by tests/test_http_load.py (short) and benchmarks/bench_http_load.py (200 for 60 s).


def proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mib() -> float:
    return proc_status("VmRSS") / 1024.0


def os_threads() -> int:
    """Every thread of this process, native ones too (ONNX Runtime's pool): what the kernel counts."""
    return proc_status("Threads")


def open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def thread_cpu_s(native_id: int) -> float | None:
    """User + system CPU seconds of one thread of this process (None once it has ended)."""
    import os

    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_sockets() -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed meanwhile
    return count


def thread_switches(native_id: int) -> int | None:
    """Context switches of one thread of this process so far (each one a wake-up or a preemption)."""
    try:
        with open(f"/proc/self/task/{native_id}/status") as f:
            return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    except OSError:
        return None


def measure(make_pipeline, windows: list[tuple[str, float]], load_args: list[str], client_nice: int = 0,
            warmup_s: float = 2.0) -> dict:
    """One pipeline (``make_pipeline()``: a ``Pipeline`` with one http:// output, running until stopped),
    measured in consecutive ``windows`` of (mode, seconds): mode "none" (no client) or "load" (this module's
    load with ``load_args``, in its own process at ``client_nice`` lower priority, standing in for remote
    machines). Alternating windows in one run put machine load on both alike.

    Returns {"windows": [{mode, seconds, fps, frames, peak and last {rss (MiB), threads (OS), py_threads,
    fds, sockets}, pipeline_cpu_ms_per_frame, server_cpu_ms_per_frame, server_cpu_s, server_wakeups_per_s,
    client_cpu_s, client (its report)}], "before"/"after": {the same counts} of this process before the
    pipeline existed and after it ended, "http": the server's counters, "summary", "stop_reason"}.
    """
    import gc
    import os
    import resource
    import subprocess
    import threading

    from sage_edge.runtime.outputs import Output

    def snapshot() -> dict:
        """This process at rest: threads of an earlier pipeline (ONNX Runtime's pool) may take a moment to end."""
        gc.collect()
        last, steady_since, give_up = os_threads(), time.monotonic(), time.monotonic() + 10
        while time.monotonic() - steady_since < 1.0 and time.monotonic() < give_up:
            time.sleep(0.1)
            now_threads = os_threads()
            if now_threads != last:
                last, steady_since = now_threads, time.monotonic()
        return dict(rss=rss_mib(), threads=last, py_threads=threading.active_count(), fds=open_fds(),
                    sockets=open_sockets())

    before = snapshot()
    pipe = make_pipeline()
    http = next(o for o in pipe.outputs if hasattr(o, "stats"))
    times: list[float] = []

    class Clock(Output):  # records when each frame leaves the pipeline
        uri = "clock://"

        def write(self, frame) -> None:
            times.append(time.monotonic())

    pipe.outputs.append(Clock())
    samples: list[dict] = []
    results: list[dict] = []
    done = threading.Event()

    def sample() -> None:
        me = threading.get_native_id()
        last = dict(server_cpu=0.0, server_switches=0)
        while not done.wait(0.2):
            server_cpu = thread_cpu_s(http._thread.native_id)
            server_switches = thread_switches(http._thread.native_id)
            last = dict(
                time=time.monotonic(), rss=rss_mib(), fds=open_fds(), sockets=open_sockets(),
                threads=os_threads() - 2, py_threads=threading.active_count() - 2,  # not sampler and control
                process_cpu=sum(os.times()[:2]), sampler_cpu=thread_cpu_s(me) or 0.0,
                server_cpu=last["server_cpu"] if server_cpu is None else server_cpu,
                server_switches=last["server_switches"] if server_switches is None else server_switches)
            samples.append(last)

    def control() -> None:
        try:
            deadline = time.monotonic() + 600
            while len(times) < 2 and time.monotonic() < deadline and not done.is_set():
                time.sleep(0.05)  # the model is loaded and frames flow
            time.sleep(warmup_s)
            for mode, seconds in windows:
                client = None
                usage = resource.getrusage(resource.RUSAGE_CHILDREN)
                if mode == "load":
                    accepted = http.stats()["accepted"]
                    client = subprocess.Popen(
                        [sys.executable, __file__, "--port", str(http.port), "--seconds", str(seconds + 1.0),
                         *load_args], stdout=subprocess.PIPE, text=True,
                        preexec_fn=(lambda: os.nice(client_nice)) if client_nice else None)
                    while http.stats()["accepted"] == accepted and client.poll() is None:
                        time.sleep(0.01)  # the window opens when the load arrives
                start = time.monotonic()
                time.sleep(seconds)
                end = time.monotonic()
                report = None
                if client is not None:
                    out, _ = client.communicate(timeout=120)
                    report = json.loads(out) if client.returncode == 0 and out.strip() else None
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                inside = [t for t in times if start <= t <= end]
                window = [x for x in samples if start <= x["time"] <= end] or samples[-1:]
                first, last = window[0], window[-1]
                keys = ("rss", "threads", "py_threads", "fds", "sockets")
                frames = max(1, sum(1 for t in times if first["time"] <= t <= last["time"]))
                server_cpu = last["server_cpu"] - first["server_cpu"]
                pipeline_cpu = (last["process_cpu"] - first["process_cpu"] - server_cpu
                                - (last["sampler_cpu"] - first["sampler_cpu"]))
                results.append({
                    "mode": mode, "seconds": seconds, "frames": len(inside),
                    "fps": (len(inside) - 1) / (inside[-1] - inside[0]) if len(inside) > 1 else 0.0,
                    "peak": {k: max(x[k] for x in window) for k in keys},
                    "last": {k: last[k] for k in keys},
                    # CPU seconds a fused frame costs this process, apart from the server thread (and the
                    # sampler): the machine's other load changes FPS a lot, this much less
                    "pipeline_cpu_ms_per_frame": 1000 * pipeline_cpu / frames,
                    "server_cpu_ms_per_frame": 1000 * server_cpu / frames,
                    "server_cpu_s": server_cpu,
                    "server_wakeups_per_s": ((last["server_switches"] - first["server_switches"])
                                             / max(1e-9, last["time"] - first["time"])),
                    "client_cpu_s": (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime),
                    "client": report,
                })
                if client is not None:
                    time.sleep(1.0)  # the server notices the client's last sockets closing
        finally:
            pipe.stop("measured")

    threads = [threading.Thread(target=sample, name="sampler", daemon=True),
               threading.Thread(target=control, name="control", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        summary = pipe.run()
    finally:
        done.set()
        for thread in threads:
            thread.join()
    del pipe
    return {"windows": results, "before": before, "after": snapshot(), "http": http.stats(),
            "summary": summary.format(), "stop_reason": summary.stop_reason}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    for kind, default in (("viewers", 4), ("slow", 2), ("stalled", 2), ("busy", 12), ("idle", 100),
                          ("malformed", 80)):
        parser.add_argument(f"--{kind}", type=int, default=default)
    parser.add_argument("--slow-bytes", type=int, default=8192, help="bytes a slow reader reads per 0.5 s")
    parser.add_argument("--round-ms", type=float, default=10.0, help="handle socket events in rounds this long")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    if args.viewers + args.slow + args.stalled + args.busy + args.idle + args.malformed > 1000:
        parser.error("at most 1000 connections")
    json.dump(Load(args).run(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
