"""TensorRTBackend control flow against TEST DOUBLES of tensorrt and pycuda (tests/doubles).

The doubles simulate device memory and a stream (asynchronous work runs at synchronize), so data
really goes host -> "device" -> "engine" -> host (the fake engine's fused output is the visible input).
They refuse what the real libraries refuse: unaligned or unknown tensor addresses, enqueues without a
current context, enqueues under capture when told to fail, and record a thread that ends with a pycuda
context pushed (real pycuda aborts the process). GPU tests at the end need real TensorRT.
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import tiny_models  # noqa: E402

from sage_edge.errors import SageEdgeError  # noqa: E402

VERSIONS = ["8.5.2", "8.6.2", "10.3.0", "11.0.0"]




def build(tmp_path: Path, kind: str = "uint8", name: str = "model.engine", **options) -> Path:
    from sage_edge.export.engine_builder import BuildOptions, EngineBuilder

    onnx = (tiny_models.uint8_model if kind == "uint8" else tiny_models.float_model)(tmp_path / f"tiny_{kind}.onnx")
    out = tmp_path / name
    EngineBuilder(BuildOptions(onnx=onnx, output=out, min_shape=(32, 32), max_shape=(256, 256), **options),
                  prepare_fp16=lambda s, t: t.write_bytes(s.read_bytes())).build()
    return out


def pair(h: int, w: int, seed: int = 0):
    from sage_edge.samples import synthetic_pair

    return synthetic_pair(h, w, seed)


def _log(cuda, call):
    return [detail for name, detail in cuda.LOG if name == call]


@pytest.mark.parametrize("version", VERSIONS)
def test_fuse_through_open_backend(version, doubles, tmp_path):
    from sage_edge.runtime.backend import open_backend
    from sage_edge.runtime.fuser import Fuser

    trt, cuda = doubles(version)
    engine = build(tmp_path)
    ir, vis = pair(96, 128)
    with open_backend(engine) as backend:  # .engine -> tensorrt by suffix
        assert type(backend).__name__ == "TensorRTBackend"
        assert [t.name for t in backend.inputs] == ["ir", "vis"] and backend.inputs[0].dtype == np.uint8
        assert backend.inputs[1].shape == (1, None, None, 3)
        fused = Fuser(backend).fuse(ir, vis)
    np.testing.assert_array_equal(fused, vis)  # the double's engine returns vis as 'fused'
    assert "context.execute_async_v3" in {c[0] for c in trt.CALLS}
    assert all(ctx.detached for ctx in cuda.CONTEXTS_MADE) and len(cuda.CONTEXTS_MADE) == 1


def test_float_graph_round_trip(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    doubles("10.3.0")
    engine = build(tmp_path, kind="float")
    vis_y = np.random.default_rng(0).random((1, 1, 40, 48), dtype=np.float32)
    with TensorRTBackend(engine) as backend:
        out = backend.infer({"vis_y": vis_y, "ir": vis_y})
    np.testing.assert_allclose(out["fused_y"], 2 * vis_y - 1, rtol=1e-6)


def test_cuda_context_lives_on_one_worker_thread(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    _, cuda = doubles("10.3.0")
    engine = build(tmp_path)
    ir, vis = pair(64, 64)
    feed = {"ir": ir[None, :, :, None], "vis": vis[None]}
    backend = TensorRTBackend(engine)
    results = []
    callers = [threading.Thread(target=lambda: results.append(backend.infer(feed))) for _ in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    backend.infer(feed)
    backend.close()
    backend.close()  # idempotent
    threads = {tid for name, tid in cuda.LOG if name in ("make_context", "ctx.push", "ctx.pop", "ctx.detach")}
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert not cuda.ABORTS
    assert len(results) == 3 and all((r["fused"] == vis[None]).all() for r in results)
    with pytest.raises(SageEdgeError, match="closed"):
        backend.infer(feed)


@pytest.mark.parametrize("integrated", [True, False])
def test_zero_copy_on_integrated_gpu_else_pinned_copies(integrated, doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    gpu = {"integrated": integrated, "name": "Orin" if integrated else "NVIDIA RTX A2000", "cc": (8, 7)}
    _, cuda = doubles("10.3.0", gpu=gpu)
    engine = build(tmp_path)
    ir, vis = pair(64, 80)
    with TensorRTBackend(engine) as backend:
        out = backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
        assert ("zero-copy" in backend.describe()) == integrated
    np.testing.assert_array_equal(out["fused_y"][0, :, :, 0], ir)
    mapped = {m for _, _, m in _log(cuda, "pagelocked_empty")}
    assert mapped == {integrated}
    if integrated:
        assert not _log(cuda, "mem_alloc") and not _log(cuda, "htod") and not _log(cuda, "dtoh")
    else:
        assert len(_log(cuda, "mem_alloc")) == 4 and len(_log(cuda, "htod")) == 2 and len(_log(cuda, "dtoh")) == 2


def test_stage_times_come_from_cuda_events_around_each_stage(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    trt, cuda = doubles("10.3.0", gpu={"integrated": False})
    engine = build(tmp_path)
    ir, vis = pair(64, 80)
    with TensorRTBackend(engine) as backend:
        assert backend.last_stage_times() == {}
        cuda.LOG.clear()
        backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
        order = [name for name, _ in cuda.LOG if name in ("event_record", "htod", "dtoh", "synchronize")]
        assert order == ["event_record", "htod", "htod", "event_record", "event_record", "dtoh", "dtoh",
                         "event_record", "synchronize"]
        # The double's clock advances 0.25 ms per record: each stage spans exactly one step.
        assert backend.last_stage_times() == {"h2d_ms": 0.25, "inference_ms": 0.25, "d2h_ms": 0.25}
        io_bytes = 2 * (64 * 80 * 1 + 64 * 80 * 3)  # ir + vis + fused + fused_y
        assert backend.io_memory_bytes() == io_bytes
        # plus TensorRT's activation memory (device_memory_size_v2 / device_memory_size)
        assert backend.device_memory_bytes() == io_bytes + trt.STATE["device_memory"]


def test_buffers_follow_shape_changes(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    trt, cuda = doubles("10.3.0", gpu={"integrated": False})
    engine = build(tmp_path)
    with TensorRTBackend(engine) as backend:
        for h, w in [(64, 80), (64, 80), (96, 128), (96, 128), (64, 80)]:
            ir, vis = pair(h, w, seed=h)
            out = backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
            assert out["fused"].shape == (1, h, w, 3) and (out["fused"][0] == vis).all()
            assert out["fused_y"].shape == (1, h, w, 1) and (out["fused_y"][0, :, :, 0] == ir).all()
    shapes = [d for api, d in trt.CALLS if api == "context.set_input_shape" and d[0] == "ir"]
    assert [s for _, s in shapes] == [(1, 64, 80, 1), (1, 96, 128, 1), (1, 64, 80, 1)]  # only on a change
    assert len(_log(cuda, "mem_alloc")) == 12 and len(_log(cuda, "free")) >= 8  # 4 tensors x 3 shapes
    addresses = [d for api, d in trt.CALLS if api == "context.set_tensor_address" and d[0] == "fused"]
    assert len(addresses) == 3 and len({a for _, a in addresses}) == 3


def test_frame_outside_profile_is_one_line(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    doubles("8.6.2")
    engine = build(tmp_path)
    ir, vis = pair(300, 200)
    with TensorRTBackend(engine) as backend:
        with pytest.raises(SageEdgeError, match="outside the engine's profile") as info:
            backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
        assert "\n" not in str(info.value) and "--max-shape" in str(info.value)
        with pytest.raises(SageEdgeError, match="must be uint8"):
            backend.infer({"ir": ir[None, :, :, None].astype(np.float32), "vis": vis[None]})


def test_cuda_graph_captured_once_per_shape(doubles, tmp_path, monkeypatch):
    from sage_edge.runtime import cuda_memory
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    _, cuda = doubles("10.3.0")
    lib = cuda.FakeLibCuda()
    monkeypatch.setattr(cuda_memory, "_libcuda", lambda: lib)
    engine = build(tmp_path)
    with TensorRTBackend(engine, cuda_graph=True) as backend:
        for seed in range(4):
            ir, vis = pair(64, 64, seed)
            out = backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
            assert (out["fused"][0] == vis).all()  # replayed graph reads the new input
        assert lib.instantiated == 1 and lib.launches == 3  # first run plain, then capture once, replay
        ir, vis = pair(80, 64)
        backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})  # new shape: plain run, graph dropped
        ir, vis = pair(80, 64, 1)
        assert (backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})["fused"][0] == vis).all()
        assert lib.instantiated == 2


def test_sidecar_mismatch_is_refused(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    doubles("10.3.0")
    engine = build(tmp_path)
    doubles("10.3.0", gpu={"name": "NVIDIA GeForce RTX 4090", "cc": (8, 9), "integrated": False})
    with pytest.raises(SageEdgeError) as info:
        TensorRTBackend(engine)
    message = str(info.value)
    assert "\n" not in message and "compute capability 8.7" in message and "sage-edge build-engine" in message
    doubles("8.6.2")
    with pytest.raises(SageEdgeError, match="built with TensorRT 10.3.0, this device runs TensorRT 8.6.2"):
        TensorRTBackend(engine)


def test_missing_sidecar_warns_and_runs(doubles, tmp_path, capsys):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    doubles("10.3.0")
    engine = build(tmp_path)
    engine.with_name(engine.name + ".json").unlink()
    with TensorRTBackend(engine) as backend:
        assert backend.sidecar is None
    assert "no model.engine.json sidecar" in capsys.readouterr().err


@pytest.mark.parametrize("built, runtime, runs", [
    ("10.3.0", "10.7.0", True), ("10.3.0", "10.2.0", False),    # same major, later release only
    ("8.6.2", "10.3.0", True), ("8.6.2", "9.3.0", True),        # 8.6+ -> 9.x / 10.x (the JetPack 6.0 -> 6.1 upgrade)
    ("10.3.0", "11.0.0", True), ("8.6.2", "11.0.0", False),     # 10 -> 11 yes, 8 -> 11 never
    ("8.5.2", "8.6.2", False),                                  # version compatibility starts with 8.6 builds
])
def test_version_compatible_engines_follow_tensorrt_rules(built, runtime, runs):
    """Review A4: TensorRT 11.4.1 Support Matrix, "Engine Portability", and the 10.16.1 "Version Compatibility" page."""
    from sage_edge.runtime import engine_sidecar

    record = {"tensorrt": built, "version_compatible": True, "gpu": {"name": "Orin", "compute_capability": "8.7"}}
    assert (engine_sidecar.mismatch(record, runtime, "Orin", "8.7") is None) == runs
    assert engine_sidecar.mismatch({**record, "version_compatible": False}, runtime, "Orin", "8.7")


def test_version_compatible_engine_runs_across_majors_with_host_code(doubles, tmp_path, capsys):
    """A JetPack 6.0 (8.6.2) version-compatible engine on JetPack 6.1 (10.3.0): the sidecar allows its lean runtime."""
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    doubles("8.6.2")
    engine = build(tmp_path, version_compatible=True)
    trt, _ = doubles("10.3.0")
    with TensorRTBackend(engine) as backend:
        ir, vis = pair(64, 64)
        assert (backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})["fused"][0] == vis).all()
    assert trt.STATE["last_runtime"].engine_host_code_allowed is True
    # Without the sidecar the engine cannot say it is version-compatible: the message says what is missing.
    engine.with_name(engine.name + ".json").unlink()
    with pytest.raises(SageEdgeError, match="version-compatible engine also needs its .json sidecar"):
        TensorRTBackend(engine)
    with TensorRTBackend(engine, allow_host_code=True):  # the explicit opt-in
        pass


def test_sidecar_gpu_name_is_compared_only_when_cuda_named_it():
    """Review B4: nvidia-smi / the Jetson device tree spell the GPU differently from cuDeviceGetName (pycuda)."""
    from sage_edge.runtime import engine_sidecar

    tree = {"tensorrt": "10.3.0", "gpu": {"name": "NVIDIA Jetson AGX Orin Developer Kit", "compute_capability": None,
                                          "name_source": "device-tree"}}
    assert engine_sidecar.mismatch(tree, "10.3.0", "Orin", "8.7") is None
    cuda = {"tensorrt": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7", "name_source": "cuda"}}
    assert "built for GPU 'Orin'" in engine_sidecar.mismatch(cuda, "10.3.0", "Orin (nvgpu)", "8.7")
    old = {"tensorrt": "10.3.0", "gpu": {"name": "NVIDIA Jetson AGX Orin", "compute_capability": None}}
    assert engine_sidecar.mismatch(old, "10.3.0", "Orin", "8.7") is None  # pre-name_source sidecar, name from smi/tree


def test_corrupt_engine_and_sidecar(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    doubles("10.3.0")
    engine = build(tmp_path)
    engine.write_bytes(b"not an engine")
    with pytest.raises(SageEdgeError, match="could not deserialize"):
        TensorRTBackend(engine)
    engine.with_name(engine.name + ".json").write_text("{broken")
    with pytest.raises(SageEdgeError, match="unreadable engine sidecar"):
        TensorRTBackend(engine)


def test_fuse_cli_with_engine(doubles, tmp_path):
    from click.testing import CliRunner

    from sage_edge.cli import main
    from sage_edge.imageio import read_image, write_image

    doubles("10.3.0")
    engine = build(tmp_path)
    ir, vis = pair(72, 96)
    write_image(tmp_path / "ir.png", ir)
    write_image(tmp_path / "vis.png", vis)
    result = CliRunner().invoke(main, ["fuse", str(tmp_path / "ir.png"), str(tmp_path / "vis.png"),
                                       "-o", str(tmp_path / "fused.png"), "--model", str(engine)])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_image(tmp_path / "fused.png"), vis)


def test_tensorrt_backend_unavailable_here_without_doubles():
    import importlib.util

    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    real = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
    assert TensorRTBackend.is_available() == real


def _real_gpu() -> bool:
    try:
        import pycuda.driver as cuda  # noqa: F401
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="needs an NVIDIA GPU with TensorRT and pycuda")
def test_real_engine_matches_onnxruntime(official_onnx, ivif_dir, tmp_path):
    from sage_edge.export.engine_builder import BuildOptions, EngineBuilder
    from sage_edge.imageio import read_ir, read_visible
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    engine = tmp_path / "official.engine"
    EngineBuilder(BuildOptions(onnx=official_onnx, output=engine, opt_shape=(480, 640))).build()
    ir = read_ir(ivif_dir / "MSRS/ir/00537D.png")
    vis = read_visible(ivif_dir / "MSRS/vis/00537D.png")
    with OnnxRuntimeBackend(official_onnx) as ort_backend, TensorRTBackend(engine) as trt_backend:
        ref, got = Fuser(ort_backend).fuse(ir, vis), Fuser(trt_backend).fuse(ir, vis)
    assert np.abs(ref.astype(int) - got.astype(int)).max() <= 2
    assert json.loads(engine.with_name(engine.name + ".json").read_text())["precision"] == "fp32"


def test_verify_engine_against_sidecar_onnx(doubles, tmp_path, ivif_dir):
    """verify finds the FP32 ONNX in the sidecar; the double's engine equals the tiny ONNX (fused = vis)."""
    from sage_edge.export.precision_check import verify
    from sage_edge.pairs import pair_dataset

    doubles("10.3.0")
    engine = build(tmp_path, fp16=True)
    report = verify(engine, pair_dataset(ivif_dir / "MSRS")[:2], eval_shape=(64, 64), metrics=False,
                    progress=False)
    assert report.precision == "fp16" and report.reference.name == "tiny_uint8.onnx"
    assert report.ok and report.comparison.max_abs_error == 0 and report.comparison.min_psnr == float("inf")


