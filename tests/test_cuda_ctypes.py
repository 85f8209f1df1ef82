"""The real ctypes path of runtime/cuda_memory.py against a C stub of libcuda (tests/doubles/libcuda_stub.c).

The Python double (FakeLibCuda) models what the driver does; this stub is compiled C with cuda.h's
signatures, so the values that actually cross the ctypes boundary (stream handles as pointers, the
out-pointers written by the callee, the 64-bit instantiate flags) are checked (review C6).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import types
from pathlib import Path

import pytest

STUB = Path(__file__).parent / "doubles" / "libcuda_stub.c"


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    library = tmp_path_factory.mktemp("libcuda") / "libcuda_stub.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(library), str(STUB)], check=True)
    return ctypes.CDLL(str(library))


def _log(lib) -> list[str]:
    """The stub's record of calls (a C string buffer ``stub_log``), oldest first."""
    text = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, "stub_log"))).decode()
    return [entry for entry in text.split(";") if entry]


def test_graph_capture_marshalling(libcuda):
    from sage_edge.runtime import cuda_memory

    ctx = types.SimpleNamespace(stream_handle=0x7F00AB000000)  # a 64-bit stream handle, as pycuda's Stream.handle
    ran = []
    graph = cuda_memory.CudaGraph(ctx, lambda: ran.append(1), libcuda)
    graph.launch()
    graph.destroy()
    log = _log(libcuda)
    assert ran == [1]
    assert log[-6:] == ["begin(0x7f00ab000000,1)", "end(0x7f00ab000000)", "instantiate(0x6a,0)",
                        "launch(0x6b,0x7f00ab000000)", "execdestroy(0x6b)", "graphdestroy(0x6a)"]
    assert not graph.exec and not graph.graph


def test_failed_body_still_ends_the_capture(libcuda):
    from sage_edge.runtime import cuda_memory

    ctx = types.SimpleNamespace(stream_handle=0x1000)

    def failing_enqueue():
        raise cuda_memory.SageEdgeError("TensorRT inference failed (execute_async_v3 returned False)")

    with pytest.raises(cuda_memory.CaptureFailed, match="execute_async_v3"):
        cuda_memory.CudaGraph(ctx, failing_enqueue, libcuda)
    assert _log(libcuda)[-3:] == ["begin(0x1000,1)", "end(0x1000)", "graphdestroy(0x6a)"]
    cuda_memory.CudaGraph(ctx, lambda: None, libcuda).destroy()  # the stream is not left capturing


def test_device_facts_marshalling(libcuda):
    from sage_edge.runtime import cuda_memory

    assert cuda_memory.driver_device_facts(0, libcuda) == {"name": "Stub GPU", "compute_capability": "8.7",
                                                            "integrated": True}
    assert "cuDeviceGetName(256,7)" in _log(libcuda)
    with pytest.raises(cuda_memory.SageEdgeError, match="cuDeviceGet failed with CUDA error 101"):
        cuda_memory.driver_device_facts(1, libcuda)
