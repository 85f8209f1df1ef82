"""Every pycuda call sage-edge makes: device facts, the context, buffers, the stream, CUDA graphs.

Threading: pycuda's context stack is per thread. A context made on one thread and used
from another is a well-known source of crashes on Jetson ("invalid device context",
segfaults at exit). ``CudaContext`` is therefore created, used and destroyed on ONE
thread: the TensorRT backend's worker thread (see ``tensorrt_backend``). Nothing here
starts threads. The context is current only inside ``with ctx.active():`` blocks and popped
between them: pycuda aborts the process when a thread ends with a context still pushed
(pycuda src/cpp/cuda.hpp ``context_stack::~context_stack``), which a worker thread does at
interpreter exit when nobody called ``close()``.

Memory: page-locked host buffers for asynchronous copies. On an integrated GPU
(Jetson: CPU and GPU share DRAM), detected from ``CU_DEVICE_ATTRIBUTE_INTEGRATED`` and
``CAN_MAP_HOST_MEMORY``, the host buffer is allocated mapped (``DEVICEMAP``) and the GPU
reads and writes it directly: no copies at all ("zero-copy").

The stream is non-blocking (``CU_STREAM_NON_BLOCKING``): no implicit synchronisation with the
legacy default stream, which other threads (OpenCV, GStreamer, ONNX Runtime) may use while a
CUDA graph is being captured.

CUDA graphs: pycuda (up to 2026.1) has no stream-capture API, so capture uses the CUDA
driver API (libcuda, which pycuda itself loads) through ctypes, on pycuda's stream handle.
A capture that fails (TensorRT's enqueue returns False under capture, or the driver refuses)
ends the capture, destroys any partial graph and raises ``CaptureFailed``, as trtexec does
(release/10.3 samples/common/sampleInference.cpp:970-990, sampleDevice.h endCaptureOnError);
the caller then runs the plain enqueue.
"""
from __future__ import annotations

import ctypes
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from sage_edge.errors import SageEdgeError

PYCUDA_HINT = ("pycuda is not installed: on a Jetson `pip install pycuda` (it builds against JetPack's CUDA; "
               "install python3-dev and put /usr/local/cuda/bin on PATH first), or `pip install 'sage-edge[jetson]'`")

STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING (cuda.h)
# CUdevice_attribute values (cuda.h)
_ATTR_INTEGRATED = 18
_ATTR_CC_MAJOR = 75
_ATTR_CC_MINOR = 76


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