# -- stricter doubles: what the real libraries refuse (review C5, C6, C10) ----------------------------
def test_set_tensor_address_refuses_unaligned_and_unknown(doubles, tmp_path):
    """release/10.3 include/NvInferRuntime.h setTensorAddress: "at least 256-byte alignment", known names only."""
    from sage_edge.runtime import tensorrt_api

    trt, cuda = doubles("10.3.0")
    engine = tensorrt_api.TensorRTEngine(build(tmp_path).read_bytes(), trt)
    assert not engine.context.set_tensor_address("ir", 0x7F0000000000 + 8)
    assert not engine.context.set_tensor_address("no_such_tensor", 0x7F0000000000)
    assert engine.context.set_tensor_address("ir", 0x7F0000000000)
    with pytest.raises(SageEdgeError, match="256-byte alignment"):
        engine.set_tensor_address("ir", 0x7F0000000000 + 100)


def test_backend_buffer_addresses_are_accepted(doubles, tmp_path):
    """Every address the backend hands TensorRT (device allocations and mapped host memory) is 256-byte aligned."""
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    for integrated in (True, False):
        trt, _ = doubles("10.3.0", gpu={"integrated": integrated})
        engine = build(tmp_path)
        ir, vis = pair(50, 70)
        with TensorRTBackend(engine) as backend:
            backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
        addresses = [d[1] for api, d in trt.CALLS if api == "context.set_tensor_address"]
        assert len(addresses) == 4 and all(a % 256 == 0 for a in addresses)


