"""The live fusion pipeline behind ``sage-edge run``.

    capture thread (IR) --\\
                           +--> pairer --> inference worker --> output thread --> outputs
    capture thread (vis) -/                (owns the backend)

* One thread per source (``SourceThread``), stamping frames (monotonic capture time, or media time for files).
* The pairer matches frames by timestamp (``sage_edge.runtime.pairing``). With files every pair is fused, in
  order, and back-pressure flows to the readers (bounded queues). With live sources nothing ever waits: the
  newest pair replaces one the worker has not taken yet, and every drop is counted.
* One inference worker creates the backend on its own thread (a TensorRT engine's CUDA context belongs to the
  thread that made it), preprocesses (16-bit stretch with ``ThermalNormaliser``, registration), fuses with
  ``Fuser``, and postprocesses (layout, overlay).
* One output thread writes every output, so a slow disk or encoder never blocks inference.

Per-stage timings (``StageTimings``: capture wait, pairing skew, preprocess, inference, postprocess, output,
end-to-end latency) are kept for ``sage-edge bench --pipeline``; ``Pipeline(...).run()`` returns a
``RunSummary``. A stop (``stop()``, SIGINT/SIGTERM, ``frames``/``duration`` reached) finishes the frame in
flight, writes what is already fused, closes the outputs (videos stay playable) and returns normally.

This module is torch-free: it runs on a Jetson image without torch.
"""
from __future__ import annotations

import collections
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.imageio import as_ir, as_visible, check_not_swapped
from sage_edge.runtime.backend import Backend, open_backend
from sage_edge.runtime.credentials import Credentials
from sage_edge.runtime.fuser import Fuser
from sage_edge.runtime.http_output import HttpSettings
from sage_edge.runtime.outputs import Output, open_output
from sage_edge.runtime.pairing import IR, SIDES, VIS, Pair, Pairer
from sage_edge.runtime.registration import Homography, Registration, load_homography
from sage_edge.runtime.sources import RECONNECT_TIMEOUT_S, Frame, Source, SourceThread, open_source
from sage_edge.thermal import ThermalNormaliser

STAGES = ("capture_wait", "pairing_skew", "preprocess", "inference", "postprocess", "output", "latency")
LAYOUTS = ("fused", "side-by-side", "checkerboard")
STALL_S = 1.0
_END = object()
_EMPTY = object()


# --------------------------------------------------------------------------------------------- timings


