"""TEST DOUBLE of ``pycuda`` / ``pycuda.driver`` (NOT pycuda): the subset sage-edge uses, simulated on the CPU.

Written from pycuda's sources (github:inducer/pycuda, HEAD = v2026.1, src/wrapper/wrap_cudadrv.cpp and
src/cpp/cuda.hpp) and the CUDA driver API it wraps. Every rule it enforces names its source below.
It is never more lenient than the real library:

* The context stack is per thread (``context_stack`` is a ``boost::thread_specific_ptr``,
  src/cpp/cuda.hpp). ``make_context`` pushes; ``Context.push()`` is an instance method;
  ``Context.pop()`` is a STATIC method that pops whatever context is current on the calling
  thread (wrap_cudadrv.cpp ``.staticmethod("pop")``; cuda.hpp ``context::pop``).
* A thread that exits with a context still on its stack makes pycuda print "The context stack
  was not empty upon module cleanup" and ``abort()`` (cuda.hpp ``context_stack::~context_stack``).
  The double cannot abort the test process, so it records the event in ``ABORTS``; tests assert
  that it is empty after sage-edge ran.
* Memory, stream and event calls need a current context (the driver returns
  CUDA_ERROR_INVALID_CONTEXT otherwise).
* Asynchronous work is asynchronous: ``memcpy_*_async``, ``Event.record`` and the TensorRT
  double's enqueue are queued on their stream and run, in order, at ``Stream.synchronize()``.
  Reading a host output before synchronizing sees stale data, as on a GPU.
* ``cuMemAlloc`` returns 256-byte aligned addresses (CUDA Programming Guide, "Device Memory
  Accesses": cudaMalloc memory is aligned to at least 256 bytes); page-locked host memory is
  page aligned (cuMemHostAlloc).
* ``pagelocked_empty(..., DEVICEMAP)`` needs a context made with ``ctx_flags.MAP_HOST``
  (cuCtxCreate: CU_CTX_MAP_HOST "must be set in order to allocate pinned host memory that is
  accessible to the device") and ``Device()`` needs ``init()`` first (cuInit). These two are
  stricter than some drivers (harmless).

"Device memory" is a dict of byte buffers keyed by fake addresses (``MEMORY``); the TensorRT
double reads and writes it, so data really flows host -> "device" -> "engine" -> host.

``FakeLibCuda`` stands in for libcuda's entry points sage-edge calls through ctypes (stream
capture, CUDA graphs, device name and attributes), with their documented failure codes.
"""
from __future__ import annotations

import ctypes
import threading
import types
from typing import Any, Callable

import numpy as np

CONFIG: dict[str, Any] = {"name": "Orin", "cc": (8, 7), "integrated": True, "can_map": True,
                          "total_memory": 8 << 30, "count": 1}
MEMORY: dict[int, bytearray] = {}
LOG: list[tuple[str, Any]] = []  # (call, detail) in order: the tests read it
ABORTS: list[str] = []  # threads that exited with a context pushed (real pycuda: abort())
_next_address = [0x7F0000000000]
_tls = threading.local()
CONTEXTS_MADE: list["Context"] = []
STREAMS: dict[int, "Stream"] = {}
DEVICE_ALIGNMENT = 256  # cudaMalloc / cuMemAlloc: at least 256-byte aligned
PAGE = 4096  # cuMemHostAlloc: page aligned

# CUresult values (CUDA driver API, cuda.h)
CUDA_SUCCESS = 0
CUDA_ERROR_INVALID_VALUE = 1
CUDA_ERROR_NOT_INITIALIZED = 3
CUDA_ERROR_INVALID_CONTEXT = 201
CUDA_ERROR_ILLEGAL_STATE = 401
CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900
CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901


class Error(Exception):
    pass


class LogicError(Error):
    pass


def reset(**config: Any) -> None:
    CONFIG.update({"name": "Orin", "cc": (8, 7), "integrated": True, "can_map": True,
                   "total_memory": 8 << 30, "count": 1})
    CONFIG.update(config)
    MEMORY.clear()
    LOG.clear()
    ABORTS.clear()
    CONTEXTS_MADE.clear()
    STREAMS.clear()
    CAPTURING.clear()


