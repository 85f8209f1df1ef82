"""sage-edge doctor: runs here, reports what is missing, never crashes; OpenCV/GStreamer and Jetson facts."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from conftest import run_cli

import install as doubles_install  # noqa: E402


def test_doctor_runs_and_reports_missing_pieces():
    result = run_cli("doctor", timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if len(line.split()) > 1}
    for name in ("platform", "python", "CUDA", "TensorRT", "pycuda", "onnxruntime", "opencv", "memory", "disk"):
        assert name in lines, result.stdout
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert lines["TensorRT"].startswith("MISSING") and "python3-libnvinfer" in lines["TensorRT"]
    assert "GStreamer" in lines["opencv"]


def test_doctor_json():
    import json

    result = run_cli("doctor", "--json", timeout=120)
    checks = json.loads(result.stdout)
    assert {"status", "name", "detail", "fix"} <= set(checks[0]) and any(c["name"] == "TensorRT" for c in checks)


def _fake_cv2(path: str, gstreamer: str):
    return types.SimpleNamespace(__file__=path, __version__="4.8.0",
                                 getBuildInformation=lambda: f"  Video I/O:\n    GStreamer:                   {gstreamer}\n")


def test_pip_opencv_on_jetson_is_flagged_with_the_fix():
    from sage_edge.doctor import check_opencv

    pip = _fake_cv2("/home/u/venv/lib/python3.10/site-packages/cv2/__init__.py", "NO")
    [check] = check_opencv(on_jetson=True, cv2=pip)
    assert check.status == "warning" and "site-packages" in check.detail and "GStreamer: NO" in check.detail
    assert "pip uninstall opencv-python" in check.fix and "python3-opencv" in check.fix
    jetpack = _fake_cv2("/usr/lib/python3/dist-packages/cv2/python-3.10/cv2.so", "YES (1.20.3)")
    [check] = check_opencv(on_jetson=True, cv2=jetpack)
    assert check.status == "OK" and "YES (1.20.3)" in check.detail
    [check] = check_opencv(on_jetson=False, cv2=pip, apt_opencv=False)
    assert check.status == "OK"  # a desktop without GStreamer is fine
    [check] = check_opencv(on_jetson=False, cv2=pip, apt_opencv=True)
    assert check.status == "warning"  # ... unless it hides apt's python3-opencv from this Python


def test_pip_opencv_wheel_is_named_and_shadowing_is_said():
    from sage_edge.doctor import check_opencv

    site = "/home/u/.local/lib/python3.11/site-packages"
    pip = _fake_cv2(f"{site}/cv2/__init__.py", "NO")
    [check] = check_opencv(on_jetson=True, cv2=pip, wheels=[("opencv-python-headless", "4.10.0.84", site)])
    assert check.status == "warning"
    assert "pip wheel opencv-python-headless 4.10.0.84 (the cv2 imported)" in check.detail
    jetpack = _fake_cv2("/usr/lib/python3/dist-packages/cv2/python-3.10/cv2.so", "YES (1.20.3)")
    [check] = check_opencv(on_jetson=True, cv2=jetpack, wheels=[])
    assert check.status == "OK" and check.detail.endswith("; no pip OpenCV wheel")
    [check] = check_opencv(on_jetson=True, cv2=jetpack, wheels=[("opencv-python", "4.10.0.84", site)])
    assert check.status == "OK" and "(installed, not the cv2 imported)" in check.detail


@pytest.mark.parametrize("l4t, jetpack, tensorrt", [
    ("35.2.1", "5.1", "8.5.2"), ("35.3.1", "5.1.1", "8.5.2"), ("35.4.1", "5.1.2", "8.5.2"), ("35.5.0", "5.1.3", "8.5.2"),
    ("35.6.0", "5.1.4", "8.5.2"), ("36.2.0", "6.0 DP", "8.6.2"), ("36.3.0", "6.0", "8.6.2"), ("36.4.0", "6.1", "10.3"),
    ("36.4.3", "6.2", "10.3"), ("36.4.4", "6.2.1", "10.3"), ("38.2.1", "7.0", "10.13"), ("38.4.0", "7.1", "10.13"),
    ("39.2.0", "7.2", "11.x (TensorRT 11.4.1 needs JetPack 7.2.2+)"), ("35.9.9", "5.x", None),
])
def test_l4t_to_jetpack_to_tensorrt(l4t, jetpack, tensorrt):
    from sage_edge.doctor import jetpack_for_l4t, tensorrt_for_jetpack

    assert jetpack_for_l4t(l4t) == jetpack
    assert tensorrt_for_jetpack(jetpack) == tensorrt


def test_jetson_facts():
    from sage_edge.doctor import check_jetson

    checks = check_jetson({"module": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.3.0", "nvpmodel": "MAXN",
                           "jetson_clocks": False})
    by_name = {c.name: c for c in checks}
    assert by_name["jetson"].detail.startswith("NVIDIA Jetson AGX Orin")
    assert "JetPack 6.0" in by_name["L4T"].detail and "8.6.2" in by_name["L4T"].detail
    assert by_name["jetson_clocks"].status == "warning" and "jetson_clocks" in by_name["jetson_clocks"].fix


def test_tensorrt_and_pycuda_checks_with_doubles(monkeypatch):
    from sage_edge.doctor import check_pycuda, check_tensorrt

    doubles_install.install(monkeypatch, "8.5.2")
    import importlib

    [trt] = check_tensorrt(importlib.import_module)
    assert trt.status == "OK" and "8.5.2" in trt.detail  # uint8 I/O parses on 8.5 (review B6): no warning
    doubles_install.install(monkeypatch, "11.0.0", gpu={"integrated": True, "name": "Orin"})
    [trt] = check_tensorrt(importlib.import_module)
    assert trt.status == "OK" and "strongly typed" in trt.detail and "no DLA" in trt.detail
    [cuda] = check_pycuda(importlib.import_module)
    assert cuda.status == "OK" and "Orin" in cuda.detail and "zero-copy" in cuda.detail
