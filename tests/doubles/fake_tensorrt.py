"""TEST DOUBLE of the ``tensorrt`` Python module (NOT TensorRT), per release: ``make("8.6.2")``, ``make("10.3.0")``,
``make("11.0.0")``, ``make("8.5.2")``.

Written from the TensorRT Python API documentation of 8.5/8.6, 10.x and 11.0. Each version
exposes only what that release documents, so calling a removed API fails here as it would
on a device:
  * 8.5 / 8.6: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` needed by the ONNX parser;
    bindings API (``num_bindings``, ``execute_async_v2``, ``Builder.build_engine``,
    ``IBuilderConfig.max_workspace_size``) still present next to the tensor-name API (8.5+).
    8.5: no ``builder_optimization_level``, no ``VERSION_COMPATIBLE``, and the ONNX parser
    rejects UINT8 network I/O ("Unsupported ONNX data type: UINT8 (2)").
  * 10.x: bindings API, ``build_engine`` and ``max_workspace_size`` removed; EXPLICIT_BATCH
    deprecated (ignored); ``STRONGLY_TYPED`` available; IParserError gains ``node_name()``
    and ``node_operator()``.
  * 11.x: ``BuilderFlag.FP16`` and ``BuilderFlag.INT8`` removed (strong typing only).

The "parser" reads the real ONNX file with the onnx package (inputs, outputs, nodes) so the
network the builder sees is the model's. A "serialized engine" is a JSON blob; its
"execution" reads inputs from ``fake_pycuda``'s simulated device memory and writes
deterministic outputs (uint8 graphs: fused = vis, fused_y = ir; float graphs: fused_y = 2*vis_y-1).
"""
from __future__ import annotations

import enum
import json
import types
from typing import Any

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\n"


def _version_tuple(text: str) -> tuple[int, int, int]:
    a, b, c = (int(x) for x in text.split(".")[:3])
    return a, b, c