class _ThreadStack(list):
    """One thread's context stack. Dropped by CPython when its thread ends, like boost::thread_specific_ptr."""

    def __init__(self) -> None:
        super().__init__()
        self.thread_name = threading.current_thread().name

    def __del__(self) -> None:
        # src/cpp/cuda.hpp context_stack::~context_stack: "The context stack was not empty upon module
        # cleanup ... The program will be aborted now." -> abort().
        if len(self):
            ABORTS.append(self.thread_name)


def _stack() -> _ThreadStack:
    if not hasattr(_tls, "stack"):
        _tls.stack = _ThreadStack()
    return _tls.stack


def current_context() -> "Context | None":
    stack = _stack()
    return stack[-1] if stack else None


def _require_context(what: str) -> None:
    if not _stack():
        raise LogicError(f"{what} failed: invalid device context (no current context on thread "
                         f"{threading.current_thread().name})")


def _allocate(nbytes: int, buffer: bytearray | None = None, alignment: int = DEVICE_ALIGNMENT) -> int:
    address = -(-_next_address[0] // alignment) * alignment
    _next_address[0] = address + max(nbytes, 1)
    MEMORY[address] = buffer if buffer is not None else bytearray(max(nbytes, 1))
    return address


_initialised = [False]


def init(flags: int = 0) -> None:
    _initialised[0] = True


class device_attribute:  # noqa: N801 (pycuda's spelling)
    INTEGRATED = "INTEGRATED"
    CAN_MAP_HOST_MEMORY = "CAN_MAP_HOST_MEMORY"


class ctx_flags:  # noqa: N801
    SCHED_AUTO = 0
    MAP_HOST = 8


class host_alloc_flags:  # noqa: N801
    PORTABLE = 1
    DEVICEMAP = 2


class Context:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.thread = threading.get_ident()
        self.detached = False

    def push(self) -> None:
        # wrap_cudadrv.cpp .def("push", context_push); cuda.hpp context_push: cuCtxPushCurrent + stack push.
        if self.detached:
            raise LogicError("cuCtxPushCurrent failed: context was detached")
        _stack().append(self)
        LOG.append(("ctx.push", threading.get_ident()))

    @staticmethod
    def pop() -> None:
        # wrap_cudadrv.cpp .staticmethod("pop"); cuda.hpp context::pop pops the CURRENT context of the calling
        # thread, and throws "cannot pop non-current context" when the stack is empty.
        stack = _stack()
        if not stack:
            raise LogicError("context::pop failed: cannot pop non-current context")
        stack.pop()
        LOG.append(("ctx.pop", threading.get_ident()))

    @staticmethod
    def get_current() -> "Context | None":
        return current_context()

    def detach(self) -> None:
        # cuda.hpp context::detach: when current, detach_internal pops it; otherwise, on the owning thread, it
        # pushes, detaches and pops; on another thread it does nothing (the context is leaked).
        if self.detached:
            raise LogicError("context::detach failed: cannot detach from invalid context")
        stack = _stack()
        if stack and stack[-1] is self:
            stack.pop()
        elif self.thread != threading.get_ident():
            LOG.append(("ctx.detach (other thread: no-op)", threading.get_ident()))
            return
        self.detached = True
        LOG.append(("ctx.detach", threading.get_ident()))


class Device:
    def __init__(self, index: int) -> None:
        if not _initialised[0]:
            raise LogicError("cuInit has not been called")
        if index >= CONFIG["count"]:
            raise LogicError("invalid device ordinal")
        self.index = index

    @staticmethod
    def count() -> int:
        return CONFIG["count"]

    def name(self) -> str:
        return CONFIG["name"]  # cuDeviceGetName

    def compute_capability(self) -> tuple[int, int]:
        return CONFIG["cc"]

    def total_memory(self) -> int:
        return CONFIG["total_memory"]

    def get_attribute(self, attr: str) -> int:
        return {"INTEGRATED": int(CONFIG["integrated"]), "CAN_MAP_HOST_MEMORY": int(CONFIG["can_map"])}[attr]

    def make_context(self, flags: int = 0) -> Context:
        # cuda.hpp device::make_context: cuCtxCreate, then the new context is pushed on this thread's stack.
        ctx = Context(flags)
        _stack().append(ctx)
        CONTEXTS_MADE.append(ctx)
        LOG.append(("make_context", threading.get_ident()))
        return ctx


class HostAllocation(bytearray):
    """Page-locked host memory; with DEVICEMAP it is also visible to the 'device' at one address."""

    def __init__(self, nbytes: int, mapped: bool) -> None:
        super().__init__(nbytes)
        self.mapped = mapped
        self.freed = False
        self._device_address = _allocate(nbytes, self, alignment=PAGE) if mapped else None

    def get_device_pointer(self) -> int:
        if self._device_address is None:
            raise LogicError("cuMemHostGetDevicePointer failed: memory was not allocated with DEVICEMAP")
        return self._device_address

    def free(self) -> None:
        self.freed = True
        if self._device_address is not None:
            MEMORY.pop(self._device_address, None)


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    _require_context("cuMemHostAlloc")
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    mapped = bool(mem_flags & host_alloc_flags.DEVICEMAP)
    if mapped and not _stack()[-1].flags & ctx_flags.MAP_HOST:
        raise LogicError("cuMemHostAlloc(DEVICEMAP) needs a context made with ctx_flags.MAP_HOST")
    allocation = HostAllocation(max(nbytes, 1), mapped)
    LOG.append(("pagelocked_empty", (shape, str(dtype), mapped)))
    return np.ndarray(shape, dtype, buffer=allocation, order=order)


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        self.address = _allocate(nbytes)
        self.nbytes = nbytes
        self.freed = False

    def __int__(self) -> int:
        return self.address

    def __index__(self) -> int:
        return self.address

    def free(self) -> None:
        self.freed = True
        MEMORY.pop(self.address, None)
        LOG.append(("free", self.address))


def mem_alloc(nbytes: int) -> DeviceAllocation:
    _require_context("cuMemAlloc")
    allocation = DeviceAllocation(int(nbytes))
    LOG.append(("mem_alloc", int(nbytes)))
    return allocation


class Stream:
    """pycuda.driver.Stream(flags=0): work queued on it runs, in order, at synchronize()."""

    _next = [1000]

    def __init__(self, flags: int = 0) -> None:
        _require_context("cuStreamCreate")
        Stream._next[0] += 1
        self.handle = Stream._next[0]
        self.flags = flags  # 1: CU_STREAM_NON_BLOCKING
        self.pending: list[tuple[str, Callable[[], None]]] = []
        STREAMS[self.handle] = self
        LOG.append(("stream", (self.handle, flags)))

    def enqueue(self, what: str, work: Callable[[], None]) -> None:
        if self.handle in CAPTURING:  # stream capture records work into the graph instead of running it
            CAPTURING[self.handle]["work"].append(work)
            return
        self.pending.append((what, work))

    def synchronize(self) -> None:
        _require_context("cuStreamSynchronize")
        if self.handle in CAPTURING:
            # cuStreamSynchronize on a capturing stream is not permitted during capture and invalidates it.
            CAPTURING[self.handle]["invalidated"] = True
            raise LogicError("cuStreamSynchronize failed: operation not permitted when stream is capturing")
        while self.pending:
            _, work = self.pending.pop(0)
            work()
        LOG.append(("synchronize", self.handle))


def stream_for(handle: int) -> Stream:
    if handle not in STREAMS:
        raise LogicError(f"invalid stream handle {handle}")
    return STREAMS[handle]


class Event:
    """pycuda.driver.Event: ``record(stream)``, ``synchronize()``, ``end.time_since(start)`` in ms.

    The double's GPU clock advances 0.25 ms per event when the stream reaches it, so elapsed
    times are deterministic; an event's time exists only once its stream ran up to it.
    """

    clock_ms = [0.0]

    def __init__(self, flags: int = 0) -> None:
        _require_context("cuEventCreate")
        self.time_ms: float | None = None

    def record(self, stream: "Stream | None" = None) -> "Event":
        _require_context("cuEventRecord")
        self.time_ms = None

        def reached() -> None:
            Event.clock_ms[0] += 0.25
            self.time_ms = Event.clock_ms[0]

        LOG.append(("event_record", getattr(stream, "handle", 0)))
        if stream is None:
            reached()
        else:
            stream.enqueue("event", reached)
        return self

    def synchronize(self) -> "Event":
        return self

    def time_since(self, start: "Event") -> float:
        _require_context("cuEventElapsedTime")
        if self.time_ms is None or start.time_ms is None:
            raise LogicError("cuEventElapsedTime failed: event not recorded (or not yet reached: synchronize)")
        return self.time_ms - start.time_ms


def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyHtoDAsync")
    address = int(dest)

    def copy() -> None:  # the host buffer is read when the stream reaches the copy, not now
        data = np.ascontiguousarray(src).tobytes()
        MEMORY[address][: len(data)] = data

    LOG.append(("htod", address))
    (stream.enqueue("htod", copy) if stream is not None else copy())


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyDtoHAsync")
    address = int(src)

    def copy() -> None:
        raw = bytes(MEMORY[address][: dest.nbytes])
        dest[...] = np.frombuffer(raw, dest.dtype).reshape(dest.shape)

    LOG.append(("dtoh", address))
    (stream.enqueue("dtoh", copy) if stream is not None else copy())


def memcpy_dtod_async(dest: Any, src: Any, size: int, stream: Stream | None = None) -> None:
    # wrap_cudadrv.cpp memcpy_dtod_async(dest, src, size, stream): cuMemcpyDtoDAsync
    _require_context("cuMemcpyDtoDAsync")
    target, source, n = int(dest), int(src), int(size)

    def copy() -> None:
        MEMORY[target][:n] = bytes(MEMORY[source][:n])

    LOG.append(("dtod", (target, source, n)))
    (stream.enqueue("dtod", copy) if stream is not None else copy())


# -- device memory access for the TensorRT double ---------------------------------------------
def read_device(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(bytes(MEMORY[address][:n]), dtype).reshape(shape).copy()


def write_device(address: int, array: np.ndarray) -> None:
    data = np.ascontiguousarray(array).tobytes()
    MEMORY[address][: len(data)] = data


# -- libcuda entry points called through ctypes -------------------------------------------------
CAPTURING: dict[int, dict[str, Any]] = {}  # stream handle -> {"work": [...], "invalidated": bool}


def _out(pointer: Any) -> Any:
    """The ctypes object behind ``ctypes.byref(x)`` (what the C function writes through)."""
    return pointer._obj


class FakeLibCuda:
    """libcuda.so.1 as sage-edge calls it via ctypes, with the driver API's failure modes (cuda.h):

    * cuStreamBeginCapture_v2 on a stream already capturing: CUDA_ERROR_ILLEGAL_STATE.
    * cuStreamEndCapture on an invalidated capture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED and a
      NULL graph; after a capture that TensorRT abandoned (enqueueV3 returned false) it returns a
      graph that must not be used and must be destroyed (release/10.3
      samples/common/sampleDevice.h TrtCudaGraph::endCaptureOnError).
    * cuGraphLaunch of an exec that does not exist: CUDA_ERROR_INVALID_VALUE.
    ``live_graphs`` / ``live_execs`` count what was created and not destroyed (leaks).
    """

    def __init__(self, fail_begin: bool = False, fail_instantiate: bool = False, fail_launch: bool = False) -> None:
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.execs: dict[int, int] = {}
        self.launches = 0
        self.instantiated = 0
        self.fail_begin, self.fail_instantiate, self.fail_launch = fail_begin, fail_instantiate, fail_launch
        self._next = [0x1000]

    @property
    def live_graphs(self) -> int:
        return len(self.graphs)

    @property
    def live_execs(self) -> int:
        return len(self.execs)

    def _handle(self) -> int:
        self._next[0] += 1
        return self._next[0]

    def cuStreamBeginCapture_v2(self, stream: ctypes.c_void_p, mode: int) -> int:  # noqa: N802
        if not _stack():
            return CUDA_ERROR_INVALID_CONTEXT
        handle = int(stream.value)
        if self.fail_begin:
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
        if handle in CAPTURING:
            return CUDA_ERROR_ILLEGAL_STATE
        CAPTURING[handle] = {"work": [], "invalidated": False}
        return CUDA_SUCCESS

    def cuStreamEndCapture(self, stream: ctypes.c_void_p, graph_out: Any) -> int:  # noqa: N802
        handle = int(stream.value)
        if handle not in CAPTURING:
            return CUDA_ERROR_ILLEGAL_STATE
        capture = CAPTURING.pop(handle)
        if capture["invalidated"]:
            _out(graph_out).value = None
            return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        graph = self._handle()
        self.graphs[graph] = capture["work"]
        _out(graph_out).value = graph
        return CUDA_SUCCESS

    def cuGraphInstantiateWithFlags(self, exec_out: Any, graph: ctypes.c_void_p, flags: Any) -> int:  # noqa: N802
        if self.fail_instantiate or not graph.value or int(graph.value) not in self.graphs:
            return CUDA_ERROR_INVALID_VALUE
        exec_handle = self._handle()
        self.execs[exec_handle] = int(graph.value)
        _out(exec_out).value = exec_handle
        self.instantiated += 1
        return CUDA_SUCCESS

    def cuGraphLaunch(self, graph_exec: ctypes.c_void_p, stream: ctypes.c_void_p) -> int:  # noqa: N802
        if not _stack():
            return CUDA_ERROR_INVALID_CONTEXT
        if self.fail_launch or not graph_exec.value or int(graph_exec.value) not in self.execs:
            return CUDA_ERROR_INVALID_VALUE
        target = stream_for(int(stream.value))
        for work in self.graphs.get(self.execs[int(graph_exec.value)], []):
            target.enqueue("graph", work)
        self.launches += 1
        return CUDA_SUCCESS

    def cuGraphExecDestroy(self, graph_exec: Any) -> int:  # noqa: N802
        value = graph_exec.value if isinstance(graph_exec, ctypes.c_void_p) else graph_exec
        return CUDA_SUCCESS if self.execs.pop(int(value or 0), None) is not None else CUDA_ERROR_INVALID_VALUE

    def cuGraphDestroy(self, graph: Any) -> int:  # noqa: N802
        value = graph.value if isinstance(graph, ctypes.c_void_p) else graph
        return CUDA_SUCCESS if self.graphs.pop(int(value or 0), None) is not None else CUDA_ERROR_INVALID_VALUE

    # Device facts (cuInit, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute); no context needed.
    def cuInit(self, flags: int) -> int:  # noqa: N802
        return CUDA_SUCCESS

    def cuDeviceGet(self, device_out: Any, ordinal: int) -> int:  # noqa: N802
        if int(ordinal) >= CONFIG["count"]:
            return CUDA_ERROR_INVALID_VALUE
        _out(device_out).value = int(ordinal)
        return CUDA_SUCCESS

    def cuDeviceGetName(self, buffer: Any, length: int, device: Any) -> int:  # noqa: N802
        buffer.value = CONFIG["name"].encode()[: int(length) - 1]
        return CUDA_SUCCESS

    def cuDeviceGetAttribute(self, value_out: Any, attribute: int, device: Any) -> int:  # noqa: N802
        # CU_DEVICE_ATTRIBUTE_INTEGRATED = 18, COMPUTE_CAPABILITY_MAJOR = 75, MINOR = 76 (cuda.h)
        values = {18: int(CONFIG["integrated"]), 75: CONFIG["cc"][0], 76: CONFIG["cc"][1]}
        if int(attribute) not in values:
            return CUDA_ERROR_INVALID_VALUE
        _out(value_out).value = values[int(attribute)]
        return CUDA_SUCCESS


def modules() -> dict[str, types.ModuleType]:
    """``{"pycuda": ..., "pycuda.driver": ...}`` to put in sys.modules."""
    import sys

    from importlib.machinery import ModuleSpec

    driver = sys.modules[__name__]
    package = types.ModuleType("pycuda")
    package.__spec__ = ModuleSpec("pycuda", None, is_package=True)  # importlib.util.find_spec works, as installed
    driver.__spec__ = ModuleSpec("pycuda.driver", None)
    package.driver = driver  # type: ignore[attr-defined]
    package.__path__ = []  # type: ignore[attr-defined]
    package.VERSION = (2026, 1)  # type: ignore[attr-defined]
    return {"pycuda": package, "pycuda.driver": driver}