def test_enqueue_needs_a_current_context(doubles, tmp_path):
    from sage_edge.runtime import tensorrt_api

    trt, cuda = doubles("10.3.0")
    engine = tensorrt_api.TensorRTEngine(build(tmp_path).read_bytes(), trt)
    ctx = cuda.Device(0).make_context()
    stream = cuda.Stream()
    for name, shape in (("ir", (1, 32, 32, 1)), ("vis", (1, 32, 32, 3)), ("fused", (1, 32, 32, 3)),
                        ("fused_y", (1, 32, 32, 1))):
        if name in ("ir", "vis"):
            assert engine.set_input_shape(name, shape)
        engine.set_tensor_address(name, int(cuda.mem_alloc(int(np.prod(shape)))))
    assert engine.context.execute_async_v3(stream.handle)
    cuda.Context.pop()  # a static method: pops this thread's current context
    assert cuda.current_context() is None
    assert not engine.context.execute_async_v3(stream.handle)
    ctx.detach()


def test_async_copies_land_at_synchronize(doubles):
    """The double's stream is asynchronous: a host buffer read before synchronize() sees stale data."""
    _, cuda = doubles("10.3.0")
    cuda.init()
    ctx = cuda.Device(0).make_context()
    stream = cuda.Stream(flags=1)
    device = cuda.mem_alloc(16)
    src = np.arange(16, dtype=np.uint8)
    dst = np.zeros(16, np.uint8)
    cuda.memcpy_htod_async(device, src, stream)
    src[:] = 7  # the copy reads the host buffer when the stream reaches it
    cuda.memcpy_dtoh_async(dst, device, stream)
    assert not dst.any()
    stream.synchronize()
    assert (dst == 7).all()
    ctx.detach()


