"""TEST DOUBLE of ``pycuda`` / ``pycuda.driver`` (NOT pycuda): the subset sage-edge uses, simulated on the CPU.

Written from pycuda's documented driver API (pycuda 2022.x - 2026.1, src/wrapper/wrap_cudadrv.cpp):
``init``, ``Device(i)`` (``count``, ``name``, ``compute_capability``, ``total_memory``,
``get_attribute``, ``make_context(flags)``), ``Context.pop/detach``, ``device_attribute``,
``ctx_flags``, ``host_alloc_flags.DEVICEMAP``, ``pagelocked_empty(shape, dtype, order, mem_flags)``
(array whose ``.base`` is the host allocation, ``get_device_pointer()`` when mapped),
``mem_alloc``, ``memcpy_htod_async``, ``memcpy_dtoh_async``, ``Stream`` (``handle``, ``synchronize``).

"Device memory" is a dict of byte buffers keyed by fake addresses (``MEMORY``); the TensorRT
double reads and writes it, so data really flows host -> "device" -> "engine" -> host.
The context stack is per thread, as in CUDA: memory calls from a thread without a current
context raise, which is how the tests check the one-worker-thread rule.

``FakeLibCuda`` stands in for libcuda's stream-capture / graph entry points (ctypes calls).
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
_next_address = [0x7F0000000000]
_tls = threading.local()
CONTEXTS_MADE: list["Context"] = []


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
    CONTEXTS_MADE.clear()


def _stack() -> list["Context"]:
    if not hasattr(_tls, "stack"):
        _tls.stack = []
    return _tls.stack


def _require_context(what: str) -> None:
    if not _stack():
        raise LogicError(f"{what} failed: invalid device context (no current context on thread "
                         f"{threading.current_thread().name})")


def _allocate(nbytes: int, buffer: bytearray | None = None) -> int:
    address = _next_address[0]
    _next_address[0] += max(nbytes, 1) + 256
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

    def pop(self) -> None:
        stack = _stack()
        if not stack or stack[-1] is not self:
            raise LogicError("cuCtxPopCurrent failed: context is not current on this thread")
        stack.pop()
        LOG.append(("ctx.pop", threading.get_ident()))

    def detach(self) -> None:
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
        return CONFIG["name"]

    def compute_capability(self) -> tuple[int, int]:
        return CONFIG["cc"]

    def total_memory(self) -> int:
        return CONFIG["total_memory"]

    def get_attribute(self, attr: str) -> int:
        return {"INTEGRATED": int(CONFIG["integrated"]), "CAN_MAP_HOST_MEMORY": int(CONFIG["can_map"])}[attr]

    def make_context(self, flags: int = 0) -> Context:
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
        self._device_address = _allocate(nbytes, self) if mapped else None

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
    _next = [1000]

    def __init__(self, flags: int = 0) -> None:
        _require_context("cuStreamCreate")
        Stream._next[0] += 1
        self.handle = Stream._next[0]
        self.pending: list[Callable[[], None]] = []

    def synchronize(self) -> None:
        _require_context("cuStreamSynchronize")
        LOG.append(("synchronize", self.handle))


class Event:
    """pycuda.driver.Event: ``record(stream)``, ``synchronize()``, ``end.time_since(start)`` in ms.

    The double's clock advances 0.25 ms per recorded event, so elapsed times are deterministic.
    """

    clock_ms = [0.0]

    def __init__(self, flags: int = 0) -> None:
        _require_context("cuEventCreate")
        self.time_ms: float | None = None

    def record(self, stream: "Stream | None" = None) -> "Event":
        _require_context("cuEventRecord")
        Event.clock_ms[0] += 0.25
        self.time_ms = Event.clock_ms[0]
        LOG.append(("event_record", getattr(stream, "handle", 0)))
        return self

    def synchronize(self) -> "Event":
        return self

    def time_since(self, start: "Event") -> float:
        _require_context("cuEventElapsedTime")
        if self.time_ms is None or start.time_ms is None:
            raise LogicError("cuEventElapsedTime failed: event not recorded")
        return self.time_ms - start.time_ms


def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyHtoDAsync")
    data = np.ascontiguousarray(src).tobytes()
    MEMORY[int(dest)][: len(data)] = data
    LOG.append(("htod", int(dest)))


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyDtoHAsync")
    raw = bytes(MEMORY[int(src)][: dest.nbytes])
    dest[...] = np.frombuffer(raw, dest.dtype).reshape(dest.shape)
    LOG.append(("dtoh", int(src)))


# -- device memory access for the TensorRT double ---------------------------------------------
def read_device(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(bytes(MEMORY[address][:n]), dtype).reshape(shape).copy()


def write_device(address: int, array: np.ndarray) -> None:
    data = np.ascontiguousarray(array).tobytes()
    MEMORY[address][: len(data)] = data


# -- libcuda stream capture / graphs (ctypes entry points) -------------------------------------
CAPTURING: dict[int, list[Callable[[], None]]] = {}


class FakeLibCuda:
    """cuStreamBeginCapture_v2 / cuStreamEndCapture / cuGraphInstantiateWithFlags / cuGraphLaunch / destroy."""

    def __init__(self) -> None:
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.launches = 0
        self.instantiated = 0

    def cuStreamBeginCapture_v2(self, stream: ctypes.c_void_p, mode: int) -> int:  # noqa: N802
        CAPTURING[int(stream.value)] = []
        return 0

    def cuStreamEndCapture(self, stream: ctypes.c_void_p, graph_out: Any) -> int:  # noqa: N802
        work = CAPTURING.pop(int(stream.value))
        handle = 0x1000 + len(self.graphs)
        self.graphs[handle] = work
        graph_out._obj.value = handle
        return 0

    def cuGraphInstantiateWithFlags(self, exec_out: Any, graph: ctypes.c_void_p, flags: Any) -> int:  # noqa: N802
        exec_out._obj.value = int(graph.value) + 0x100000
        self.instantiated += 1
        return 0

    def cuGraphLaunch(self, graph_exec: ctypes.c_void_p, stream: ctypes.c_void_p) -> int:  # noqa: N802
        for work in self.graphs[int(graph_exec.value) - 0x100000]:
            work()
        self.launches += 1
        return 0

    def cuGraphExecDestroy(self, graph_exec: Any) -> int:  # noqa: N802
        return 0

    def cuGraphDestroy(self, graph: Any) -> int:  # noqa: N802
        return 0


def modules() -> dict[str, types.ModuleType]:
    """``{"pycuda": ..., "pycuda.driver": ...}`` to put in sys.modules."""
    import sys

    driver = sys.modules[__name__]
    package = types.ModuleType("pycuda")
    package.driver = driver  # type: ignore[attr-defined]
    package.__path__ = []  # type: ignore[attr-defined]
    package.VERSION = (2026, 1)  # type: ignore[attr-defined]
    return {"pycuda": package, "pycuda.driver": driver}
