"""The pipeline: every file pair once, stage timings, the worker owns the backend, 16-bit IR, registration,
layouts, live faults (pause, never stale, reconnect), clean failures."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.backend import Backend, TensorSpec
from sage_edge.runtime.outputs import Output, VideoFileOutput
from sage_edge.runtime.pipeline import STAGES, Pipeline
from sage_edge.runtime.registration import Homography
from sage_edge.runtime.sources import ArraySource, Source
from sage_edge.thermal import normalise_ir


class EchoBackend(Backend):
    """A uint8-contract backend whose fused image is the IR frame replicated to BGR (easy to check)."""

    name = "echo"

    def __init__(self, record=None):
        self.record = record if record is not None else {}
        self.record["thread"] = threading.current_thread().name
        self.closed = False

    @property
    def inputs(self):
        return [TensorSpec("ir", np.dtype(np.uint8), (1, "h", "w", 1)), TensorSpec("vis", np.dtype(np.uint8), (1, "h", "w", 3))]

    @property
    def outputs(self):
        return [TensorSpec("fused", np.dtype(np.uint8), (1, "h", "w", 3)), TensorSpec("fused_y", np.dtype(np.uint8), (1, "h", "w", 1))]

    def infer(self, feed):
        ir = feed["ir"]
        return {"fused": np.repeat(ir, 3, axis=3), "fused_y": ir.copy()}

    def close(self):
        self.record["closed"] = True


class Collect(Output):
    def __init__(self):
        self.frames, self.closed, self.aborted = [], False, False

    def write(self, frame):
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def colour(h, w, value=10):
    """A visible frame that is not grey (grey-replicated BGR would be fused as grey)."""
    return np.full((h, w, 3), (value, value + 20, value + 40), np.uint8)


def frames_with_ids(n, h=32, w=40, channels=1, start=0):
    out = []
    for i in range(start, start + n):
        v = (i * 7) % 256
        image = np.full((h, w), v, np.uint8) if channels == 1 else np.full((h, w, 3), (v, 255 - v, 3), np.uint8)
        out.append(image)
    return out


def test_file_sources_fuse_every_pair_in_order_with_stage_timings():
    record = {}
    sink = Collect()
    pipeline = Pipeline(ArraySource(frames_with_ids(23)), ArraySource(frames_with_ids(23, channels=3)),
                        backend_factory=lambda: EchoBackend(record), outputs=[sink])
    summary = pipeline.run()
    assert summary.frames == 23 and len(sink.frames) == 23
    assert [int(f[0, 0, 0]) for f in sink.frames] == [(i * 7) % 256 for i in range(23)]
    assert sink.closed and not sink.aborted
    assert record["thread"] == "sage-infer" and record["closed"]  # created and closed by the worker
    assert summary.stop_reason == "end of input"
    assert summary.drops == {"ir": 0, "vis": 0, "pairs": 0, "output": 0}
    for stage in ("pairing_skew", "preprocess", "inference", "postprocess", "output", "latency"):
        assert summary.timings[stage]["n"] == 23, stage
    assert summary.timings["capture_wait"]["n"] == 22
    assert set(summary.timings) == set(STAGES)
    assert summary.timings["pairing_skew"]["max"] == 0.0
    assert summary.latency_p99_ms >= summary.latency_p50_ms > 0
    assert "frames 23" in summary.format()


def test_different_rates_skip_and_frame_limit():
    sink = Collect()
    ir = ArraySource(frames_with_ids(20), period=1 / 9)  # 9 Hz
    vis = ArraySource(frames_with_ids(66, channels=3), period=1 / 30)  # 30 Hz
    summary = Pipeline(ir, vis, backend_factory=EchoBackend, outputs=[sink]).run()
    assert summary.frames == 20  # each slow frame once
    assert summary.skipped["vis"] == 66 - 20
    assert summary.timings["pairing_skew"]["max"] <= 1000 / 18 + 1e-6
    sink2 = Collect()
    summary = Pipeline(ArraySource(frames_with_ids(50)), ArraySource(frames_with_ids(50, channels=3)),
                       backend_factory=EchoBackend, outputs=[sink2], frames=7).run()
    assert summary.frames == 7 and len(sink2.frames) == 7 and summary.stop_reason == "frame limit"


def test_16bit_ir_goes_through_the_thermal_normaliser():
    rng = np.random.default_rng(0)
    counts = [(rng.normal(20000 + 500 * i, 800, (24, 32))).clip(0, 65535).astype(np.uint16) for i in range(3)]
    vis = [colour(24, 32)] * 3
    sink = Collect()
    Pipeline(ArraySource(counts), ArraySource(vis), backend_factory=EchoBackend, outputs=[sink], smoothing=0.0).run()
    for frame, raw in zip(sink.frames, counts):
        np.testing.assert_array_equal(frame[..., 0], normalise_ir(raw))  # the code `fuse` uses
    smooth = Collect()
    Pipeline(ArraySource(counts), ArraySource(vis), backend_factory=EchoBackend, outputs=[smooth], smoothing=0.9).run()
    np.testing.assert_array_equal(smooth.frames[0], sink.frames[0])  # the first frame has no history
    assert not np.array_equal(smooth.frames[2], sink.frames[2])  # later bounds are smoothed over time


def test_homography_warp_side_by_side_and_overlay():
    ir = np.zeros((30, 40), np.uint8)
    ir[10:20, 10:20] = 200
    shift = np.array([[1, 0, 5], [0, 1, 3], [0, 0, 1]], np.float64)  # IR sits 5 px left / 3 px up of visible
    sink = Collect()
    Pipeline(ArraySource([ir]), ArraySource([colour(30, 40)]), backend_factory=EchoBackend,
             outputs=[sink], homography=Homography(shift, (40, 30), (40, 30)), crop=False).run()
    expected = cv2.warpPerspective(ir, shift, (40, 30))
    np.testing.assert_array_equal(sink.frames[0][..., 0], expected)
    assert sink.frames[0][13, 15, 0] == 200 and sink.frames[0][10, 10, 0] == 0
    cropped = Collect()
    Pipeline(ArraySource([ir]), ArraySource([colour(30, 40)]), backend_factory=EchoBackend,
             outputs=[cropped], homography=Homography(shift, (40, 30), (40, 30))).run()
    assert cropped.frames[0].shape == (27, 35, 3)  # the common field
    side = Collect()
    Pipeline(ArraySource([ir]), ArraySource([colour(30, 40, 9)]), backend_factory=EchoBackend,
             outputs=[side], layout="side-by-side").run()
    assert side.frames[0].shape == (30, 120, 3)
    np.testing.assert_array_equal(side.frames[0][:, 40:80], colour(30, 40, 9))
    big = [np.zeros((120, 160), np.uint8)] * 2
    plain, marked = Collect(), Collect()
    Pipeline(ArraySource(big), ArraySource([colour(120, 160)] * 2), backend_factory=EchoBackend,
             outputs=[plain]).run()
    Pipeline(ArraySource(big), ArraySource([colour(120, 160)] * 2), backend_factory=EchoBackend,
             outputs=[marked], overlay=True).run()
    # FPS / latency text drawn in white; anti-aliased strokes peak at 251 with OpenCV 4.6 (JetPack's), 255 later
    assert plain.frames[1].max() == 0 and marked.frames[1][:30].max() >= 240


def test_ir_is_resized_to_the_visible_size_without_homography():
    sink = Collect()
    Pipeline(ArraySource([np.full((12, 16), 77, np.uint8)]), ArraySource([colour(24, 32)]),
             backend_factory=EchoBackend, outputs=[sink]).run()
    assert sink.frames[0].shape == (24, 32, 3) and sink.frames[0].min() == 77


class Camera(Source):
    """A live camera at ~100 Hz that is unplugged for ``outage`` seconds after ``fail_after`` frames."""

    live = True

    def __init__(self, channels, fail_after=None, outage=0.5):
        self.uri = f"test://camera{channels}"
        self.channels, self.fail_after, self.outage = channels, fail_after, outage
        self.count = 0
        self.down_until = None
        self.back_at = None
        self.failed_at = None

    def open(self):
        if self.down_until is not None:
            if time.monotonic() < self.down_until:
                raise SageEdgeError("no such device")
            self.back_at = time.monotonic()
            self.down_until = None

    def read(self):
        time.sleep(0.01)
        if self.fail_after is not None and self.count == self.fail_after and self.failed_at is None:
            self.failed_at = time.monotonic()
            self.down_until = self.failed_at + self.outage
            raise OSError("device unplugged")
        self.count += 1
        shape = (16, 20) if self.channels == 1 else (16, 20, 3)
        return self._frame(np.full(shape, self.count % 256, np.uint8), None, self.count)


class Recording(Collect):
    def __init__(self, pipeline_ref):
        super().__init__()
        self.times = []

    def write(self, frame):
        super().write(frame)
        self.times.append(time.monotonic())


def test_live_source_failure_pauses_fusion_and_reconnects():
    ir_cam = Camera(1, fail_after=15, outage=0.5)
    vis_cam = Camera(3)
    sink = Recording(None)
    messages = []
    pipeline = Pipeline(ir_cam, vis_cam, backend_factory=EchoBackend, outputs=[sink], frames=40, duration=30,
                        log=messages.append)
    # The window (half the slower measured period) moves as periods are measured: record every one used.
    windows = []
    measured_window = pipeline.pairer.max_skew
    pipeline.pairer.max_skew = lambda: windows.append(measured_window()) or windows[-1]
    summary = pipeline.run()
    skews = pipeline.timings.values("pairing_skew")
    assert summary.frames == 40 and summary.stop_reason == "frame limit"
    assert summary.reconnects["ir"] == 1 and summary.reconnects["vis"] == 0
    assert ir_cam.back_at is not None
    # never a stale pair: every fused pair is within the pairing window in force
    assert skews.max() <= max(w for w in windows if w is not None) * 1000 + 1e-6
    # nothing was fused while the IR camera was away, and fusion resumed after it came back
    during = [t for t in sink.times if ir_cam.failed_at + 0.05 < t < ir_cam.back_at]
    after = [t for t in sink.times if t > ir_cam.back_at]
    assert during == [] and len(after) >= 20
    assert any("device unplugged" in m for m in messages)


def test_live_source_that_cannot_open_is_one_error():
    class Missing(Source):
        uri = "v4l2:///dev/video9"

        def open(self):
            raise SageEdgeError("v4l2:///dev/video9: cannot open")

        def read(self):
            return None

    sink = Collect()
    with pytest.raises(SageEdgeError, match="video9: cannot open"):
        Pipeline(Missing(), Camera(3), backend_factory=EchoBackend, outputs=[sink], duration=10).run()
    assert sink.frames == []


def test_backend_failure_and_output_failure(tmp_path):
    def broken():
        raise SageEdgeError("model.onnx: not a loadable ONNX model")

    video = VideoFileOutput("file://x.avi", tmp_path / "x.avi", 10.0)
    with pytest.raises(SageEdgeError, match="not a loadable"):
        Pipeline(ArraySource(frames_with_ids(3)), ArraySource(frames_with_ids(3, channels=3)),
                 backend_factory=broken, outputs=[video]).run()
    assert list(tmp_path.iterdir()) == []  # nothing written

    class Full(Output):
        def write(self, frame):
            raise SageEdgeError("disk full")

    video = VideoFileOutput("file://y.avi", tmp_path / "y.avi", 10.0)
    with pytest.raises(SageEdgeError, match="disk full"):
        Pipeline(ArraySource(frames_with_ids(5)), ArraySource(frames_with_ids(5, channels=3)),
                 backend_factory=EchoBackend, outputs=[video, Full()]).run()
    assert list(tmp_path.iterdir()) == []  # the partial video was removed
    assert [t.name for t in threading.enumerate() if t.name.startswith("sage-")] == []  # no worker left stuck


def test_no_threads_left_behind():
    before = {t.ident for t in threading.enumerate()}
    Pipeline(ArraySource(frames_with_ids(4)), ArraySource(frames_with_ids(4, channels=3)),
             backend_factory=EchoBackend, outputs=[Collect()]).run()
    Pipeline(Camera(1), Camera(3), backend_factory=EchoBackend, outputs=[Collect()], frames=5).run()
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftover == []


class VanishingCamera(Source):
    """A live camera (20 ms a frame) that is unplugged after ``frames`` frames and never comes back."""

    live = True
    period = 0.02

    def __init__(self, frames: int, image: np.ndarray) -> None:
        self.uri, self.frames, self.image, self.count, self.gone = "test://cam", frames, image, 0, False

    def open(self):
        if self.gone:
            raise SageEdgeError("no such device")

    def read(self):
        if self.count >= self.frames:
            self.gone = True
            raise OSError("unplugged")
        time.sleep(self.period)
        self.count += 1
        return self._frame(self.image, None, self.count)


def test_a_live_source_that_never_returns_ends_the_run_after_a_clean_close():
    sink = Collect()
    ir, vis = VanishingCamera(10, np.zeros((8, 8), np.uint8)), VanishingCamera(10**6, colour(8, 8))
    with pytest.raises(SageEdgeError, match=r"^ir: test://cam did not come back within 0.5 s \(no such device\)"):
        Pipeline(ir, vis, backend_factory=EchoBackend, outputs=[sink], reconnect_timeout=0.5).run()
    assert sink.frames and sink.closed and not sink.aborted  # a recording keeps what was fused