def make(version: str, num_dla_cores: int = 2, dla_unsupported_ops: tuple[str, ...] = ("Resize", "Tanh"),
         parser_errors: list[tuple[int, str, str, str]] | None = None, build_fails: bool = False) -> types.ModuleType:
    """A fresh ``tensorrt`` double for ``version``. ``parser_errors``: (node index, node name, op, desc)."""
    v = _version_tuple(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.CALLS = []  # (api, detail): what sage-edge called, for the tests
    state: dict[str, Any] = {"num_dla_cores": num_dla_cores, "dla_unsupported": set(dla_unsupported_ops),
                             "parser_errors": parser_errors or [], "build_fails": build_fails,
                             "last_config": None, "last_network": None}
    trt.STATE = state

    def call(api: str, detail: Any = None) -> None:
        trt.CALLS.append((api, detail))

    # -- enums ------------------------------------------------------------------------------
    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4
        UINT8 = 5
        INT64 = 8

    trt.DataType = DataType
    trt.float32, trt.float16, trt.int8, trt.int32, trt.uint8 = (DataType.FLOAT, DataType.HALF, DataType.INT8,
                                                               DataType.INT32, DataType.UINT8)
    _NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
           DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
    trt.nptype = lambda dt: _NP[dt]

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    trt.TensorIOMode = TensorIOMode

    flag_names = ["EXPLICIT_BATCH"]
    if v >= (9, 0, 0):
        flag_names.append("STRONGLY_TYPED")
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                     {n: i for i, n in enumerate(flag_names)})
    builder_flags = ["GPU_FALLBACK", "REFIT", "STRICT_TYPES", "OBEY_PRECISION_CONSTRAINTS",
                     "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "SPARSE_WEIGHTS"]
    if v < (11, 0, 0):
        builder_flags += ["FP16", "INT8"]  # removed in 11 (deprecated in 10.12)
    if v >= (8, 6, 0):
        builder_flags += ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]
    trt.BuilderFlag = enum.Enum("BuilderFlag", {n: i for i, n in enumerate(builder_flags)})
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1,
                                                      "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3})
    trt.ProfilingVerbosity = enum.Enum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
    trt.DeviceType = enum.Enum("DeviceType", {"GPU": 0, "DLA": 1})
    trt.ErrorCode = enum.Enum("ErrorCode", {"SUCCESS": 0, "INTERNAL_ERROR": 1, "INVALID_NODE": 4,
                                            "UNSUPPORTED_NODE": 8, "UNSUPPORTED_GRAPH": 9})

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    trt.Logger = Logger

    # -- network ----------------------------------------------------------------------------
    class Tensor:
        def __init__(self, name: str, dtype: Any, shape: tuple[int, ...]) -> None:
            self.name, self.dtype, self.shape = name, dtype, shape

    class Layer:
        def __init__(self, name: str, op: str, outputs: list[Tensor]) -> None:
            self.name, self.type, self._outputs = name, types.SimpleNamespace(name=op.upper()), outputs
            self.op = op
            self._precision = None
            self.output_types: dict[int, Any] = {}

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        def get_output(self, i: int) -> Tensor:
            return self._outputs[i]

        @property
        def precision(self) -> Any:
            return self._precision

        @precision.setter
        def precision(self, value: Any) -> None:
            self._precision = value
            call("layer.precision", (self.name, value))

        def set_output_type(self, i: int, dtype: Any) -> None:
            self.output_types[i] = dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []
            self.layers: list[Layer] = []
            state["last_network"] = self

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self.outputs[i]

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

    class ParserError:
        def __init__(self, node: int, node_name: str, op: str, desc: str) -> None:
            self._node, self._name, self._op, self._desc = node, node_name, op, desc

        def code(self) -> Any:
            return trt.ErrorCode.UNSUPPORTED_NODE

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

        if v >= (10, 0, 0):
            def node_name(self) -> str:
                return self._name

            def node_operator(self) -> str:
                return self._op

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[ParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            call("parser.parse", path)
            if v < (10, 0, 0) and not self.network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)):
                self.errors.append(ParserError(-1, "", "", "Network must have the explicit batch flag set."))
                return False
            proto = onnx.load_from_string(bytes(model))
            inferred = onnx.shape_inference.infer_shapes(proto)
            elem = {x.name: x.type.tensor_type.elem_type for x in
                    list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
            to_trt = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
                      onnx.TensorProto.UINT8: DataType.UINT8, onnx.TensorProto.INT8: DataType.INT8,
                      onnx.TensorProto.INT64: DataType.INT64, onnx.TensorProto.INT32: DataType.INT32,
                      onnx.TensorProto.BOOL: DataType.BOOL}
            for i, n, op, desc in state["parser_errors"]:
                self.errors.append(ParserError(i, n, op, desc))
            for value in list(proto.graph.input) + list(proto.graph.output):
                if value.type.tensor_type.elem_type == onnx.TensorProto.UINT8 and v < (8, 6, 0):
                    self.errors.append(ParserError(-1, "", "", "Unsupported ONNX data type: UINT8 (2)"))
                    return False
            if self.errors:
                return False
            for value in proto.graph.input:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                self.network.inputs.append(Tensor(value.name, to_trt[value.type.tensor_type.elem_type], dims))
            for value in proto.graph.output:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                self.network.outputs.append(Tensor(value.name, to_trt[value.type.tensor_type.elem_type], dims))
            for node in proto.graph.node:
                outs = [Tensor(o, to_trt.get(elem.get(o, 1), DataType.FLOAT), ()) for o in node.output]
                self.network.layers.append(Layer(node.name, node.op_type, outs))
            return True

    trt.OnnxParser = OnnxParser

    # -- builder ----------------------------------------------------------------------------
    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (TRT's names)
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))
            call("profile.set_shape", (name, tuple(min), tuple(opt), tuple(max)))

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.entries = [e for e in bytes(data).split(b"\n") if e]

        def serialize(self) -> bytes:
            return b"\n".join(self.entries) + b"\n"

    class BuilderConfig:
        _attrs = {"default_device_type", "DLA_core", "profiling_verbosity", "flags_set", "pools", "profiles",
                  "timing_cache", "loaded_cache_entries", "_opt_level"}
        if v < (10, 0, 0):
            _attrs |= {"max_workspace_size"}

        def __init__(self) -> None:
            self.flags_set: set[Any] = set()
            self.pools: dict[Any, int] = {}
            self.profiles: list[OptimizationProfile] = []
            self.default_device_type = trt.DeviceType.GPU
            self.DLA_core = -1
            self.timing_cache = None
            self.loaded_cache_entries = 0
            self.profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            state["last_config"] = self

        def __setattr__(self, name: str, value: Any) -> None:
            if name not in self._attrs and not (name == "builder_optimization_level" and v >= (8, 6, 0)):
                raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{name}' "
                                     f"(TensorRT {version})")
            if name == "builder_optimization_level":
                name = "_opt_level"
            object.__setattr__(self, name, value)

        @property
        def builder_optimization_level(self) -> int:
            if v < (8, 6, 0):
                raise AttributeError("builder_optimization_level: TensorRT 8.6+")
            return getattr(self, "_opt_level", 3)

        def set_flag(self, flag: Any) -> None:
            self.flags_set.add(flag)
            call("config.set_flag", flag.name)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags_set

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pools[pool] = size
            call("config.set_memory_pool_limit", (pool.name, size))

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> TimingCache:
            call("config.create_timing_cache", len(data))
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.timing_cache = cache
            self.loaded_cache_entries = len(cache.entries)
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self.timing_cache

        def can_run_on_DLA(self, layer: Layer) -> bool:  # noqa: N802 (TRT's name)
            return layer.op not in state["dla_unsupported"]

        def get_device_type(self, layer: Layer) -> Any:
            return self.default_device_type if self.can_run_on_DLA(layer) else trt.DeviceType.GPU

    class HostMemory(bytes):
        pass

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        @property
        def num_DLA_cores(self) -> int:  # noqa: N802
            return state["num_dla_cores"]

        def create_network(self, flags: int = 0) -> Network:
            call("builder.create_network", flags)
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> HostMemory | None:
            call("builder.build_serialized_network", None)
            if state["build_fails"]:
                return None
            if v >= (11, 0, 0) and not network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)):
                return None
            if any(int(d) == -1 for t in network.inputs for d in t.shape) and not config.profiles:
                return None  # dynamic inputs need an optimization profile
            if config.timing_cache is not None:  # the build adds tactic timings to the cache
                config.timing_cache.entries.append(f"tactic-{len(config.timing_cache.entries)}".encode())
            profile = config.profiles[0].shapes if config.profiles else {}
            blob = {
                "version": version,
                "inputs": [[t.name, t.dtype.name, list(t.shape), [list(s) for s in profile.get(t.name, ())]]
                           for t in network.inputs],
                "outputs": [[t.name, t.dtype.name, list(t.shape)] for t in network.outputs],
                "flags": sorted(f.name for f in config.flags_set),
                "dla_core": config.DLA_core if config.default_device_type == trt.DeviceType.DLA else None,
            }
            return HostMemory(MAGIC + json.dumps(blob).encode())

        if v < (10, 0, 0):
            def build_engine(self, network: Network, config: BuilderConfig) -> Any:  # removed in TRT 10
                call("builder.build_engine (deprecated)", None)
                raise AssertionError("sage-edge must use build_serialized_network")

    trt.Builder = Builder

    # -- runtime ----------------------------------------------------------------------------
    class Engine:
        def __init__(self, blob: dict[str, Any]) -> None:
            self.blob = blob
            self.io = [(n, TensorIOMode.INPUT, DataType[d], tuple(s), [tuple(p) for p in prof])
                       for n, d, s, prof in blob["inputs"]]
            self.io += [(n, TensorIOMode.OUTPUT, DataType[d], tuple(s), []) for n, d, s in blob["outputs"]]

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        def _find(self, name: str) -> tuple:
            for entry in self.io:
                if entry[0] == name:
                    return entry
            raise KeyError(name)

        def get_tensor_name(self, i: int) -> str:
            return self.io[i][0]

        def get_tensor_mode(self, name: str) -> Any:
            return self._find(name)[1]

        def get_tensor_dtype(self, name: str) -> Any:
            return self._find(name)[2]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self._find(name)[3]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            prof = self._find(name)[4]
            if not prof:
                raise RuntimeError(f"{name} has no profile")
            return prof

        def create_execution_context(self) -> "ExecutionContext":
            return ExecutionContext(self)

        if v < (10, 0, 0):
            @property
            def num_bindings(self) -> int:  # removed in TRT 10
                raise AssertionError("sage-edge must not use the bindings API")

    class ExecutionContext:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.input_shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.executions = 0

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(shape)
            call("context.set_input_shape", (name, shape))
            _, _, _, static, prof = self.engine._find(name)
            if prof:
                low, _, high = prof
                if any(d < lo or d > hi for d, lo, hi in zip(shape, low, high)):
                    return False
            elif shape != static:
                return False
            self.input_shapes[name] = shape
            return True

        def _hw(self) -> tuple[int, int]:
            for name, mode, _, _, _ in self.engine.io:
                if mode == TensorIOMode.INPUT and name in self.input_shapes:
                    s = self.input_shapes[name]
                    return (s[1], s[2]) if len(s) == 4 and s[-1] in (1, 3) and s[1] > 3 else (s[2], s[3])
            raise RuntimeError("input shapes not set")

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            _, mode, _, static, _ = self.engine._find(name)
            if mode == TensorIOMode.INPUT:
                return self.input_shapes.get(name, static)
            if -1 not in static:
                return static
            h, w = self._hw()
            out = list(static)
            if name in ("fused", "fused_y") and static[-1] in (1, 3):  # NHWC uint8 graph
                out[1], out[2] = h, w
            else:
                out[2], out[3] = h, w
            return tuple(out)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            call("context.set_tensor_address", (name, int(address)))
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            import sage_edge_double_fake_pycuda as cuda  # registered by the tests' fixture

            call("context.execute_async_v3", stream_handle)

            def run() -> None:
                self.executions += 1
                arrays = {}
                for name, mode, dtype, _, _ in self.engine.io:
                    if mode == TensorIOMode.INPUT:
                        arrays[name] = cuda.read_device(self.addresses[name], self.input_shapes[name], _NP[dtype])
                for name, mode, dtype, _, _ in self.engine.io:
                    if mode != TensorIOMode.OUTPUT:
                        continue
                    shape = self.get_tensor_shape(name)
                    if name == "fused":
                        value = arrays["vis"]
                    elif name == "fused_y" and "vis" in arrays:
                        value = arrays["ir"]
                    else:
                        value = 2.0 * arrays["vis_y"] - 1.0
                    cuda.write_device(self.addresses[name], np.asarray(value, _NP[dtype]).reshape(shape))

            if stream_handle in cuda.CAPTURING:
                cuda.CAPTURING[stream_handle].append(run)  # recorded into the CUDA graph, not run
            else:
                run()
            return True

        if v < (10, 0, 0):
            def execute_async_v2(self, bindings: Any, stream_handle: int) -> bool:  # removed in TRT 10
                raise AssertionError("sage-edge must use execute_async_v3")

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger
            if v >= (8, 6, 0):
                self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            call("runtime.deserialize_cuda_engine", len(data))
            if not bytes(data).startswith(MAGIC):
                return None
            blob = json.loads(bytes(data)[len(MAGIC):])
            if blob["version"] != version:  # engines are not portable across TensorRT versions
                return None
            return Engine(blob)

    trt.Runtime = Runtime
    return trt