class StageTimings:
    """Per-frame milliseconds for each stage in ``STAGES``, in ring buffers of the last ``maxlen`` frames.

    ``values(stage)`` -> numpy array, oldest first; ``stats()`` -> {stage: {n, mean, p50, p90, p99, max}}.
    Thread-safe. Storage is a float64 array per stage (8 bytes a sample), so a long live run stays small.
    ``pairing_skew`` holds the two frames' timestamp difference; ``latency`` runs from the later frame's
    arrival to the end of the output stage.
    """

    def __init__(self, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self._lock = threading.Lock()
        self._data = {stage: np.zeros(maxlen, np.float64) for stage in STAGES}
        self._count = {stage: 0 for stage in STAGES}

    def add(self, stage: str, milliseconds: float) -> None:
        with self._lock:
            n = self._count[stage]
            self._data[stage][n % self.maxlen] = milliseconds
            self._count[stage] = n + 1

    def values(self, stage: str) -> np.ndarray:
        with self._lock:
            n, data = self._count[stage], self._data[stage]
            if n <= self.maxlen:
                return data[:n].copy()
            cut = n % self.maxlen
            return np.concatenate([data[cut:], data[:cut]])

    def recent(self, stage: str, count: int) -> np.ndarray:
        with self._lock:
            n, data = self._count[stage], self._data[stage]
            take = min(count, n, self.maxlen)
            idx = (np.arange(n - take, n)) % self.maxlen
            return data[idx]

    def stats(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage in STAGES:
            v = self.values(stage)
            if v.size:
                p50, p90, p99 = np.percentile(v, [50, 90, 99])
                out[stage] = {"n": int(v.size), "mean": float(v.mean()), "p50": float(p50), "p90": float(p90),
                              "p99": float(p99), "max": float(v.max())}
            else:
                out[stage] = {"n": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
        return out


@dataclass
class RunSummary:
    """What ``Pipeline.run`` returns and ``sage-edge run`` prints on exit."""

    frames: int
    elapsed_s: float
    fps: float
    latency_p50_ms: float
    latency_p99_ms: float
    drops: dict
    skipped: dict
    reconnects: dict
    stop_reason: str
    backend: str
    timings: dict = field(default_factory=dict)
    live: bool = True  # False: both sources are files, read as fast as the pipeline takes them

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def format(self) -> str:
        t = self.timings
        stages = "  ".join(f"{s} {t[s]['p50']:.1f}" for s in ("capture_wait", "preprocess", "inference",
                                                            "postprocess", "output") if s in t)
        drops = ", ".join(f"{k} {v}" for k, v in self.drops.items())
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items())
        lines = [
            f"frames {self.frames} in {self.elapsed_s:.2f} s ({self.fps:.1f} FPS), stopped: {self.stop_reason}",
            f"latency p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms; backend {self.backend}",
            f"drops: {drops}; unpaired frames skipped: {skipped}",
            f"stage p50 ms: {stages}; pairing skew p50 {t.get('pairing_skew', {}).get('p50', 0.0):.1f} ms",
        ]
        if any(self.reconnects.values()):
            lines.append("reconnects: " + ", ".join(f"{k} {v}" for k, v in self.reconnects.items()))
        if not self.live:
            lines.append("note: file sources are read as fast as the pipeline takes them, so latency includes the "
                         "time a pair waits in the queue for the frames ahead of it; a camera's capture-to-output "
                         "latency is about the sum of the stage times")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- channels


class Channel:
    """A bounded FIFO between two threads. ``newest_only``: ``put`` never blocks, it drops the oldest item
    (counted in ``dropped``); otherwise ``put`` waits for room (back-pressure) until ``stop`` is set."""

    def __init__(self, maxsize: int, newest_only: bool) -> None:
        self.maxsize, self.newest_only = maxsize, newest_only
        self.items: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.closed = False
        self.dropped = 0

    def put(self, item: object, stop: threading.Event | None = None) -> bool:
        with self.cond:
            while len(self.items) >= self.maxsize:
                if self.newest_only:
                    self.items.popleft()
                    self.dropped += 1
                    break
                if stop is not None and stop.is_set():
                    return False
                self.cond.wait(0.1)
            self.items.append(item)
            self.cond.notify_all()
            return True

    def get(self, timeout: float = 0.1) -> object:
        """An item, ``_END`` once closed and empty, or ``_EMPTY`` after ``timeout``."""
        with self.cond:
            if not self.items and not self.closed:
                self.cond.wait(timeout)
            if self.items:
                item = self.items.popleft()
                self.cond.notify_all()
                return item
            return _END if self.closed else _EMPTY

    def close(self, discard: bool = False) -> None:
        with self.cond:
            if discard:
                self.items.clear()
            self.closed = True
            self.cond.notify_all()


# --------------------------------------------------------------------------------------------- stages


class Preprocessor:
    """Decoded frames -> the fuser's inputs: H x W uint8 IR and BGR (or grey) visible of the same size.

    16-bit IR goes through ``ThermalNormaliser`` (``smoothing`` = weight kept from the previous frame's
    bounds, so the picture does not flicker); 8-bit IR through ``as_ir``. With a registration, IR is warped
    onto the visible frame (and both cropped to the common field); without one, IR is resized to the visible
    size when they differ.
    """

    def __init__(self, ir_format: str = "auto", smoothing: float = 0.8, registration: Registration | None = None,
                 vis_size: tuple[int, int] | None = None) -> None:
        self.ir_format = ir_format
        self.normaliser = ThermalNormaliser(smoothing=smoothing)
        self.registration = registration
        self.vis_size = vis_size
        self._checked_order = False

    def ir(self, raw: np.ndarray) -> np.ndarray:
        single = raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1)
        if raw.dtype == np.uint16 and single:
            raw = raw.reshape(raw.shape[:2])
            if self.ir_format == "gray8":
                return np.floor(raw.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
            return self.normaliser(raw)
        if self.ir_format == "y16":
            raise SageEdgeError(f"--ir-format y16 but the IR source delivers {raw.dtype} frames with shape "
                                f"{raw.shape}; use --ir-format auto or gray8")
        return as_ir(raw)

    def normalise(self, ir_raw: np.ndarray, vis_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded frames -> IR uint8 and visible at ``vis_size``, before registration."""
        import cv2

        if not self._checked_order:  # the first pair tells whether --ir and --vis were given the wrong way round
            check_not_swapped(ir_raw, vis_raw, "from --ir", "from --vis", hint="swap --ir and --vis")
            self._checked_order = True
        vis = as_visible(vis_raw)
        if self.vis_size is not None and (vis.shape[1], vis.shape[0]) != self.vis_size:
            vis = cv2.resize(vis, self.vis_size, interpolation=cv2.INTER_AREA)
        return self.ir(ir_raw), vis

    def register(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IR warped onto the visible frame (and both cropped), or resized to it without a registration."""
        import cv2

        registration = self.registration  # one read: a drift update swaps the whole object
        if registration is not None:
            return registration(ir, vis)
        if ir.shape[:2] != vis.shape[:2]:
            ir = cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_LINEAR)
        return ir, vis

    def __call__(self, ir_raw: np.ndarray, vis_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.register(*self.normalise(ir_raw, vis_raw))


def compose(layout: str, ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """The output frame: the fused image, IR | visible | fused side by side, or a checkerboard of the
    registered IR and visible frames (``checkerboard``: edges crossing tile borders show misregistration)."""
    if layout == "fused":
        return fused
    import cv2

    def bgr(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image

    if layout == "checkerboard":
        from sage_edge.runtime.registration import checkerboard

        return checkerboard(ir, vis)
    return np.hstack([bgr(ir), bgr(vis), bgr(fused)])


def draw_overlay(frame: np.ndarray, fps: float, latency_ms: float) -> np.ndarray:
    import cv2

    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else np.ascontiguousarray(frame)
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms"
    scale = max(0.35, frame.shape[0] / 720.0)
    org = (6, int(6 + 22 * scale))
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


@dataclass
class _Work:
    pair: Pair
    image: np.ndarray
    done_infer: float


# --------------------------------------------------------------------------------------------- pipeline


class Pipeline:
    """IR + visible sources -> fused frames -> outputs. ``Pipeline(...).run()`` -> ``RunSummary``.

    ``ir``/``vis``: URIs or ``Source`` objects. The model: ``backend_factory()`` (called on the worker
    thread), or ``model`` (a file path) opened with ``open_backend(model, backend)``. ``outputs``: URIs or
    ``Output`` objects. ``frames``/``duration``: stop after that many fused frames / seconds. ``max_skew_ms``:
    pairing window (default: half the slower source's period). ``log``: one-line messages (reconnects).
    ``http``: access control and limits for ``http://`` outputs (``HttpSettings``).
    ``reconnect_timeout``: seconds a live source may stay unavailable before the run ends with one line
    (outputs are closed properly first; 0: retry forever). ``rtsp_credentials``: for ``rtsp://`` outputs.
    ``border_pad``: given to ``open_backend`` (None: the model's own border padding).
    """

    def __init__(
        self,
        ir: str | Source,
        vis: str | Source,
        *,
        model: str | None = None,
        backend: str = "auto",
        backend_factory: Callable[[], Backend] | None = None,
        outputs: Iterable[str | Output] = (),
        homography: str | Homography | None = None,
        crop: bool = True,
        max_skew_ms: float | None = None,
        ir_format: str = "auto",
        frames: int | None = None,
        duration: float | None = None,
        layout: str = "fused",
        overlay: bool = False,
        loop: bool = False,
        vis_size: tuple[int, int] | None = None,
        vis_fps: float | None = None,
        ir_fps: float | None = None,
        smoothing: float = 0.8,
        border_pad: int | None = None,
        queue_size: int = 2,
        log: Callable[[str], None] | None = None,
        status_interval_s: float | None = None,
        http: HttpSettings | None = None,
        reconnect_timeout: float = RECONNECT_TIMEOUT_S,
        rtsp_credentials: Credentials | None = None,
        register: str | None = None,
        register_interval: float = 5.0,
    ) -> None:
        if layout not in LAYOUTS:
            raise SageEdgeError(f"unknown layout '{layout}'; choose from {', '.join(LAYOUTS)}")
        if frames is not None and frames <= 0:
            raise SageEdgeError("--frames must be positive")
        if duration is not None and duration <= 0:
            raise SageEdgeError("--duration must be positive")
        if backend_factory is None:
            if model is None:
                raise SageEdgeError("no model given")
            from pathlib import Path

            from sage_edge.runtime.backend import choose_backend

            if not Path(model).is_file():
                raise SageEdgeError(f"{model}: no such model file")
            choose_backend(Path(model), backend)  # a model/backend mismatch fails now, before any output opens
            backend_factory = lambda: open_backend(model, backend, border_pad=border_pad)  # noqa: E731
        self.backend_factory = backend_factory
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.sources = [
            ir if isinstance(ir, Source) else open_source(ir, ir_format=ir_format, loop=loop, fps=ir_fps),
            vis if isinstance(vis, Source) else open_source(vis, loop=loop, size=vis_size, fps=vis_fps),
        ]
        self.live = any(s.live for s in self.sources)
        if isinstance(homography, (str, bytes)) or hasattr(homography, "__fspath__"):
            homography = load_homography(homography)  # type: ignore[arg-type]
        if register not in (None, "auto"):
            raise SageEdgeError(f"unknown registration mode '{register}'; use auto")
        if register == "auto" and register_interval <= 0:
            raise SageEdgeError("--register-interval must be positive")
        # --register auto: the worker estimates the homography (from --homography, if given, as a start)
        # on the first frames and tracks drift; see runtime.registration_tracker
        self.auto_register = None
        if register == "auto":
            from sage_edge.runtime.registration_tracker import AutoRegister

            self.auto_register = AutoRegister(homography, crop=crop, interval_s=register_interval,
                                              live=any(s.live for s in self.sources), log=self.log)
            homography = None
        registration = Registration(homography, crop=crop) if homography is not None else None
        self.preprocess = Preprocessor(ir_format, smoothing, registration, vis_size)
        self.layout, self.overlay = layout, overlay
        self.max_frames, self.duration = frames, duration
        self.max_skew = None if max_skew_ms is None else max_skew_ms / 1000.0
        self.pairer = Pairer(self.max_skew, live=self.live, periods=(self.sources[0].period, self.sources[1].period))
        periods = [s.period for s in self.sources if s.period]
        # Pairs come at the slower source's rate: a video recorded at it plays at the speed of the scene.
        self.output_fps = float(1.0 / max(periods) if periods else 30.0)
        self.status_interval_s = status_interval_s
        self.outputs: list[Output] = []
        try:
            for o in outputs:
                self.outputs.append(o if isinstance(o, Output) else
                                    open_output(o, self.output_fps, self.status, http=http,
                                                rtsp_credentials=rtsp_credentials))
        except BaseException:
            for made in self.outputs:  # e.g. an HTTP server already listening
                made.abort()
            raise
        self.timings = StageTimings()
        self.stop_event = threading.Event()
        self.stop_reason = "end of input"
        self.error: BaseException | None = None
        self.reconnect_timeout = reconnect_timeout
        self.lost: SageEdgeError | None = None  # a live source given up: the run ends after a clean close
        self.frames = 0
        self.backend_name = "?"
        self.queue_size = queue_size
        self._pair_lock = threading.Lock()
        self._side_channels = [Channel(queue_size, newest_only=False) for _ in SIDES]
        self._pairs = Channel(2 if not self.live else 1, newest_only=self.live)
        self._work = Channel(queue_size, newest_only=self.live)
        self._output_done = threading.Event()
        self._source_threads: list[SourceThread] = []
        self._threads: list[threading.Thread] = []
        self._ended = [False, False]
        self._recent_outputs: collections.deque[float] = collections.deque(maxlen=64)
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._ran = False

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "stopped") -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
            self.stop_event.set()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop("error")

    # ------------------------------------------------------------------ status (http page, bench)
    def fps(self) -> float:
        times = list(self._recent_outputs)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def drops(self) -> dict:
        stats = self.pairer.stats
        return {"ir": stats.dropped[IR], "vis": stats.dropped[VIS], "pairs": self._pairs.dropped,
                "output": self._work.dropped}

    def status(self) -> dict:
        now = time.monotonic()
        states = {}
        for side, thread in zip(SIDES, self._source_threads or [None, None]):
            state = thread.state if thread else "starting"
            # a live camera that has delivered nothing for a second is reported (its read may still return)
            if (state == "ok" and thread.source.live and thread.last_arrival is not None
                    and now - thread.last_arrival > STALL_S):
                state = "stalled"
            states[side] = state
        paused = any(s in ("reconnecting", "failed", "stalled") for s in states.values())
        latency = self.timings.recent("latency", 100)
        skew = self.timings.recent("pairing_skew", 100)
        max_skew = self.pairer.max_skew()
        return {
            "state": "stopping" if self.stop_event.is_set() else ("paused: waiting for a source" if paused else "running"),
            "sources": {side: {"uri": s.uri, "state": states[side]} for side, s in zip(SIDES, self.sources)},
            "frames": self.frames,
            "fps": round(self.fps(), 2),
            "latency_ms_p50": round(float(np.median(latency)), 2) if latency.size else None,
            "pairing_skew_ms_p50": round(float(np.median(skew)), 2) if skew.size else None,
            "max_skew_ms": None if max_skew is None else round(max_skew * 1000, 2),
            "drops": self.drops(),
            "skipped": dict(zip(SIDES, self.pairer.stats.skipped)),
            "reconnects": {side: t.reconnects for side, t in zip(SIDES, self._source_threads)},
            "backend": self.backend_name,
        }

    def status_line(self) -> str:
        """One line for the terminal while running: frames, FPS, latency and skew p50, drops."""
        s = self.status()

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        drops = "/".join(str(s["drops"][k]) for k in ("ir", "vis", "pairs", "output"))
        return (f"run: {s['frames']} frames, {s['fps']:.1f} FPS, latency p50 {ms(s['latency_ms_p50'])}, "
                f"pairing skew p50 {ms(s['pairing_skew_ms_p50'])}, drops ir/vis/pairs/output {drops}"
                + ("" if s["state"] == "running" else f" ({s['state']})"))

    # ------------------------------------------------------------------ capture -> pairer
    def _file_sink(self, side: int) -> Callable[[Frame | None], bool]:
        channel = self._side_channels[side]

        def sink(frame: Frame | None) -> bool:
            if frame is None:
                self._source_done(side)
                channel.close()
                return False
            return channel.put(frame, self.stop_event)

        return sink

    def _live_sink(self, side: int) -> Callable[[Frame | None], bool]:
        def sink(frame: Frame | None) -> bool:
            with self._pair_lock:
                if frame is None:
                    self._source_done(side)
                    self.pairer.end(side)
                else:
                    self.pairer.push(side, frame)
                while (pair := self.pairer.pop()) is not None:
                    self._pairs.put(pair)
                if all(self._ended):
                    self._pairs.close()
            return not self.stop_event.is_set()

        return sink

    def _source_done(self, side: int) -> None:
        self._ended[side] = True
        thread = self._source_threads[side]
        if thread.error is not None:
            self._fail(thread.error)
        elif thread.lost is not None and self.lost is None:
            self.lost = thread.lost
            self.stop("source lost")

    def _pair_loop(self) -> None:
        """File mode: pull frames from whichever side the pairer needs; every pair, in order."""
        try:
            while not self.stop_event.is_set():
                pair = self.pairer.pop()
                if pair is not None:
                    if not self._pairs.put(pair, self.stop_event):
                        break
                    continue
                side = self.pairer.want
                if side is None:
                    break
                item = self._side_channels[side].get(0.1)
                if item is _EMPTY:
                    continue
                if item is _END:
                    self.pairer.end(side)
                else:
                    self.pairer.push(side, item)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self._fail(exc)
        finally:
            self._pairs.close(discard=self.stop_event.is_set())

    # ------------------------------------------------------------------ inference worker
    def _infer_loop(self) -> None:
        perf = time.perf_counter
        try:
            engine = self.backend_factory()  # created here: this thread owns the engine (and its CUDA context)
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
            self._work.close()
            return
        try:
            self.backend_name = engine.describe()
            fuser = Fuser(engine)
            first = True
            while not self.stop_event.is_set():
                t0 = perf()
                item = self._pairs.get(0.1)
                if item is _EMPTY:
                    continue
                if item is _END:
                    break
                pair: Pair = item  # type: ignore[assignment]
                t1 = perf()
                if not first:
                    self.timings.add("capture_wait", (t1 - t0) * 1000)
                first = False
                self.timings.add("pairing_skew", pair.skew * 1000)
                ir, vis = self.preprocess.normalise(pair.ir.image, pair.vis.image)
                if self.auto_register is not None:
                    if not self.auto_register(ir, vis, pair.vis.timestamp):
                        continue  # no registration found yet (first frames only)
                    self.preprocess.registration = self.auto_register.registration
                ir, vis = self.preprocess.register(ir, vis)
                t2 = perf()
                fused = fuser.fuse(ir, vis)
                t3 = perf()
                image = compose(self.layout, ir, vis, fused)
                if self.overlay:
                    latency = self.timings.recent("latency", 30)
                    image = draw_overlay(image, self.fps(), float(np.median(latency)) if latency.size else 0.0)
                t4 = perf()
                self.timings.add("preprocess", (t2 - t1) * 1000)
                self.timings.add("inference", (t3 - t2) * 1000)
                self.timings.add("postprocess", (t4 - t3) * 1000)
                # a stop must not discard a fused frame: wait for the output thread, unless it has ended
                self._work.put(_Work(pair, image, t4), self._output_done)
                self.frames += 1
                if self.max_frames is not None and self.frames >= self.max_frames:
                    self.stop("frame limit")
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            try:
                engine.close()
                if self.auto_register is not None:
                    self.auto_register.close()
            finally:
                self._work.close()

    # ------------------------------------------------------------------ outputs
    def _output_loop(self) -> None:
        perf = time.perf_counter
        failed = False
        try:
            while True:
                item = self._work.get(0.2)
                if item is _EMPTY:
                    continue
                if item is _END:
                    break
                work: _Work = item  # type: ignore[assignment]
                t0 = perf()
                for output in self.outputs:
                    output.write(work.image)
                    if getattr(output, "closed_by_user", False):
                        self.stop("window closed")
                now = time.monotonic()
                self.timings.add("output", (perf() - t0) * 1000)
                arrival = max(work.pair.ir.arrival, work.pair.vis.arrival)
                self.timings.add("latency", (now - arrival) * 1000)
                self._recent_outputs.append(now)
                if self._t_first is None:
                    self._t_first = arrival
                self._t_last = now
        except BaseException as exc:  # noqa: BLE001
            failed = True
            self._fail(exc)
        finally:
            self._output_done.set()
            for output in self.outputs:
                try:
                    output.abort() if failed or self.error is not None else output.close()
                except Exception as exc:  # noqa: BLE001
                    self._fail(exc)

    # ------------------------------------------------------------------ run
    def run(self, handle_signals: bool = False) -> RunSummary:
        """Run until the input ends or a stop; return the summary. Raises ``SageEdgeError`` on failure.

        ``handle_signals`` (main thread only): SIGINT/SIGTERM stop cleanly; a second SIGINT aborts.
        """
        if self._ran:
            raise SageEdgeError("a Pipeline runs once; make a new one")
        self._ran = True
        previous = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, _frame: object) -> None:
                self.stop(signal.Signals(signum).name)
                signal.signal(signal.SIGINT, signal.default_int_handler)

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        start = time.monotonic()
        try:
            for side, source in enumerate(self.sources):
                sink = self._live_sink(side) if self.live else self._file_sink(side)
                self._source_threads.append(SourceThread(SIDES[side], source, sink, self.stop_event, self.log,
                                                          self.reconnect_timeout))
            self._threads = [threading.Thread(target=self._infer_loop, name="sage-infer", daemon=True),
                             threading.Thread(target=self._output_loop, name="sage-output", daemon=True)]
            if not self.live:
                self._threads.insert(0, threading.Thread(target=self._pair_loop, name="sage-pair", daemon=True))
            for thread in [*self._source_threads, *self._threads]:
                thread.start()
            output_thread = self._threads[-1]
            next_status = start + (self.status_interval_s or 0.0)
            while output_thread.is_alive():
                output_thread.join(0.1)
                now = time.monotonic()
                if self.duration is not None and now - start >= self.duration:
                    self.stop("duration")
                if self.status_interval_s and now >= next_status and output_thread.is_alive():
                    self.log(self.status_line())
                    next_status = now + self.status_interval_s
            self.stop(self.stop_reason)  # the output side is done: release the sources
            for side, channel in enumerate(self._side_channels):
                channel.close(discard=True)
            for thread in [*self._threads, *self._source_threads]:
                thread.join(5.0)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.error is not None:
            if isinstance(self.error, SageEdgeError):
                raise self.error
            if isinstance(self.error, KeyboardInterrupt):
                raise self.error
            raise SageEdgeError(f"pipeline failed: {type(self.error).__name__}: {self.error}") from self.error
        if self.lost is not None:
            raise self.lost  # after the outputs closed normally: a recording keeps everything fused until then
        return self.summary()

    def summary(self) -> RunSummary:
        latency = self.timings.values("latency")
        elapsed = (self._t_last - self._t_first) if self._t_first is not None and self._t_last is not None else 0.0
        p50, p99 = (np.percentile(latency, [50, 99]) if latency.size else (0.0, 0.0))
        return RunSummary(
            frames=self.frames,
            elapsed_s=elapsed,
            fps=self.frames / elapsed if elapsed > 0 else 0.0,
            latency_p50_ms=float(p50),
            latency_p99_ms=float(p99),
            drops=self.drops(),
            skipped=dict(zip(SIDES, self.pairer.stats.skipped)),
            reconnects={side: t.reconnects for side, t in zip(SIDES, self._source_threads)},
            stop_reason=self.stop_reason,
            backend=self.backend_name,
            timings=self.timings.stats(),
            live=self.live,
        )


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'640x512' -> (640, 512): WIDTHxHEIGHT, as every size flag (``sage_edge.sizes``)."""
    from sage_edge.sizes import parse_size as parse_width_height

    return None if text is None else parse_width_height(text, "--vis-size")


def run_pipeline(ir: str | Source, vis: str | Source, outputs: Sequence[str | Output] = (), **options) -> RunSummary:
    """One call: build a ``Pipeline`` and run it."""
    return Pipeline(ir, vis, outputs=outputs, **options).run()
