"""Sources: URI parsing, file timestamps, --loop, 16-bit frames, Y16 buffers, reconnect with back-off."""
from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.sources import (CaptureSource, ImageSequenceSource, Source, SourceThread, open_source,
                                       opencv_has_gstreamer)


def write_video(path, frames, fps=10.0, fourcc="MJPG"):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def read_all(source: Source, limit: int = 100):
    source.open()
    frames = []
    while len(frames) < limit and (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def test_bad_uris_are_one_line_errors(tmp_path):
    with pytest.raises(SageEdgeError, match="unsupported source"):
        open_source("ftp://x/y")
    with pytest.raises(SageEdgeError, match="no such file"):
        open_source(f"file://{tmp_path}/missing.mp4")
    with pytest.raises(SageEdgeError, match="no such device"):
        open_source("v4l2:///dev/video97")
    with pytest.raises(SageEdgeError, match="csi://N"):
        open_source("csi://left")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SageEdgeError, match="no images"):
        open_source(f"file://{tmp_path}/empty")
    with pytest.raises(SageEdgeError, match="IR format"):
        open_source(f"file://{tmp_path}", ir_format="rgb")


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_uris_need_gstreamer():
    for uri in ("csi://0", "gst://videotestsrc ! appsink"):
        with pytest.raises(SageEdgeError, match="GStreamer"):
            open_source(uri)


def test_image_directory_and_glob_with_media_timestamps_and_loop(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((8, 10), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(f"file://{tmp_path}", fps=10)
    assert isinstance(source, ImageSequenceSource) and not source.live
    frames = read_all(source)
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert [int(f.image[0, 0]) for f in frames] == [0, 50, 100]
    looped = read_all(open_source(f"file://{tmp_path}/*.png", fps=10, loop=True), limit=7)
    assert [int(f.image[0, 0]) for f in looped] == [0, 50, 100, 0, 50, 100, 0]
    assert np.all(np.diff([f.timestamp for f in looped]) > 0)  # stamps keep increasing across loops


def test_16bit_images_keep_their_depth(tmp_path):
    counts = (np.arange(80, dtype=np.uint16).reshape(8, 10) * 700 + 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "000.png"), counts)
    frame = read_all(open_source(str(tmp_path / "000.png")))[0]  # a bare path is file://
    assert frame.image.dtype == np.uint16
    np.testing.assert_array_equal(frame.image, counts)


def test_video_file_uses_media_timestamps_and_loops(tmp_path):
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(5)]
    write_video(tmp_path / "clip.avi", frames, fps=10.0)
    source = open_source(f"file://{tmp_path}/clip.avi")
    assert isinstance(source, CaptureSource) and not source.live
    got = read_all(source)
    assert len(got) == 5
    assert source.period == pytest.approx(0.1)
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-3)
    assert [int(round(f.image.mean() / 40)) for f in got] == [0, 1, 2, 3, 4]
    looped = read_all(open_source(f"file://{tmp_path}/clip.avi", loop=True), limit=12)
    assert len(looped) == 12
    assert [int(round(f.image.mean() / 40)) for f in looped] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert looped[5].timestamp == pytest.approx(0.5, abs=1e-3)
    assert np.all(np.diff([f.timestamp for f in looped]) > 0)


def test_y16_raw_buffer_is_reassembled():
    class FakeCap:
        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_WIDTH: 4, cv2.CAP_PROP_FRAME_HEIGHT: 3}[prop]

    source = CaptureSource("v4l2:///dev/video0", "/dev/video0", cv2.CAP_V4L2, live=True, y16=True)
    source._cap = FakeCap()
    counts = np.arange(12, dtype="<u2").reshape(3, 4) * 5000
    raw = np.frombuffer(counts.tobytes(), np.uint8).reshape(1, -1)  # how V4L2 hands over Y16 unconverted
    np.testing.assert_array_equal(source._decode_y16(raw), counts)
    np.testing.assert_array_equal(source._decode_y16(counts), counts)
    with pytest.raises(SageEdgeError, match="Y16"):
        source._decode_y16(np.zeros((3, 4, 3), np.uint8))


class FlakyCamera(Source):
    """A live camera that fails after ``fail_at`` frames and refuses to reopen ``refusals`` times."""

    live = True
    period = 0.01

    def __init__(self, fail_at=5, refusals=2):
        self.uri = "test://flaky"
        self.fail_at, self.refusals = fail_at, refusals
        self.opens = 0
        self.count = 0
        self.failed = False

    def open(self):
        self.opens += 1
        if self.failed and self.refusals > 0:
            self.refusals -= 1
            raise SageEdgeError("device not present")

    def read(self):
        if self.count == self.fail_at and not self.failed:
            self.failed = True
            raise OSError("USB disconnect")
        self.count += 1
        return self._frame(np.full((4, 4), self.count, np.uint8), None, self.count)


