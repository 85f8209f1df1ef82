"""scripts/gpu_acceptance.sh on this CPU machine: it fails fast and clearly without a GPU, and its flow (steps
that fail, skip and pass, one report) works, run end to end against the TensorRT/pycuda TEST DOUBLES.

No NVIDIA GPU is available to this project's CI: the script itself has not run on a GPU from here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_acceptance.sh"


def _has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.startswith("GPU "):
        return True
    return Path("/proc/driver/nvidia/gpus").is_dir()


def _run(out: Path, *args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--python", sys.executable, *args],
                          capture_output=True, text=True, env=full_env, timeout=timeout)


def test_script_is_clean_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        done = subprocess.run([shellcheck, "-x", str(SCRIPT)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


@pytest.mark.skipif(_has_gpu(), reason="this machine has an NVIDIA GPU")
def test_no_gpu_fails_fast_with_a_report(tmp_path):
    done = _run(tmp_path / "acc")
    report = (tmp_path / "acc" / "report.md").read_text()
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr + report
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no NVIDIA GPU found")
    assert "no NVIDIA GPU found on this machine" in report and "| platform |" in report
    assert not list((tmp_path / "acc").glob("*.engine"))


SHIM = '''
import sys
sys.path.insert(0, {doubles!r})
import install
fake_pycuda = install.load("fake_pycuda")
fake_pycuda.reset()
sys.modules["tensorrt"] = install.load("fake_tensorrt").make("10.3.0")
sys.modules.update(fake_pycuda.modules())
from sage_edge.runtime import cuda_memory
cuda_memory._libcuda = lambda: fake_pycuda.FakeLibCuda()
'''


def test_flow_against_the_doubles_continues_past_failures(tmp_path):
    """Every process the script starts sees the doubles (a sitecustomize on PYTHONPATH): the TensorRT branch
    runs for real in the script; verify then fails (the double's engine is not the model), and the report
    says which steps passed, failed and were skipped."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM.format(doubles=str(REPO / "tests" / "doubles")))
    env = {"SAGE_EDGE_ACCEPTANCE_ASSUME_GPU": "1",
           "PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    from sage_edge.imageio import write_image
    from sage_edge.samples import synthetic_pair

    for k in range(2):  # small frames keep verify's ONNX Runtime reference quick
        ir, vis = synthetic_pair(96, 128, seed=k)
        write_image(tmp_path / "data" / "tiny" / "ir" / f"{k}.png", ir)
        write_image(tmp_path / "data" / "tiny" / "vis" / f"{k}.png", vis)
    out = tmp_path / "acc"
    done = _run(out, "--no-pytest", "--no-pycuda-build", "--data", str(tmp_path / "data"), "--pairs", "2",
                "--iterations", "3", "--int8-onnx", str(tmp_path / "made_on_a_desktop.int8.onnx"), env=env)
    report = (out / "report.md").read_text()
    assert "Traceback" not in report, report
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in report.splitlines()
            if line.startswith("| ") and line.count("|") == 5 and not line.startswith("| step")}
    assert rows["doctor"] == "PASS" and rows["cuda-check"] == "PASS"
    assert rows["build-fp32"] == "PASS" and rows["build-fp16"] == "PASS"
    assert rows["quantize-int8"] == "SKIP" and rows["build-int8"] == "SKIP" and rows["verify-int8"] == "SKIP"
    assert rows["verify-fp32"] == "FAIL"  # the double's engine returns vis as 'fused': verify catches it
    assert rows["bench-fp32"] == "PASS" and rows["gpu-tests"] == "SKIP"
    assert (out / "default_fp32.engine").is_file() and (out / "default_fp16.engine.json").is_file()
    assert "| TensorRT | 10.3.0 |" in report and "verify failed" in report
    assert done.returncode == 1 and "failed" in done.stdout.splitlines()[-1]