def test_thread_exiting_with_a_context_pushed_aborts_in_the_double(doubles):
    """pycuda src/cpp/cuda.hpp context_stack::~context_stack: abort() when a thread ends with a context pushed."""
    _, cuda = doubles("10.3.0")
    cuda.init()
    worker = threading.Thread(target=lambda: cuda.Device(0).make_context(), name="leaky")
    worker.start()
    worker.join()
    assert cuda.ABORTS == ["leaky"]


def test_backend_never_leaves_a_context_pushed(doubles, tmp_path):
    """Review B5: an unclosed backend whose worker thread ends (interpreter exit, a daemon pipeline thread)."""
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    _, cuda = doubles("10.3.0")
    backend = TensorRTBackend(build(tmp_path), cuda_graph=False)
    ir, vis = pair(40, 48)
    backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
    assert backend._worker.submit(cuda.current_context).result() is None  # popped between calls
    backend._worker.shutdown(wait=True)  # what the interpreter does at exit without close()
    assert cuda.ABORTS == []
    backend._closed = True  # the worker is gone; nothing left to close


def test_stream_is_non_blocking(doubles, tmp_path):
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    _, cuda = doubles("10.3.0")
    with TensorRTBackend(build(tmp_path)):
        pass
    assert [flags for name, (_, flags) in [(n, d) for n, d in cuda.LOG if n == "stream"]] == [1]


