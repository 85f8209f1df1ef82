"""Every runtime-side TensorRT call sage-edge makes (the build side is ``sage_edge.export.engine_builder``).

Supported: TensorRT 8.5 (JetPack 5.1) through 11.x (JetPack 7.2.2+). All of them have the
tensor-name API introduced in 8.5, which is the only one used here:
``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_dtype``,
``get_tensor_shape``, ``get_tensor_profile_shape``, ``set_input_shape``,
``set_tensor_address`` and ``execute_async_v3``. TensorRT 10 removed the bindings API
(``num_bindings``, ``get_binding_*``, ``execute_async_v2``), so it is never touched; 8.5
documents ``execute_async_v3`` alongside ``execute_async_v2``, so no v2 path is needed.

One ``trt.Logger`` per process (``shared_logger``): TensorRT keeps the first logger it is
given and warns when a builder or runtime brings a different one.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from sage_edge.errors import SageEdgeError

MIN_VERSION = (8, 5)

TENSORRT_HINT = ("TensorRT is not installed: on a Jetson it comes with JetPack (`sudo apt install "
                 "python3-libnvinfer`, inside your venv use --system-site-packages); on an x86 desktop "
                 "`pip install tensorrt`")

_LOGGERS: dict[int, tuple[Any, Any]] = {}  # id(tensorrt module) -> (module, its one Logger)
_LOGGERS_LOCK = threading.Lock()


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a one-line error saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise SageEdgeError(TENSORRT_HINT) from None
    return trt


def shared_logger(trt: Any) -> Any:
    """The process's one ``trt.Logger`` (WARNING), shared by every builder and runtime sage-edge creates."""
    with _LOGGERS_LOCK:
        entry = _LOGGERS.get(id(trt))
        if entry is None or entry[0] is not trt:
            entry = (trt, trt.Logger(trt.Logger.WARNING))
            _LOGGERS[id(trt)] = entry
        return entry[1]


def version_tuple(trt: Any) -> tuple[int, int, int]:
    parts = []
    for piece in str(trt.__version__).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def check_supported(trt: Any) -> tuple[int, int, int]:
    version = version_tuple(trt)
    if version[:2] < MIN_VERSION:
        raise SageEdgeError(f"TensorRT {trt.__version__} is too old: sage-edge needs 8.5 or later "
                            "(JetPack 5.1+), for the tensor-name API")
    return version


def dla_unavailable_reason(version: tuple[int, int, int]) -> str | None:
    """Why this TensorRT release cannot use a DLA at all on Linux, or None.

    TensorRT 11.4.1 docs, "Migrating TensorRT from 10.x to 11.x on Jetson/JetPack": "DLA was
    unavailable in TensorRT 11.0 through 11.3, and TensorRT 11.4.0 supported DLA only on Windows
    on ARM"; 11.4.1 restores it on Jetson AGX Orin with JetPack 7.2.2+ only ("Jetson Thor has no DLA").
    """
    if version[0] == 11 and (version[:2] < (11, 4) or version[:3] == (11, 4, 0)):
        return (f"TensorRT {'.'.join(map(str, version))} has no DLA support (DLA is absent from TensorRT 11.0-11.3 "
                "and 11.4.0 on Linux; 11.4.1+ has it on Jetson AGX Orin with JetPack 7.2.2+, Jetson Thor has "
                "none): run on the GPU (drop --dla-core), or use JetPack 6 (TensorRT 10.3) for the DLA")
    return None


@dataclass(frozen=True)
class IOTensor:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 for dynamic axes
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None  # (min, opt, max), inputs only


class TensorRTEngine:
    """A deserialized engine and one execution context. Use from the thread that owns the CUDA context.

    allow_host_code: version-compatible engines (TRT 8.6+) embed the lean runtime, which is host
    code; TensorRT loads it only when ``engine_host_code_allowed`` is set. dla_core: the DLA core
    the engine was built for; set on the runtime before deserializing, as trtexec does
    (release/10.3 samples/common/sampleEngines.cpp:117-120).
    """

    def __init__(self, engine_bytes: bytes, trt: Any = None, allow_host_code: bool = False,
                 source: str | os.PathLike = "engine", dla_core: int | None = None,
                 sidecar_known: bool = True) -> None:
        self.trt = trt or import_tensorrt()
        self.version = check_supported(self.trt)
        self.logger = shared_logger(self.trt)
        self.runtime = self.trt.Runtime(self.logger)
        if allow_host_code and self.version >= (8, 6, 0):
            # TRT 8.6+: version-compatible engines embed the lean runtime; loading it must be allowed.
            self.runtime.engine_host_code_allowed = True
        if dla_core is not None:
            self._set_dla_core(int(dla_core), source)
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            hint = ("built with another TensorRT version or GPU, or not an engine; rebuild it with "
                    "`sage-edge build-engine`")
            if not sidecar_known:
                hint += ("; a version-compatible engine also needs its .json sidecar beside it, which allows its "
                         "embedded lean runtime (host code) to load")
            raise SageEdgeError(f"{source}: TensorRT {self.trt.__version__} could not deserialize it ({hint})")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise SageEdgeError(f"{source}: TensorRT could not create an execution context (out of GPU memory?)")

    def _set_dla_core(self, core: int, source: str | os.PathLike) -> None:
        reason = dla_unavailable_reason(self.version)
        if reason:
            raise SageEdgeError(f"{source} is a DLA engine, but {reason}")
        cores = int(self.runtime.num_DLA_cores)
        if not 0 <= core < cores:
            raise SageEdgeError(f"{source} was built for DLA core {core}, but this device has "
                                + (f"DLA cores 0..{cores - 1}" if cores else "no DLA")
                                + "; rebuild it with `sage-edge build-engine` for this device")
        self.runtime.DLA_core = core

    def io_tensors(self) -> list[IOTensor]:
        trt, engine = self.trt, self.engine
        out = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            profile = None
            if is_input and -1 in shape:
                low, opt, high = engine.get_tensor_profile_shape(name, 0)
                profile = (tuple(int(d) for d in low), tuple(int(d) for d in opt), tuple(int(d) for d in high))
            out.append(IOTensor(name, is_input, dtype, shape, profile))
        return out

    def activation_memory_bytes(self) -> int:
        """Device memory TensorRT allocates for the engine's activations (scratch), besides the I/O buffers.

        ``device_memory_size_v2`` from TensorRT 10.1 (the only one left in 11.0's bindings),
        ``device_memory_size`` before (pyCore.cpp of each release).
        """
        engine = self.engine
        for name in ("device_memory_size_v2", "device_memory_size"):
            try:
                return int(getattr(engine, name))
            except AttributeError:
                continue
        return 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        return bool(self.context.set_input_shape(name, tuple(int(d) for d in shape)))

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.context.get_tensor_shape(name))

    def set_tensor_address(self, name: str, address: int) -> None:
        if not self.context.set_tensor_address(name, int(address)):
            raise SageEdgeError(f"TensorRT refused the buffer address for tensor '{name}' (unknown tensor, or "
                                "an address without the 256-byte alignment TensorRT requires)")

    def execute(self, stream_handle: int) -> None:
        # TRT 8.5 - 11: enqueueV3 on the tensor addresses set above.
        if not self.context.execute_async_v3(stream_handle):
            raise SageEdgeError("TensorRT inference failed (execute_async_v3 returned False; see the TensorRT log)")

    def close(self) -> None:
        # Release in reverse order of creation; TRT 10 removed the explicit destroy(), deletion frees.
        self.context = None
        self.engine = None
        self.runtime = None
