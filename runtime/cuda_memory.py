"""Every pycuda call sage-edge makes: device facts, the context, buffers, the stream, CUDA graphs.

Threading: pycuda's context stack is per thread. A context made on one thread and used
from another is a well-known source of crashes on Jetson ("invalid device context",
segfaults at exit). ``CudaContext`` is therefore created, used and destroyed on ONE
thread: the TensorRT backend's worker thread (see ``tensorrt_backend``). Nothing here
starts threads.

Memory: page-locked host buffers for asynchronous copies. On an integrated GPU
(Jetson: CPU and GPU share DRAM), detected from ``CU_DEVICE_ATTRIBUTE_INTEGRATED`` and
``CAN_MAP_HOST_MEMORY``, the host buffer is allocated mapped (``DEVICEMAP``) and the GPU
reads and writes it directly: no copies at all ("zero-copy").

CUDA graphs: pycuda (up to 2026.1) has no stream-capture API, so capture uses the CUDA
driver API (libcuda, which pycuda itself loads) through ctypes, on pycuda's stream handle.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from sage_edge.errors import SageEdgeError

PYCUDA_HINT = ("pycuda is not installed: on a Jetson `pip install pycuda` (it builds against JetPack's CUDA; "
               "install python3-dev and put /usr/local/cuda/bin on PATH first), or `pip install 'sage-edge[jetson]'`")


def import_pycuda() -> Any:
    """``pycuda.driver``, initialised; one-line error when pycuda or the driver is missing."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise SageEdgeError(PYCUDA_HINT) from None
    try:
        cuda.init()
    except Exception as exc:  # pycuda raises cuda.Error subclasses (no driver, no device)
        raise SageEdgeError(f"CUDA is not usable here ({str(exc).strip() or type(exc).__name__}); "
                            "check the NVIDIA driver (nvidia-smi) or JetPack install") from None
    return cuda


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: str  # "8.7"
    integrated: bool  # Jetson: shares DRAM with the CPU
    can_map_host_memory: bool
    total_memory: int

    @property
    def zero_copy(self) -> bool:
        return self.integrated and self.can_map_host_memory


def device_info(index: int = 0, cuda: Any = None) -> DeviceInfo:
    """Facts about GPU ``index`` from its attributes; no context needed."""
    if cuda is None:
        cuda = import_pycuda()
    else:
        cuda.init()  # idempotent; required before Device() in every process
    if index >= cuda.Device.count():
        raise SageEdgeError(f"no CUDA device {index} (this machine has {cuda.Device.count()})")
    dev = cuda.Device(index)
    attr = cuda.device_attribute
    major, minor = dev.compute_capability()
    return DeviceInfo(
        index=index,
        name=str(dev.name()),
        compute_capability=f"{major}.{minor}",
        integrated=bool(dev.get_attribute(attr.INTEGRATED)),
        can_map_host_memory=bool(dev.get_attribute(attr.CAN_MAP_HOST_MEMORY)),
        total_memory=int(dev.total_memory()),
    )


class HostDeviceBuffer:
    """One I/O tensor: a page-locked host array and its device address (the same memory when mapped)."""

    def __init__(self, cuda: Any, shape: tuple[int, ...], dtype: np.dtype, mapped: bool) -> None:
        self.shape, self.dtype, self.mapped = tuple(shape), np.dtype(dtype), mapped
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        if mapped:
            self.host = cuda.pagelocked_empty(self.shape, self.dtype, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
            self._device = None
            self.device_ptr = int(self.host.base.get_device_pointer())
        else:
            self.host = cuda.pagelocked_empty(self.shape, self.dtype)
            self._device = cuda.mem_alloc(max(self.nbytes, 1))
            self.device_ptr = int(self._device)

    def fits(self, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        return tuple(shape) == self.shape and np.dtype(dtype) == self.dtype

    def free(self) -> None:
        if self._device is not None:
            self._device.free()
            self._device = None
        base = getattr(self.host, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()


class CudaContext:
    """A CUDA context, a stream and the buffers; create, use and close it on ONE thread."""

    def __init__(self, device_index: int = 0, zero_copy: bool | None = None) -> None:
        self.cuda = import_pycuda()
        self.info = device_info(device_index, self.cuda)
        dev = self.cuda.Device(device_index)
        flags = self.cuda.ctx_flags.SCHED_AUTO
        self.zero_copy = self.info.zero_copy if zero_copy is None else (zero_copy and self.info.can_map_host_memory)
        if self.zero_copy:
            flags |= self.cuda.ctx_flags.MAP_HOST  # required for DEVICEMAP host allocations
        self.context = dev.make_context(flags)  # made current on this thread
        self.stream = self.cuda.Stream()
        self._closed = False

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> HostDeviceBuffer:
        return HostDeviceBuffer(self.cuda, shape, dtype, mapped=self.zero_copy)

    def upload(self, buffer: HostDeviceBuffer) -> None:
        """Host -> device, asynchronous on the stream (nothing to do when mapped)."""
        if not buffer.mapped:
            self.cuda.memcpy_htod_async(buffer.device_ptr, buffer.host, self.stream)

    def download(self, buffer: HostDeviceBuffer) -> None:
        """Device -> host, asynchronous on the stream (nothing to do when mapped)."""
        if not buffer.mapped:
            self.cuda.memcpy_dtoh_async(buffer.host, buffer.device_ptr, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def event(self) -> Any:
        """A CUDA event for timing work on this stream (pycuda ``Event``; record it with ``record``)."""
        return self.cuda.Event()

    def record(self, event: Any) -> None:
        event.record(self.stream)

    @staticmethod
    def elapsed_ms(start: Any, end: Any) -> float:
        """GPU time between two recorded events; valid after the stream is synchronized."""
        return float(end.time_since(start))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.synchronize()
        finally:
            self.context.pop()
            self.context.detach()


class CudaGraph:
    """A captured CUDA graph of the work enqueued by ``body`` on ``ctx``'s stream (driver API via ctypes)."""

    _CAPTURE_MODE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL

    def __init__(self, ctx: CudaContext, body: Any, libcuda: Any = None) -> None:
        self.ctx = ctx
        self.lib = libcuda or _libcuda()
        stream = ctypes.c_void_p(ctx.stream_handle)
        _check(self.lib.cuStreamBeginCapture_v2(stream, self._CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture")
        graph = ctypes.c_void_p()
        try:
            body()
        finally:
            status = self.lib.cuStreamEndCapture(stream, ctypes.byref(graph))
        _check(status, "cuStreamEndCapture")
        self.graph = graph
        self.exec = ctypes.c_void_p()
        _check(self.lib.cuGraphInstantiateWithFlags(ctypes.byref(self.exec), graph, ctypes.c_ulonglong(0)),
               "cuGraphInstantiate")

    def launch(self) -> None:
        _check(self.lib.cuGraphLaunch(self.exec, ctypes.c_void_p(self.ctx.stream_handle)), "cuGraphLaunch")

    def destroy(self) -> None:
        if self.exec:
            self.lib.cuGraphExecDestroy(self.exec)
            self.exec = ctypes.c_void_p()
        if self.graph:
            self.lib.cuGraphDestroy(self.graph)
            self.graph = ctypes.c_void_p()


def _libcuda() -> Any:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise SageEdgeError("CUDA graphs need the CUDA driver library libcuda.so.1, which was not found") from None


def _check(status: int, what: str) -> None:
    if status != 0:
        raise SageEdgeError(f"{what} failed with CUDA error {status}; run without --cuda-graph")