def test_source_thread_reconnects_a_failing_live_source():
    camera = FlakyCamera()
    stop = threading.Event()
    got, messages = [], []

    def sink(frame):
        if frame is not None:
            got.append(frame)
            if len(got) >= 12:
                stop.set()
        return not stop.is_set()

    thread = SourceThread("ir", camera, sink, stop, messages.append)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert thread.error is None
    assert thread.reconnects == 1 and thread.failures == 1
    assert camera.opens == 4  # first open, two refusals, then back
    assert len(got) >= 12
    assert all(b.arrival >= a.arrival for a, b in zip(got, got[1:]))
    assert any("USB disconnect" in m for m in messages) and any("reconnected" in m for m in messages)


def test_source_thread_reports_a_file_source_failure(tmp_path):
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "001.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    stop = threading.Event()
    thread = SourceThread("vis", open_source(str(tmp_path)), lambda f: True, stop)
    thread.start()
    thread.join(timeout=10)
    assert isinstance(thread.error, SageEdgeError) and "001.png" in str(thread.error)
    assert thread.state == "failed"


def test_live_source_that_stays_away_is_given_up_after_the_reconnect_timeout():
    camera = FlakyCamera(fail_at=3, refusals=10**6)
    stop, messages = threading.Event(), []
    thread = SourceThread("ir", camera, lambda frame: True, stop, messages.append, reconnect_timeout=0.6)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=10)
    took = time.monotonic() - started
    assert not thread.is_alive() and thread.error is None and thread.state == "failed"
    assert isinstance(thread.lost, SageEdgeError)
    assert "ir: test://flaky did not come back within 0.6 s (device not present); gave up" in str(thread.lost)
    assert 0.6 <= took < 5.0
    assert camera.opens >= 3  # retried (0.1, 0.2, 0.4 s ...) before giving up
    # the same reason is logged once, not at every attempt
    assert sum("still unavailable" in m for m in messages) == 1


def test_rtsp_address_and_a_server_that_is_down():
    from sage_edge.runtime.sources import _rtsp_address, probe_tcp

    assert _rtsp_address("rtsp://user:p@ss@cam.local/stream") == ("cam.local", 554)
    assert _rtsp_address("rtsp://10.0.0.2:8554/a/b") == ("10.0.0.2", 8554)
    assert _rtsp_address("rtsps://[fe80::1]:1234/x") == ("fe80::1", 1234)
    assert _rtsp_address("rtsps://cam/x") == ("cam", 322)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(SageEdgeError, match=r"^rtsp://127.0.0.1/x: cannot connect to 127\.0\.0\.1:\d+ \(connection refused\)$"):
            probe_tcp("rtsp://127.0.0.1/x", "127.0.0.1", port)


class BufferedStream:
    """What OpenCV's FFmpeg capture hands over after opening an RTSP stream: ``backlog`` frames it buffered
    while probing (returned at once), then live frames, one per ``period`` (grab waits for the network)."""

    def __init__(self, backlog: int, period: float) -> None:
        self.backlog, self.period, self.index = backlog, period, -1

    def grab(self) -> bool:
        self.index += 1
        if self.index >= self.backlog:
            time.sleep(self.period)
        return True

    def retrieve(self):
        return True, np.full((4, 4, 3), self.index, np.uint8)

    def read(self):
        self.grab()
        return self.retrieve()

    def get(self, prop: int) -> float:
        return 1000.0 * self.period * self.index if prop == cv2.CAP_PROP_POS_MSEC else 0.0

    def release(self) -> None:
        pass


@pytest.mark.parametrize("backlog", [0, 1, 27])
def test_rtsp_source_starts_at_the_live_edge_not_in_ffmpegs_backlog(backlog):
    source = CaptureSource("rtsp://cam/x", "rtsp://cam/x", cv2.CAP_FFMPEG, live=True, probe=("cam", 554))
    source._cap, source._catch_up = BufferedStream(backlog, period=0.05), True
    first = source.read()
    assert first.image[0, 0, 0] == max(backlog, 1)  # the first frame that had to wait for the network
    second = source.read()
    assert second.image[0, 0, 0] == first.image[0, 0, 0] + 1


def test_gstreamer_yuv_frames_are_one_fatal_line():
    from sage_edge.runtime.sources import SourceFormatError

    class Caps:  # a 160x128 stream as OpenCV reports it
        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_WIDTH: 160, cv2.CAP_PROP_FRAME_HEIGHT: 128}.get(prop, 0)

    source = CaptureSource("gst://x ! appsink", "x ! appsink", cv2.CAP_GSTREAMER, live=True)
    source._cap = Caps()
    source._check_gstreamer_frame(np.zeros((128, 160, 3), np.uint8))  # BGR: fine
    source._check_gstreamer_frame(np.zeros((128, 160), np.uint16))  # GRAY16_LE: fine
    with pytest.raises(SourceFormatError, match="160x192 frames with 1 channel"):
        source._check_gstreamer_frame(np.zeros((192, 160), np.uint8))  # I420 as one plane
    with pytest.raises(SourceFormatError, match="2 channel"):
        source._check_gstreamer_frame(np.zeros((128, 160, 2), np.uint8))  # YUY2
