"""TensorRT backend: a serialized engine (``.engine``/``.plan``/``.trt``) run with TensorRT + pycuda.

Behind the same ``Backend`` interface as ONNX Runtime, so ``Fuser``, ``sage-edge fuse
--model X.engine`` and the live pipeline use it unchanged.

* One worker thread owns the CUDA context: it is created, used and destroyed there, and
  every TensorRT/pycuda call runs there (``infer`` hands work to it and waits). pycuda's
  context stack is thread-bound; sharing a context across threads crashes on Jetson.
* The context is current only while the worker runs a call (pushed before, popped after), so
  the worker thread never ends with a context pushed: pycuda aborts the process when one does
  (src/cpp/cuda.hpp ``context_stack::~context_stack``), e.g. at interpreter exit without ``close()``.
* Page-locked host buffers, or mapped zero-copy buffers on an integrated GPU (Jetson).
* Per frame: asynchronous H2D -> ``execute_async_v3`` -> D2H on one stream, then one sync.
* ``set_input_shape`` whenever the frame size changes (buffers are re-allocated only
  then); a frame outside the engine's optimization profile is a one-line error.
* ``last_stage_times()`` gives the GPU time of the last frame's H2D copy, inference and D2H
  copy, measured with CUDA events on the stream (``sage-edge bench`` reads it);
  ``device_memory_bytes()`` the device memory the engine holds: I/O buffers plus TensorRT's
  activation memory.
* ``cuda_graph=True`` captures the enqueue in a CUDA graph once a shape repeats (fixed-size
  cameras), and replays it. When capture or replay fails (an engine with operations not
  permitted under capture, e.g. DLA), it warns once, runs the plain enqueue for that frame
  and every later one, as trtexec does.
* The engine's ``.json`` sidecar (written by ``build-engine``) must match the running
  TensorRT version and GPU, else the engine is refused with one line saying how to rebuild.
  From it come the DLA core to run on and whether the engine's embedded lean runtime (a
  version-compatible engine) may load; ``allow_host_code=True`` allows that without a sidecar.

All TensorRT calls live in ``tensorrt_api``, all pycuda calls in ``cuda_memory``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime import engine_sidecar
from sage_edge.runtime.backend import Backend, TensorSpec

T = TypeVar("T")


class TensorRTBackend(Backend):
    name = "tensorrt"

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None

    def __init__(self, model_path: str | os.PathLike, device: int = 0, cuda_graph: bool = False,
                 zero_copy: bool | None = None, check_sidecar: bool = True, allow_host_code: bool | None = None,
                 border_pad: int | None = None) -> None:
        self.model_path = Path(model_path)
        self.border_pad = border_pad  # None: as built; else must match what the engine was built with
        self.cuda_graph = cuda_graph
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sage-edge-trt")
        self._closed = False
        self._ctx: Any = None
        self._engine: Any = None
        self._buffers: dict[str, Any] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._graph: Any = None
        self._graph_shapes: dict[str, tuple[int, ...]] | None = None
        self._graph_unsupported = False
        self._events: list[Any] = []
        self._last_stage_ms: dict[str, float] = {}
        self.sidecar: dict[str, Any] | None = None
        try:
            self._worker.submit(self._open, device, zero_copy, check_sidecar, allow_host_code).result()
        except BaseException:
            self.close()
            raise

    # -- worker-thread plumbing -------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise SageEdgeError(f"{self.model_path}: the TensorRT backend is closed")
        return self._worker.submit(self._in_context, fn, *args).result()

    def _in_context(self, fn: Callable[..., T], *args: Any) -> T:
        """On the worker: run ``fn`` with the CUDA context pushed, and pop it after (never left pushed)."""
        with self._ctx.active():
            return fn(*args)

    # -- everything below runs on the worker thread ------------------------------------------
    def _open(self, device: int, zero_copy: bool | None, check_sidecar: bool, allow_host_code: bool | None) -> None:
        from sage_edge.runtime import cuda_memory, tensorrt_api

        trt = tensorrt_api.import_tensorrt()
        tensorrt_api.check_supported(trt)
        if not self.model_path.is_file():
            raise SageEdgeError(f"{self.model_path}: no such engine file")
        self.sidecar = engine_sidecar.read_sidecar(self.model_path)
        info = cuda_memory.device_info(device)
        if check_sidecar:
            if self.sidecar is None:
                print(f"warning: {self.model_path}: no {engine_sidecar.sidecar_path(self.model_path).name} sidecar, "
                      "so its TensorRT version and GPU cannot be checked (build engines with `sage-edge "
                      "build-engine`)", file=sys.stderr)
            engine_sidecar.check_compatible(self.model_path, self.sidecar, trt.__version__, info.name,
                                            info.compute_capability)
        engine_sidecar.check_border_pad(self.model_path, self.sidecar, self.border_pad)
        sidecar = self.sidecar or {}
        if allow_host_code is None:
            allow_host_code = bool(sidecar.get("version_compatible"))
        self._ctx = cuda_memory.CudaContext(device, zero_copy)
        with self._ctx.active():
            self._events = [self._ctx.event() for _ in range(4)]  # before H2D, after H2D, after enqueue, after D2H
            self._engine = tensorrt_api.TensorRTEngine(
                self.model_path.read_bytes(), trt, allow_host_code=allow_host_code, source=self.model_path,
                dla_core=sidecar.get("dla_core"), sidecar_known=self.sidecar is not None)
            self._io = self._engine.io_tensors()
            self._activation_bytes = self._engine.activation_memory_bytes()
        self._inputs = [t for t in self._io if t.is_input]
        self._outputs = [t for t in self._io if not t.is_input]
        dla = sidecar.get("dla_core")
        self._describe = (f"tensorrt {trt.__version__} on {info.name} (sm {info.compute_capability}"
                          + (f", DLA core {dla}" if dla is not None else "")
                          + f", {'zero-copy mapped' if self._ctx.zero_copy else 'page-locked'} buffers"
                          + (", CUDA graph" if self.cuda_graph else "")
                          + (f", {sidecar.get('precision')}" if self.sidecar else "") + ")")

    def _check_feed(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = {t.name for t in self._inputs}
        if set(feed) != names:
            raise SageEdgeError(f"engine inputs are {sorted(names)}, got {sorted(feed)}")
        arrays = {}
        for t in self._inputs:
            array = np.ascontiguousarray(feed[t.name])
            if array.dtype != t.dtype:
                raise SageEdgeError(f"input '{t.name}' must be {t.dtype}, got {array.dtype}")
            if array.ndim != len(t.shape) or any(s != -1 and s != d for s, d in zip(t.shape, array.shape)):
                raise SageEdgeError(f"input '{t.name}' has shape {array.shape}; the engine takes {t.shape} "
                                    "(-1: any size within its profile)")
            if t.profile is not None:
                low, _, high = t.profile
                if any(d < lo or d > hi for d, lo, hi in zip(array.shape, low, high)):
                    h, w = array.shape[1:3] if array.shape[-1] in (1, 3) else array.shape[2:4]  # NHWC or NCHW
                    flag = "--min-shape" if any(d < lo for d, lo in zip(array.shape, low)) else "--max-shape"
                    onnx = ((self.sidecar or {}).get("onnx") or {}).get("path") or "MODEL.onnx"
                    raise SageEdgeError(
                        f"input '{t.name}' shape {array.shape} is outside the engine's profile "
                        f"(min {low}, max {high}); rebuild it to cover {w}x{h} frames: "
                        f"`sage-edge build-engine {onnx} {flag} {w}x{h}`")
            arrays[t.name] = array
        return arrays

    def _prepare(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """New input shapes: tell TensorRT, then (re)allocate buffers whose size changed, rebind addresses."""
        for t in self._inputs:
            if not self._engine.set_input_shape(t.name, shapes[t.name]):
                raise SageEdgeError(f"TensorRT rejected shape {shapes[t.name]} for input '{t.name}'")
        wanted = dict(shapes)
        for t in self._outputs:
            wanted[t.name] = self._engine.output_shape(t.name)
            if any(d < 0 for d in wanted[t.name]):
                raise SageEdgeError(f"TensorRT could not infer the shape of output '{t.name}'")
        for t in self._io:
            old = self._buffers.get(t.name)
            if old is None or not old.fits(wanted[t.name], t.dtype):
                if old is not None:
                    old.free()
                self._buffers[t.name] = self._ctx.buffer(wanted[t.name], t.dtype)
            self._engine.set_tensor_address(t.name, self._buffers[t.name].device_ptr)
        self._shapes = shapes
        self._drop_graph()

    def _drop_graph(self) -> None:
        graph, self._graph, self._graph_shapes = self._graph, None, None
        if graph is not None:
            graph.destroy()

    def _graph_failed(self, why: str) -> None:
        """No CUDA graph for this engine any more: warn once; every frame from now on runs the plain enqueue."""
        self._graph_unsupported = True
        try:
            self._drop_graph()
        except SageEdgeError:
            pass  # the graph is unusable either way; the plain enqueue does not need it
        print(f"warning: {self.model_path}: CUDA graph capture failed ({why}); running without a CUDA graph "
              "(as trtexec does for engines with operations not permitted under capture)", file=sys.stderr)

    def _run_graph(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        """Capture once per shape, then replay; False when the graph cannot be used (the caller enqueues)."""
        from sage_edge.runtime import cuda_memory

        try:
            if self._graph is None:
                self._graph = cuda_memory.CudaGraph(self._ctx, self._enqueue)
                self._graph_shapes = shapes
            self._graph.launch()
            return True
        except cuda_memory.CaptureFailed as exc:
            self._graph_failed(str(exc))
            return False

    def _enqueue(self) -> None:
        self._engine.execute(self._ctx.stream_handle)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self._check_feed(feed)
        shapes = {name: a.shape for name, a in arrays.items()}
        first_run_of_shape = shapes != self._shapes
        if first_run_of_shape:
            self._prepare(shapes)
        for t in self._inputs:
            np.copyto(self._buffers[t.name].host, arrays[t.name])
        before_h2d, after_h2d, after_infer, after_d2h = self._events
        self._ctx.record(before_h2d)
        for t in self._inputs:
            self._ctx.upload(self._buffers[t.name])
        self._ctx.record(after_h2d)
        # TensorRT needs one plain enqueue after a shape change before capture (done on the first run).
        use_graph = self.cuda_graph and not first_run_of_shape and not self._graph_unsupported
        if not (use_graph and self._run_graph(shapes)):
            self._enqueue()
        self._ctx.record(after_infer)
        for t in self._outputs:
            self._ctx.download(self._buffers[t.name])
        self._ctx.record(after_d2h)
        self._ctx.synchronize()
        elapsed = self._ctx.elapsed_ms
        self._last_stage_ms = {
            "h2d_ms": elapsed(before_h2d, after_h2d),
            "inference_ms": elapsed(after_h2d, after_infer),
            "d2h_ms": elapsed(after_infer, after_d2h),
        }
        return {t.name: self._buffers[t.name].host.copy() for t in self._outputs}

    def _close(self) -> None:
        try:
            if self._ctx is not None:
                with self._ctx.active():
                    try:
                        self._ctx.synchronize()  # nothing still queued on the buffers freed below
                        self._drop_graph()
                    finally:
                        for buffer in self._buffers.values():
                            buffer.free()
                        self._buffers.clear()
                        if self._engine is not None:
                            self._engine.close()
        finally:
            if self._ctx is not None:
                self._ctx.close()
            self._ctx = self._engine = None

    # -- Backend interface ----------------------------------------------------------------
    @staticmethod
    def _spec(t: Any) -> TensorSpec:
        return TensorSpec(t.name, t.dtype, tuple(None if d == -1 else d for d in t.shape))

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(t) for t in self._inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._spec(t) for t in self._outputs]

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._call(self._infer, feed)

    def describe(self) -> str:
        return getattr(self, "_describe", "tensorrt")

    def last_stage_times(self) -> dict[str, float]:
        """GPU milliseconds of the last ``infer``: {"h2d_ms", "inference_ms", "d2h_ms"} (CUDA events)."""
        return dict(self._last_stage_ms)

    def device_memory_bytes(self) -> int:
        """Device memory the engine holds: its I/O buffers (mapped zero-copy buffers count: they are
        GPU-visible) plus TensorRT's activation memory (``device_memory_size[_v2]``)."""
        return self.io_memory_bytes() + int(getattr(self, "_activation_bytes", 0))

    def io_memory_bytes(self) -> int:
        """Device memory held by the I/O buffers alone."""
        return sum(int(b.host.nbytes) for b in self._buffers.values())

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._ctx is not None or self._engine is not None:
                self._worker.submit(self._close).result()
        finally:
            self._closed = True
            self._worker.shutdown(wait=True)

    def __del__(self) -> None:  # a forgotten close() must not leak the context
        try:
            self.close()
        except Exception:
            pass
