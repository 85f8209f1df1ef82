"""Sources: URI parsing, file timestamps, --loop, 16-bit frames, Y16 buffers, reconnect with back-off."""
from __future__ import annotations

import threading

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
