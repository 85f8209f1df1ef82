"""`sage-edge run` end to end: image sequences from shared pairs equal `sage-edge fuse`; SIGINT leaves a
playable video; bad sources/outputs are one line with no partial output."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_cli

SIZE = (160, 128)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory, ivif_dir):
    """IR and visible image sequences from a few shared pairs (MSRS, VIFB), resized to one common size."""
    root = tmp_path_factory.mktemp("sequences")
    (root / "ir").mkdir()
    (root / "vis").mkdir()
    sources = []
    for dataset, count in (("MSRS", 3), ("VIFB", 3)):
        stems = sorted(p for p in (ivif_dir / dataset / "ir").iterdir())[:count]
        sources += [(p, next((ivif_dir / dataset / "vis").glob(p.stem + ".*"))) for p in stems]
    for i, (ir_path, vis_path) in enumerate(sources):
        ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
        vis = cv2.imread(str(vis_path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(root / "ir" / f"{i:03d}.png"), cv2.resize(ir, SIZE, interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(root / "vis" / f"{i:03d}.png"), cv2.resize(vis, SIZE, interpolation=cv2.INTER_AREA))
    return root


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_run_on_file_sequences_equals_fuse(tmp_path, sequences, official_onnx):
    out = tmp_path / "frames"
    # --border-pad 0 on both: run must pass it to the backend as fuse does (with its default, 16, the borders differ)
    result = run_cli("run", "--ir", f"file://{sequences}/ir", "--vis", f"file://{sequences}/vis",
                     "--model", official_onnx, "--backend", "onnxruntime", "--output", f"file://{out}/",
                     "--border-pad", "0")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^frames 6 in", result.stdout, re.M)
    fused_dir = tmp_path / "fused"
    result = run_cli("fuse", sequences / "ir", sequences / "vis", "-o", fused_dir, "--model", official_onnx,
                     "--backend", "onnxruntime", "--border-pad", "0")
    assert result.returncode == 0, result.stderr
    frames = sorted(out.iterdir())
    expected = sorted(fused_dir.iterdir())
    assert [p.name for p in frames] == [f"{i:06d}.png" for i in range(6)]  # exactly one frame per pair
    assert len(expected) == 6
    for got, want in zip(frames, expected):
        a, b = cv2.imread(str(got), cv2.IMREAD_UNCHANGED), cv2.imread(str(want), cv2.IMREAD_UNCHANGED)
        assert a.shape == b.shape == (SIZE[1], SIZE[0], 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, got.name


def test_sigint_leaves_a_video_readable_to_its_last_frame(tmp_path, sequences, official_onnx):
    video = tmp_path / "run.mp4"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sage_edge.cli", "run", "--ir", f"file://{sequences}/ir", "--vis",
         f"file://{sequences}/vis", "--model", str(official_onnx), "--loop", "--overlay", "-o", f"file://{video}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        # the video is being written (under a temporary name) once the first frame is out
        while not list(tmp_path.glob(".run.mp4*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped: SIGINT" in stdout
    frames = int(re.search(r"^frames (\d+) in", stdout, re.M).group(1))
    assert frames >= 2
    assert video.is_file() and not list(tmp_path.glob(".run.mp4*"))
    cap = cv2.VideoCapture(str(video))
    decoded = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (SIZE[1], SIZE[0], 3)
        decoded += 1
    assert decoded == frames == int(cap.get(cv2.CAP_PROP_FRAME_COUNT))


def test_bad_sources_and_outputs_are_one_line_errors(tmp_path, sequences, official_onnx, official_checkpoint):
    ir, vis = f"file://{sequences}/ir", f"file://{sequences}/vis"
    cases = [
        (["--ir", "v4l2:///dev/video97", "--vis", vis], "no such device"),
        (["--ir", "bogus://x", "--vis", vis], "unsupported source"),
        (["--ir", ir, "--vis", f"file://{tmp_path}/nothing"], "no such file"),
        (["--ir", ir, "--vis", vis, "-o", "display://0"], "pip install 'sage-edge[gui]'"),
        (["--ir", ir, "--vis", vis, "-o", "rtp://127.0.0.1:5000"], "GStreamer"),
        (["--ir", ir, "--vis", vis, "-o", "rtsp://@:8554/fused"], "GStreamer"),
        (["--ir", ir, "--vis", vis, "-o", f"file://{tmp_path}/x.gif"], "unknown output type"),
        (["--ir", ir, "--vis", vis, "-o", "smtp://x"], "unsupported output"),
        (["--ir", ir, "--vis", vis, "--homography", f"{tmp_path}/H.json"], "no such homography"),
    ]
    for args, message in cases:
        if message == "GStreamer":
            from sage_edge.runtime.sources import opencv_has_gstreamer

            if opencv_has_gstreamer():
                continue
        line = one_line_error(run_cli("run", *args, "--model", official_onnx, "-o", f"file://{tmp_path}/out.avi"))
        assert message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial outputs
    line = one_line_error(run_cli("run", "--ir", ir, "--vis", vis, "--model", official_checkpoint))
    assert "run needs an ONNX model or a TensorRT engine" in line


def test_run_works_with_torch_unimportable(tmp_path, sequences, official_onnx):
    code = "import sys; sys.modules['torch'] = None\nfrom sage_edge.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "run", "--ir", f"file://{sequences}/ir", "--vis", f"file://{sequences}/vis",
         "--model", str(official_onnx), "--frames", "2", "--layout", "side-by-side", "-o", f"file://{tmp_path}/f/"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    frames = sorted((tmp_path / "f").iterdir())
    assert len(frames) == 2 and cv2.imread(str(frames[0])).shape == (SIZE[1], 3 * SIZE[0], 3)


def test_rtsp_credential_options_are_one_line_errors(tmp_path, sequences):
    """--rtsp-credentials without an rtsp:// output, an unreadable file, a malformed credential: one line each."""
    ir, vis = f"file://{sequences}/ir", f"file://{sequences}/vis"
    good = tmp_path / "cred.txt"
    good.write_text("# viewer\npilot:s3cret\n")
    line = one_line_error(run_cli("run", "--ir", ir, "--vis", vis, "--rtsp-credentials", good, "-o", f"file://{tmp_path}/o/"))
    assert "--rtsp-credentials is for rtsp:// outputs" in line
    line = one_line_error(run_cli("run", "--ir", ir, "--vis", vis, "--rtsp-credentials", tmp_path / "none.txt",
                                  "-o", "rtsp://127.0.0.1:1/x"))
    assert "no such file" in line
    bad = tmp_path / "bad.txt"
    bad.write_text("just-a-user\n")
    line = one_line_error(run_cli("run", "--ir", ir, "--vis", vis, "--rtsp-credentials", bad, "-o", "rtsp://127.0.0.1:1/x"))
    assert "USER:PASSWORD" in line and not list(tmp_path.glob("o/*"))