def driver_device_facts(index: int = 0, libcuda: Any = None) -> dict[str, Any]:
    """Name, compute capability and integration of GPU ``index`` from libcuda itself (ctypes, no pycuda).

    ``cuDeviceGetName`` is what pycuda's ``Device.name()`` returns at run time, so an engine's
    sidecar written from here matches the runtime check; nvidia-smi or the Jetson device tree
    spell the same GPU differently. One-line error when libcuda or the device is missing.
    """
    lib = libcuda or _libcuda()
    device = ctypes.c_int()
    _check(lib.cuInit(0), "cuInit")
    _check(lib.cuDeviceGet(ctypes.byref(device), int(index)), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    _check(lib.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
    values = {}
    for key, attribute in (("major", _ATTR_CC_MAJOR), ("minor", _ATTR_CC_MINOR), ("integrated", _ATTR_INTEGRATED)):
        value = ctypes.c_int()
        _check(lib.cuDeviceGetAttribute(ctypes.byref(value), attribute, device), "cuDeviceGetAttribute")
        values[key] = value.value
    return {"name": name.value.decode(errors="replace"), "compute_capability": f"{values['major']}.{values['minor']}",
            "integrated": bool(values["integrated"])}


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
    """A CUDA context, a stream and the buffers; create, use and close it on ONE thread.

    The context is current only inside ``with ctx.active():``; every other method must be
    called inside such a block.
    """

    def __init__(self, device_index: int = 0, zero_copy: bool | None = None) -> None:
        self.cuda = import_pycuda()
        self.info = device_info(device_index, self.cuda)
        dev = self.cuda.Device(device_index)
        flags = self.cuda.ctx_flags.SCHED_AUTO
        self.zero_copy = self.info.zero_copy if zero_copy is None else (zero_copy and self.info.can_map_host_memory)
        if self.zero_copy:
            flags |= self.cuda.ctx_flags.MAP_HOST  # required for DEVICEMAP host allocations
        self.context = dev.make_context(flags)  # made current (pushed) on this thread
        try:
            self.stream = self.cuda.Stream(flags=STREAM_NON_BLOCKING)
        finally:
            self.cuda.Context.pop()  # Context.pop is a staticmethod: pops this thread's current context
        self._closed = False

    @contextmanager
    def active(self) -> Iterator["CudaContext"]:
        """Make the context current on this thread for the block, and pop it after (also on errors)."""
        self.context.push()
        try:
            yield self
        finally:
            self.cuda.Context.pop()

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
        """Finish the stream's work and release the context (call it outside ``active()``)."""
        if self._closed:
            return
        self._closed = True
        try:
            with self.active():
                self.synchronize()
        finally:
            # Not current here: pycuda's detach pushes it on this (its own) thread, detaches, and pops.
            self.context.detach()


class CaptureFailed(SageEdgeError):
    """The CUDA graph capture or its launch failed; run the plain enqueue instead."""


class CudaGraph:
    """A captured CUDA graph of the work enqueued by ``body`` on ``ctx``'s stream (driver API via ctypes)."""

    _CAPTURE_MODE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL

    def __init__(self, ctx: CudaContext, body: Callable[[], None], libcuda: Any = None) -> None:
        self.ctx = ctx
        self.lib = libcuda or _libcuda()
        self.graph = ctypes.c_void_p()
        self.exec = ctypes.c_void_p()
        stream = ctypes.c_void_p(ctx.stream_handle)
        status = self.lib.cuStreamBeginCapture_v2(stream, self._CAPTURE_MODE_THREAD_LOCAL)
        if status != 0:
            raise CaptureFailed(f"cuStreamBeginCapture failed with CUDA error {status}")
        body_error: BaseException | None = None
        try:
            body()
        except Exception as exc:  # TensorRT's enqueue returned False under capture, or a CUDA call failed
            body_error = exc
        # Always end the capture: the stream stays unusable while it captures. After a failed enqueue the driver
        # either reports the capture invalidated (no graph) or returns a graph that must not be used
        # (release/10.3 samples/common/sampleDevice.h endCaptureOnError): destroy it.
        end_status = self.lib.cuStreamEndCapture(stream, ctypes.byref(self.graph))
        if body_error is not None or end_status != 0:
            self._destroy_graph()
            _clear_cudart_error()
            why = str(body_error) if body_error is not None else f"cuStreamEndCapture failed with CUDA error {end_status}"
            raise CaptureFailed(why)
        status = self.lib.cuGraphInstantiateWithFlags(ctypes.byref(self.exec), self.graph, ctypes.c_ulonglong(0))
        if status != 0:
            self.exec = ctypes.c_void_p()
            self._destroy_graph()
            raise CaptureFailed(f"cuGraphInstantiate failed with CUDA error {status}")

    def launch(self) -> None:
        status = self.lib.cuGraphLaunch(self.exec, ctypes.c_void_p(self.ctx.stream_handle))
        if status != 0:
            raise CaptureFailed(f"cuGraphLaunch failed with CUDA error {status}")

    def _destroy_graph(self) -> None:
        if self.graph:
            status = self.lib.cuGraphDestroy(self.graph)
            self.graph = ctypes.c_void_p()
            if status != 0:
                raise SageEdgeError(f"cuGraphDestroy failed with CUDA error {status}")

    def destroy(self) -> None:
        """Release the executable graph and the graph; checks both statuses."""
        exec_status = 0
        if self.exec:
            exec_status = self.lib.cuGraphExecDestroy(self.exec)
            self.exec = ctypes.c_void_p()
        self._destroy_graph()
        if exec_status != 0:
            raise SageEdgeError(f"cuGraphExecDestroy failed with CUDA error {exec_status}")


def _libcuda() -> Any:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise SageEdgeError("CUDA graphs need the CUDA driver library libcuda.so.1, which was not found") from None


def _clear_cudart_error(maps: Path = Path("/proc/self/maps")) -> None:
    """Clear the CUDA runtime's sticky last-error after a failed capture, as trtexec does (cudaGetLastError).

    TensorRT reports through the runtime API; when libcudart is loaded dynamically in this process
    (its path appears in /proc/self/maps), ``cudaGetLastError`` on that same library resets it. A
    statically linked cudart is TensorRT's own business; nothing to do then.
    """
    try:
        paths = {line.split()[-1] for line in maps.read_text().splitlines()
                 if "libcudart.so" in line and line.split()[-1].startswith("/")}
    except OSError:
        return
    for path in sorted(paths):
        try:
            ctypes.CDLL(path).cudaGetLastError()
        except (OSError, AttributeError):
            continue


def _check(status: int, what: str) -> None:
    if status != 0:
        raise SageEdgeError(f"{what} failed with CUDA error {status}")
