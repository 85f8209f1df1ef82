"""runtime/cuda_check.py (the GPU acceptance script's CUDA exercise) against the pycuda/libcuda TEST DOUBLES.

On a GPU the same checks run for real (scripts/gpu_acceptance.sh); here they show the checks pass on correct
behaviour and fail on wrong behaviour.
"""
from __future__ import annotations

import pytest

from conftest import run_cli  # noqa: F401 (fixtures)


@pytest.fixture()
def fake_libcuda(doubles, monkeypatch):
    def install(**gpu_and_lib):
        from sage_edge.runtime import cuda_memory

        lib_options = {k: gpu_and_lib.pop(k) for k in list(gpu_and_lib) if k.startswith("fail_")}
        _, cuda = doubles("10.3.0", gpu=gpu_and_lib or None)
        lib = cuda.FakeLibCuda(**lib_options)
        monkeypatch.setattr(cuda_memory, "_libcuda", lambda: lib)
        return cuda, lib

    return install


def test_every_check_passes_on_correct_behaviour(fake_libcuda):
    from sage_edge.runtime import cuda_check

    cuda, lib = fake_libcuda()
    results = {r.name: r for r in cuda_check.run(0)}
    assert {name: r.status for name, r in results.items()} == {
        "device": "ok", "pinned": "ok", "mapped": "ok", "cuda-graph": "ok", "capture-fail": "ok"}
    assert "replayed 3x" in results["cuda-graph"].detail and "right, right, right" in results["cuda-graph"].detail
    assert lib.live_graphs == 0 and lib.live_execs == 0 and not cuda.ABORTS
    assert all(ctx.detached for ctx in cuda.CONTEXTS_MADE) and cuda.current_context() is None


def test_checks_fail_or_skip_when_the_gpu_misbehaves(fake_libcuda):
    from sage_edge.runtime import cuda_check

    fake_libcuda(can_map=False, fail_launch=True)
    results = {r.name: r for r in cuda_check.run(0)}
    assert results["mapped"].status == "skipped"
    assert results["cuda-graph"].status == "failed" and "cuGraphLaunch" in results["cuda-graph"].detail
    assert results["pinned"].status == "ok"


def test_without_pycuda_it_is_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "sage_edge.runtime.cuda_check", "--json", str(tmp_path / "c.json")],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        pytest.skip("pycuda and a GPU are present here")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.json").exists()