@pytest.mark.parametrize("failure", ["enqueue", "instantiate", "launch", "begin"])
def test_failed_cuda_graph_falls_back_and_frames_still_come(failure, doubles, tmp_path, monkeypatch, capsys):
    """Review B1: trtexec's behaviour (release/10.3 samples/common/sampleInference.cpp:970-990)."""
    from sage_edge.runtime import cuda_memory
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    trt, cuda = doubles("10.3.0", fail_under_capture=failure == "enqueue")
    lib = cuda.FakeLibCuda(fail_instantiate=failure == "instantiate", fail_launch=failure == "launch",
                           fail_begin=failure == "begin")
    monkeypatch.setattr(cuda_memory, "_libcuda", lambda: lib)
    with TensorRTBackend(build(tmp_path), cuda_graph=True) as backend:
        for seed in range(5):
            ir, vis = pair(48, 64, seed)
            out = backend.infer({"ir": ir[None, :, :, None], "vis": vis[None]})
            assert (out["fused"][0] == vis).all() and (out["fused_y"][0, :, :, 0] == ir).all()
    err = capsys.readouterr().err
    assert err.count("CUDA graph capture failed") == 1  # warned once
    assert lib.live_graphs == 0 and lib.live_execs == 0 and not cuda.CAPTURING  # nothing leaked, capture ended
    enqueues = [1 for api, _ in trt.CALLS if api == "context.execute_async_v3"]
    assert len(enqueues) == 5 + (0 if failure == "begin" else 1)  # 5 plain enqueues, plus the one captured


def test_dla_engine_sets_the_runtime_core_before_deserializing(doubles, tmp_path):
    """Review B2: trtexec calls setDLACore before deserializing (release/10.3 samples/common/sampleEngines.cpp)."""
    from sage_edge.runtime.tensorrt_backend import TensorRTBackend

    trt, _ = doubles("10.3.0", dla_unsupported_ops=())
    onnx = tiny_models.float_model(tmp_path / "f.onnx", static=(32, 32))
    from sage_edge.export.engine_builder import BuildOptions, EngineBuilder

    engine = EngineBuilder(BuildOptions(onnx=onnx, output=tmp_path / "dla.engine", fp16=True, dla_core=1,
                                        gpu_fallback=True)).build().engine
    with TensorRTBackend(engine) as backend:
        assert "DLA core 1" in backend.describe()
    order = [(api, d) for api, d in trt.CALLS if api in ("runtime.DLA_core", "runtime.deserialize_cuda_engine")]
    assert order[0] == ("runtime.DLA_core", 1) and order[1][1][1] == 1
    doubles("10.3.0", num_dla_cores=1)
    with pytest.raises(SageEdgeError, match="DLA core 1"):
        TensorRTBackend(engine)
