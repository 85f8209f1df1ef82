"""TEST DOUBLE of the ``tensorrt`` Python module (NOT TensorRT), per release: ``make("8.5.2")``, ``make("8.6.2")``,
``make("10.3.0")``, ``make("10.12.0")``, ``make("11.0.0")``, ``make("11.4.1")``.

It is never more lenient than the real library. Where a rule is not documented precisely, the
double takes the stricter reading and says so. Every rule names its source (repository, branch
or tag, path); the mirrors are github:NVIDIA/TensorRT and github:onnx/onnx-tensorrt.

API surface: ``trt_api.json``, extracted by ``extract_trt_api.py`` from each release's Python
bindings (python/src/infer/pyCore.cpp, pyGraph.cpp, pyFoundationalTypes.cpp and
python/src/parsers/pyOnnx.cpp on tag 8.5.3, release/8.6, release/10.3, release/10.12 and
release/11.0), with enum values from that release's include/NvInfer*.h. A release-specific name
that the bindings do not expose raises AttributeError here, as it would on a device
(e.g. ``BuilderFlag.FP16`` and ``ILayer.precision`` on 11, ``STRICT_TYPES`` on 10,
``engine_host_code_allowed`` on 8.5, ``device_memory_size_v2`` before 10.1).
Versions map to tables: 8.5.x -> 8.5, 8.6.x -> 8.6, 10.0-10.11 -> 10.3, 10.12+ -> 10.12, 11.x -> 11.0.

The "parser" reads the real ONNX file with the onnx package and builds the layers the real
parser builds for it (constants named after initializers, unnamed broadcast shuffles, ICastLayer
from 8.6 and an IIdentityLayer cast on 8.5). A "serialized engine" is a JSON blob; its
"execution" reads inputs from ``fake_pycuda``'s simulated device memory on the stream and writes
deterministic outputs (uint8 graphs: fused = vis, fused_y = ir; float graphs: fused_y = 2*vis_y-1).
"""
from __future__ import annotations

import enum
import json
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\n"
API = json.loads((Path(__file__).with_name("trt_api.json")).read_text())["releases"]

# Highest ONNX opset each parser documents (onnx-tensorrt docs/operators.md, line 5: 8.5-GA and 8.6-GA "up to
# Opset 17"; 10.0-GA and 10.1-GA "opset 9 to opset 20"). The real parser only logs the opset
# (ModelImporter.cpp), so refusing above it is the stricter reading. 11.x: no 11.x branch in the mirror; the
# 10.x bound is kept (stricter).
MAX_OPSET = {"8.5": 17, "8.6": 17, "10.3": 20, "10.12": 20, "11.0": 20}

# ONNX op -> the TensorRT layer type its importer adds (onnx-tensorrt builtin_op_importers.cpp, 8.6-GA).
LAYER_FOR_OP = {
    "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE", "Pow": "ELEMENTWISE",
    "Max": "ELEMENTWISE", "Min": "ELEMENTWISE", "Greater": "ELEMENTWISE", "Less": "ELEMENTWISE",
    "Equal": "ELEMENTWISE", "And": "ELEMENTWISE", "Or": "ELEMENTWISE",
    "Floor": "UNARY", "Ceil": "UNARY", "Abs": "UNARY", "Exp": "UNARY", "Log": "UNARY", "Sqrt": "UNARY",
    "Neg": "UNARY", "Reciprocal": "UNARY", "Round": "UNARY", "Not": "UNARY",
    "Relu": "ACTIVATION", "LeakyRelu": "ACTIVATION", "Sigmoid": "ACTIVATION", "Tanh": "ACTIVATION",
    "Clip": "ACTIVATION", "Elu": "ACTIVATION", "Softplus": "ACTIVATION",
    "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Flatten": "SHUFFLE", "Squeeze": "SHUFFLE",
    "Unsqueeze": "SHUFFLE", "Identity": "IDENTITY", "Concat": "CONCATENATION", "Conv": "CONVOLUTION",
    "ConvTranspose": "DECONVOLUTION", "Slice": "SLICE", "Split": "SLICE", "Resize": "RESIZE",
    "ReduceMean": "REDUCE", "ReduceMax": "REDUCE", "ReduceSum": "REDUCE", "MatMul": "MATRIX_MULTIPLY",
    "Gemm": "MATRIX_MULTIPLY", "Where": "SELECT", "Gather": "GATHER", "Shape": "SHAPE", "Pad": "SLICE",
    "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Softmax": "SOFTMAX",
    "MaxPool": "POOLING", "AveragePool": "POOLING", "Expand": "SLICE",
}
# Elementwise importers broadcast lower-rank inputs with an unnamed IShuffleLayer (onnx-tensorrt 8.6-GA
# onnx2trt_utils.cpp elementwiseHelper -> broadcastTensors -> unsqueezeTensor).
BROADCASTING_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Greater", "Less", "Equal", "And", "Or",
                    "Where"}
# Inputs that importers consume as weights, not tensors (no constant layer): Conv/ConvTranspose kernel and bias.
WEIGHT_INPUTS = {"Conv": {1, 2}, "ConvTranspose": {1, 2}}
# onnx-tensorrt 8.5-GA builtin_op_importers.cpp: importers that CHECK(notInvalidType(inputs.at(0), {"UINT8"}))
# and fail with "Found invalid input type of UINT8" (onnx2trt_utils.cpp notInvalidType).
UINT8_REFUSED_OPS_85 = {"Clip", "Concat", "ConstantOfShape", "DepthToSpace", "Einsum", "Expand", "EyeLike",
                        "Gather", "GatherElements", "GatherND", "Mod", "OneHot", "Pad", "Resize",
                        "ReverseSequence", "GridSample", "Slice", "SpaceToDepth", "Split", "Tile", "TopK",
                        "Trilu", "Upsample", "Where", "LeakyRelu", "Relu", "Sigmoid", "Tanh", "Elu", "Softplus"}


def _version_tuple(text: str) -> tuple[int, int, int]:
    a, b, c = (int(x) for x in (text.split(".") + ["0", "0"])[:3])
    return a, b, c


def release_of(version: str) -> str:
    v = _version_tuple(version)
    if v[0] == 8:
        return "8.5" if v[1] == 5 else "8.6"
    if v[0] == 10:
        return "10.12" if v[1] >= 12 else "10.3"
    if v[0] == 11:
        return "11.0"
    raise ValueError(f"no TensorRT double for {version}")


def make(version: str, num_dla_cores: int = 2, dla_unsupported_ops: tuple[str, ...] = ("Resize",),
         parser_errors: list[tuple[int, str, str, str]] | None = None, build_fails: bool = False,
         fail_under_capture: bool = False, fail_execute: bool = False, device_memory: int = 3 << 20
         ) -> types.ModuleType:
    """A fresh ``tensorrt`` double for ``version``.

    parser_errors: (node index, node name, op, desc) reported by parse(); dla_unsupported_ops: ONNX ops whose
    layers ``can_run_on_DLA`` refuses; fail_under_capture: ``execute_async_v3`` returns False while its stream
    is being captured (what TensorRT does for work not permitted under capture); device_memory: the engine's
    activation memory (``device_memory_size``).
    """
    v = _version_tuple(version)
    release = release_of(version)
    api = API[release]
    classes = {name: set(names) for name, names in api["classes"].items()}
    from importlib.machinery import ModuleSpec

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = ModuleSpec("tensorrt", None)  # importlib.util.find_spec works, as for the installed module
    trt.__version__ = version
    trt.CALLS = []  # (api, detail): what sage-edge called, for the tests
    trt.LOG = []  # (severity, message): what TensorRT would have logged
    # TensorRT 11.0-11.3 has no DLA at all; 11.4.0 only on Windows on ARM (TensorRT 11.4.1 docs "Migrating
    # TensorRT from 10.x to 11.x on Jetson/JetPack": "DLA was unavailable in TensorRT 11.0 through 11.3, and
    # TensorRT 11.4.0 supported DLA only on Windows on ARM").
    dla_cores = 0 if v[0] == 11 and v[:2] < (11, 4) or v[:3] == (11, 4, 0) else num_dla_cores
    state: dict[str, Any] = {"num_dla_cores": dla_cores, "dla_unsupported": set(dla_unsupported_ops),
                             "parser_errors": parser_errors or [], "build_fails": build_fails,
                             "fail_under_capture": fail_under_capture, "fail_execute": fail_execute,
                             "device_memory": device_memory, "last_config": None, "last_network": None,
                             "last_runtime": None, "logger": None}
    trt.STATE = state

    def call(name: str, detail: Any = None) -> None:
        trt.CALLS.append((name, detail))

    def log(severity: str, message: str) -> None:
        trt.LOG.append((severity, message))

    def bound(class_name: str) -> type:
        """A base class exposing only the public names ``class_name`` has in this release's bindings."""
        names = classes.get(class_name, set())

        class Bound:
            def __getattribute__(self, name: str) -> Any:
                if not name.startswith("_") and name not in names:
                    raise AttributeError(f"'tensorrt.{class_name}' object has no attribute '{name}' "
                                         f"(TensorRT {version})")
                return object.__getattribute__(self, name)

            def __setattr__(self, name: str, value: Any) -> None:
                if not name.startswith("_") and name not in names:
                    raise AttributeError(f"'tensorrt.{class_name}' object has no attribute '{name}' "
                                         f"(TensorRT {version})")
                object.__setattr__(self, name, value)

        return Bound

    # -- enums (this release's bindings; values from its headers) -----------------------------
    for enum_name, members in api["enums"].items():
        if members:
            setattr(trt, enum_name, enum.IntEnum(enum_name, members))
    DataType = trt.DataType
    trt.float32, trt.float16, trt.int8, trt.int32, trt.uint8 = (DataType.FLOAT, DataType.HALF, DataType.INT8,
                                                               DataType.INT32, DataType.UINT8)
    _NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
           DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}
    if hasattr(DataType, "INT64"):
        _NP[DataType.INT64] = np.int64
    trt.nptype = lambda dt: _NP[dt]
    LayerType, TensorIOMode, BuilderFlag = trt.LayerType, trt.TensorIOMode, trt.BuilderFlag
    strongly_typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    explicit_batch_flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    trt.Logger = Logger

    def use_logger(logger: Logger, who: str) -> None:
        # TensorRT keeps one logger per process; a second, different one makes it log "[W] ... logger passed into
        # createInferBuilder/Runtime differs from one already provided" (review B8; message of libnvinfer).
        if state["logger"] is None:
            state["logger"] = logger
        elif state["logger"] is not logger:
            log("WARNING", f"{who}: the logger passed differs from one already provided")

    # -- network ----------------------------------------------------------------------------
    class Tensor(bound("ITensor")):
        def __init__(self, name: str, dtype: Any, shape: tuple[int, ...]) -> None:
            self._name, self._dtype, self._shape = name, dtype, tuple(shape)

        name = property(lambda self: self._name)
        dtype = property(lambda self: self._dtype)
        shape = property(lambda self: self._shape)

    class Layer(bound("ILayer")):
        def __init__(self, name: str, layer_type: str, inputs: list[Tensor | None], outputs: list[Tensor],
                       op: str = "") -> None:
            self._name, self._type, self._inputs, self._outputs, self._op = name, layer_type, inputs, outputs, op
            self._precision: Any = None
            self._output_types: dict[int, Any] = {}
            self._device: Any = None

        name = property(lambda self: self._name)
        type = property(lambda self: LayerType[self._type])
        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, i: int) -> Tensor | None:
            return self._inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self._outputs[i]

        def _get_precision(self) -> Any:
            return self._precision if self._precision is not None else DataType.FLOAT

        def _set_precision(self, value: Any) -> None:
            # release/10.3 include/NvInfer.h ILayer::setPrecision: "Strongly-typed networks reject calls to method
            # setPrecision" (removed from the 11.0 bindings: pyGraph.cpp).
            if state["last_network"] is not None and state["last_network"]._strongly_typed:
                raise RuntimeError("setPrecision is not allowed on a strongly typed network")
            self._precision = value
            call("layer.precision", (self._name, value))

        precision = property(_get_precision, _set_precision)

        def precision_is_set(self) -> bool:
            return self._precision is not None

        def set_output_type(self, index: int, dtype: Any) -> None:
            if state["last_network"] is not None and state["last_network"]._strongly_typed:
                raise RuntimeError("setOutputType is not allowed on a strongly typed network")
            self._output_types[index] = dtype

        def get_output_type(self, index: int) -> Any:
            return self._output_types.get(index, self._outputs[index].dtype)

    class Network(bound("INetworkDefinition")):
        def __init__(self, flags: int) -> None:
            self._flags = flags
            self._inputs: list[Tensor] = []
            self._outputs: list[Tensor] = []
            self._layers: list[Layer] = []
            # release/11.0 include/NvInfer.h: kSTRONGLY_TYPED "deprecated, always enabled" in 11.
            self._strongly_typed = v[0] >= 11 or (strongly_typed_flag is not None
                                                  and bool(flags & (1 << int(strongly_typed_flag))))
            state["last_network"] = self

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))
        num_layers = property(lambda self: len(self._layers))

        def get_input(self, i: int) -> Tensor:
            return self._inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self._outputs[i]

        def get_layer(self, i: int) -> Layer:
            return self._layers[i]

        def _add(self, name: str | None, layer_type: str, inputs: list[Tensor | None], out_dtypes: list[Any],
                 out_names: list[str] | None = None, op: str = "") -> Layer:
            index = len(self._layers)
            # TensorRT's default name of a layer nobody named: "(Unnamed Layer* N) [Type]".
            name = name or f"(Unnamed Layer* {index}) [{layer_type.title().replace('_', '')}]"
            names = out_names or [f"{name}_output_{j}" for j in range(len(out_dtypes))]
            layer = Layer(name, layer_type, inputs, [Tensor(n, d, ()) for n, d in zip(names, out_dtypes)], op)
            self._layers.append(layer)
            return layer

    class ParserError(bound("ParserError")):
        def __init__(self, node: int, node_name: str, op: str, desc: str, code: str = "UNSUPPORTED_NODE") -> None:
            self._node, self._name, self._op, self._desc, self._code = node, node_name, op, desc, code

        def code(self) -> Any:
            return trt.ErrorCode[self._code]

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:  # 10.0+ (bindings); the Bound base refuses it before
            return self._name

        def node_operator(self) -> str:
            return self._op

    class OnnxParser(bound("OnnxParser")):
        def __init__(self, network: Network, logger: Logger) -> None:
            self._network = network
            self._errors: list[ParserError] = []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, i: int) -> ParserError:
            return self._errors[i]

        def _fail(self, *args: Any, **kwargs: Any) -> bool:
            self._errors.append(ParserError(*args, **kwargs))
            return False

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            call("parser.parse", path)
            net = self._network
            if v[0] < 10 and not net._flags & (1 << int(explicit_batch_flag)):
                # onnx-tensorrt 8.6-GA ModelImporter.cpp:531 (8.5-GA the same)
                return self._fail(-1, "", "", "This version of the ONNX parser only supports TensorRT "
                                  "INetworkDefinitions with an explicit batch dimension. Please ensure the network "
                                  "was created using the EXPLICIT_BATCH NetworkDefinitionCreationFlag.",
                                  "INVALID_VALUE")
            proto = onnx.load_from_string(bytes(model))
            for i, n, op, desc in state["parser_errors"]:
                self._errors.append(ParserError(i, n, op, desc))
            if self._errors:
                return False
            opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
            if opset > MAX_OPSET[release]:
                return self._fail(-1, "", "", f"opset {opset} is above what this parser documents "
                                  f"(docs/operators.md: up to opset {MAX_OPSET[release]})", "UNSUPPORTED_GRAPH")
            inferred = onnx.shape_inference.infer_shapes(proto)
            elem = {x.name: x.type.tensor_type.elem_type for x in
                    list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
            int64 = DataType.INT64 if v[0] >= 10 else DataType.INT32  # 8.x convertDtype: INT64 -> kINT32
            to_trt = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
                      onnx.TensorProto.UINT8: DataType.UINT8, onnx.TensorProto.INT8: DataType.INT8,
                      onnx.TensorProto.INT64: int64, onnx.TensorProto.INT32: DataType.INT32,
                      onnx.TensorProto.BOOL: DataType.BOOL, onnx.TensorProto.DOUBLE: DataType.FLOAT}
            graph_outputs = {o.name for o in proto.graph.output}
            inits = {t.name: t for t in proto.graph.initializer}
            tensors: dict[str, Tensor] = {}
            for value in proto.graph.input:
                if value.name in inits:
                    # onnx-tensorrt 8.5-GA..main ModelImporter.cpp importInputs: "Initializers are not really
                    # network inputs, so they need to be excluded" (they become weights / constant layers)
                    continue
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                tensor = Tensor(value.name, to_trt[value.type.tensor_type.elem_type], dims)
                net._inputs.append(tensor)
                tensors[value.name] = tensor
            for index, node in enumerate(proto.graph.node):
                if node.op_type not in LAYER_FOR_OP and node.op_type != "Cast":
                    return self._fail(index, node.name, node.op_type, f"the double does not model {node.op_type}")
                ins: list[Tensor | None] = []
                for k, name in enumerate(node.input):
                    if not name:
                        ins.append(None)
                    elif name in tensors:
                        ins.append(tensors[name])
                    elif name in inits and k not in WEIGHT_INPUTS.get(node.op_type, set()):
                        # convertToTensor (onnx2trt_utils.cpp): an IConstantLayer registered under the weights' name
                        init = inits[name]
                        constant = net._add(name, "CONSTANT", [], [to_trt[init.data_type]], [name])
                        tensors[name] = constant.get_output(0)
                        ins.append(tensors[name])
                    elif name in inits:
                        ins.append(None)  # kernel / bias weights: consumed by the layer itself
                    else:
                        return self._fail(index, node.name, node.op_type, f"input {name} is undefined")
                if node.op_type in BROADCASTING_OPS:
                    ranks = [len(elem_shape(inferred, t.name)) if t is not None else 0 for t in ins]
                    for k, t in enumerate(ins):
                        if t is not None and ranks[k] < max(ranks):
                            shuffle = net._add(None, "SHUFFLE", [t], [t.dtype])
                            ins[k] = shuffle.get_output(0)
                uint8_in = [t for t in ins if t is not None and t.dtype == DataType.UINT8]
                if uint8_in and v[:2] == (8, 5) and node.op_type in UINT8_REFUSED_OPS_85:
                    # onnx-tensorrt 8.5-GA onnx2trt_utils.cpp notInvalidType
                    return self._fail(index, node.name, node.op_type, "Found invalid input type of UINT8")
                out_types = [to_trt.get(elem.get(o, onnx.TensorProto.FLOAT), DataType.FLOAT) for o in node.output]
                node_name = node.name or node.output[0]  # onnx-tensorrt getNodeName: the first output when unnamed
                if node.op_type == "Cast":
                    to = next(a.i for a in node.attribute if a.name == "to")
                    source = ins[0].dtype if ins and ins[0] is not None else DataType.FLOAT
                    target = to_trt.get(to)
                    if v[:2] == (8, 5):
                        # onnx-tensorrt 8.5-GA builtin_op_importers.cpp Cast: "UINT8 type casting is only supported
                        # from FP types"; the cast is an IIdentityLayer with setOutputType.
                        floats = (DataType.FLOAT, DataType.HALF)
                        if (source == DataType.UINT8 and target not in floats) or \
                                (target == DataType.UINT8 and source not in floats):
                            return self._fail(index, node.name, "Cast", "Assertion failed: UINT8 cast", "UNSUPPORTED_NODE")
                        layer = net._add(node_name, "IDENTITY", ins[:1], [target], list(node.output), "Cast")
                        layer._output_types[0] = target
                    else:
                        # onnx-tensorrt 8.6-GA builtin_op_importers.cpp:285-301 Cast: network->addCast (ICastLayer)
                        layer = net._add(node_name, "CAST", ins[:1], [target], list(node.output), "Cast")
                else:
                    layer = net._add(node_name, LAYER_FOR_OP[node.op_type], ins, out_types, list(node.output),
                                     node.op_type)
                for out in layer._outputs:
                    tensors[out.name] = out
                    # onnx-tensorrt 8.6-GA ModelImporter.cpp:241-254 (10.0-GA, 10.1-GA, main the same): "TensorRT
                    # does not support UINT8 types for intermediate tensors!" for any node output that is UINT8
                    # and not a graph output.
                    if v >= (8, 6, 0) and out.dtype == DataType.UINT8 and out.name not in graph_outputs:
                        return self._fail(index, node.name, node.op_type,
                                          "TensorRT does not support UINT8 types for intermediate tensors!")
                # 8.6+: a UINT8 network input may feed Casts only (NVIDIA on NVIDIA/TensorRT#3985: "All UINT8 inputs
                # must directly feed into a cast layer"; include/NvInferRuntimeBase.h 8.6/10.3/11.0 DataType::kUINT8).
                # The real parser may let e.g. uint8 -> Identity -> uint8 output through to the builder; refusing
                # it here is the stricter reading. (8.5-GA parses it; the builder rule below refuses it.)
                if v >= (8, 6, 0) and node.op_type != "Cast" and any(
                        t is not None and t.dtype == DataType.UINT8 and t in net._inputs for t in ins):
                    return self._fail(index, node.name, node.op_type,
                                      "UINT8 network inputs must feed only Cast layers")
            for value in proto.graph.output:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                source = tensors[value.name]
                net._outputs.append(Tensor(value.name, source.dtype, dims))
            return True

    def elem_shape(model: Any, name: str) -> tuple[int, ...]:
        for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
            if value.name == name:
                return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
        for init in model.graph.initializer:
            if init.name == name:
                return tuple(init.dims)
        return ()

    trt.OnnxParser = OnnxParser

    # -- builder ----------------------------------------------------------------------------
    class OptimizationProfile(bound("IOptimizationProfile")):
        def __init__(self) -> None:
            self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (TRT's names)
            # release/10.3 python/src/infer/pyCore.cpp opt_profile_set_shape: RuntimeError when setDimensions fails;
            # include/NvInferRuntime.h setDimensions: equal ranks and 0 <= min <= opt <= max per dimension.
            low, mid, high = tuple(min), tuple(opt), tuple(max)
            if not (len(low) == len(mid) == len(high)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            for lo, o, hi in zip(low, mid, high):
                if lo < 0 or lo > o:
                    raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
                if o > hi:
                    raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
            self._shapes[input] = (low, mid, high)
            call("profile.set_shape", (input, low, mid, high))

    class TimingCache(bound("ITimingCache")):
        def __init__(self, data: bytes) -> None:
            self._entries = [e for e in bytes(data).split(b"\n") if e]

        def serialize(self) -> bytes:
            return b"\n".join(self._entries) + b"\n"

    class BuilderConfig(bound("IBuilderConfig")):
        def __init__(self) -> None:
            self._flags_set: set[Any] = {BuilderFlag.TF32} if hasattr(BuilderFlag, "TF32") else set()
            self._pools: dict[Any, int] = {}
            self._profiles: list[OptimizationProfile] = []
            self._default_device_type = trt.DeviceType.GPU
            self._dla_core = -1
            self._timing_cache: TimingCache | None = None
            self._loaded_cache_entries = 0
            self._opt_level = 3
            self._verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            self._device_types: dict[int, Any] = {}
            state["last_config"] = self

        default_device_type = property(lambda self: self._default_device_type,
                                       lambda self, value: object.__setattr__(self, "_default_device_type", value))
        DLA_core = property(lambda self: self._dla_core,  # noqa: N815 (TRT's name)
                            lambda self, value: object.__setattr__(self, "_dla_core", int(value)))
        profiling_verbosity = property(lambda self: self._verbosity,
                                       lambda self, value: object.__setattr__(self, "_verbosity", value))
        builder_optimization_level = property(lambda self: self._opt_level,
                                              lambda self, value: object.__setattr__(self, "_opt_level", int(value)))

        def set_flag(self, flag: Any) -> None:
            self._flags_set.add(flag)
            call("config.set_flag", flag.name)

        def clear_flag(self, flag: Any) -> None:
            self._flags_set.discard(flag)
            call("config.clear_flag", flag.name)

        def get_flag(self, flag: Any) -> bool:
            return flag in self._flags_set

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self._pools[pool] = size
            call("config.set_memory_pool_limit", (pool.name, size))

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            # include/NvInfer.h IBuilderConfig::addOptimizationProfile: "-1 if the profile is invalid"; every dynamic
            # network input needs shapes in it.
            network = state["last_network"]
            dynamic = [t.name for t in network._inputs if -1 in t.shape] if network is not None else []
            if any(name not in profile._shapes for name in dynamic):
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache:
            call("config.create_timing_cache", len(serialized_timing_cache))
            return TimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self._timing_cache = cache
            self._loaded_cache_entries = len(cache._entries)
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self._timing_cache

        def set_device_type(self, layer: Layer, device_type: Any) -> None:
            self._device_types[id(layer)] = device_type
            call("config.set_device_type", (layer.name, device_type.name))

        def get_device_type(self, layer: Layer) -> Any:
            return self._device_types.get(id(layer), self._default_device_type)

        def can_run_on_DLA(self, layer: Layer) -> bool:  # noqa: N802 (TRT's name)
            return _dla_problem(layer) is None

    def _dla_problem(layer: Layer) -> str | None:
        """Why ``layer`` cannot run on DLA, or None.

        DLA computes in FP16 or INT8 only (TensorRT docs "DLA Supported Layers and Restrictions": every layer's
        precision column lists FP16/INT8), so an FP32-pinned layer cannot; no DLA layer takes UINT8 tensors; DLA
        does not run explicit quantization (NVIDIA developer blog "TensorRT 和 DLA", the 8.x developer guide:
        "DLA不支持Explicit Quantization") -- taken for every version here (stricter for 10.x, where it is not
        documented either way). ``dla_unsupported_ops``: the test's ops with no DLA implementation.
        """
        if layer._op in state["dla_unsupported"]:
            return "no DLA implementation"
        if layer._precision == DataType.FLOAT:
            return "pinned to FP32"
        tensors = [t for t in layer._inputs if t is not None] + list(layer._outputs)
        if any(t.dtype == DataType.UINT8 for t in tensors):
            return "UINT8 tensor"
        if layer._type in ("QUANTIZE", "DEQUANTIZE"):
            return "explicit quantization"
        return None

    class HostMemory(bytes):
        pass

    class Builder(bound("Builder")):
        def __init__(self, logger: Logger) -> None:
            self._logger = logger
            use_logger(logger, "createInferBuilder")

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
            problem = _build_problem(network, config)
            if problem:
                log("ERROR", problem)  # the real builder logs the reason and returns None
                return None
            if config._timing_cache is not None:  # the build adds tactic timings to the cache
                config._timing_cache._entries.append(f"tactic-{len(config._timing_cache._entries)}".encode())
            profile = config._profiles[0]._shapes if config._profiles else {}
            blob = {
                "version": version,
                "inputs": [[t.name, t.dtype.name, list(t.shape), [list(s) for s in profile.get(t.name, ())]]
                           for t in network._inputs],
                "outputs": [[t.name, t.dtype.name, list(t.shape)] for t in network._outputs],
                "flags": sorted(f.name for f in config._flags_set),
                "dla_core": config._dla_core if config._default_device_type == trt.DeviceType.DLA else None,
                "version_compatible": hasattr(BuilderFlag, "VERSION_COMPATIBLE")
                and BuilderFlag.VERSION_COMPATIBLE in config._flags_set,
                "device_memory": state["device_memory"],
            }
            return HostMemory(MAGIC + json.dumps(blob).encode())

    def _build_problem(network: Network, config: BuilderConfig) -> str | None:
        if state["build_fails"]:
            return "build failed (test switch)"
        if any(-1 in t.shape for t in network._inputs) and not config._profiles:
            return "Network has dynamic or shape inputs, but no optimization profile has been defined."
        consumers: dict[int, list[Layer]] = {}
        for layer in network._layers:
            for t in layer._inputs:
                if t is not None:
                    consumers.setdefault(id(t), []).append(layer)
        # include/NvInferRuntimeCommon.h (8.5.3) / NvInferRuntimeBase.h (8.6, 10.3, 11.0), DataType::kUINT8:
        # "Use the IdentityLayer to convert kUINT8 network-level inputs to {kFLOAT, kHALF} prior to use with other
        # TensorRT layers" (8.6+: ICastLayer too); NVIDIA on NVIDIA/TensorRT#3985: "All UINT8 inputs must directly
        # feed into a cast layer". The same for every version: a UINT8 tensor consumed by anything else fails.
        for layer in network._layers:
            converts = layer._type == "CAST" or (layer._type == "IDENTITY" and layer._op == "Cast")
            if not converts and any(t is not None and t.dtype == DataType.UINT8 for t in layer._inputs):
                return f"{layer.name}: UINT8 input to a layer that is not a cast (kUINT8 must be cast first)"
        weakly = not network._strongly_typed
        if network._strongly_typed:
            # release/10.3 include/NvInfer.h kSTRONGLY_TYPED; 11.0 removed the flags from the bindings.
            for name in ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"):
                flag = getattr(BuilderFlag, name, None)
                if flag is not None and flag in config._flags_set:
                    return f"BuilderFlag {name} is not allowed with a strongly typed network"
        int8_flag = getattr(BuilderFlag, "INT8", None)
        if weakly and any(layer._type in ("QUANTIZE", "DEQUANTIZE") for layer in network._layers) \
                and int8_flag not in config._flags_set:
            # TensorRT 8.x developer guide, "Working with INT8": "To enable any quantization operations, the INT8
            # flag must be set in the builder config" (weakly typed networks).
            return "the network has Q/DQ layers but BuilderFlag.INT8 is not set"
        obey = getattr(BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None)
        if weakly and obey is not None and obey in config._flags_set:
            # release/10.3 include/NvInfer.h:643-666 ILayer::setPrecision with kOBEY_PRECISION_CONSTRAINTS: "build
            # fails with an error message" when no implementation conforms. Not documented for ICastLayer, constants
            # or shape layers, nor for layers with non-float inputs: the double fails them (stricter).
            for layer in network._layers:
                if layer._precision != DataType.FLOAT:
                    continue
                tensors = [t for t in layer._inputs if t is not None] + list(layer._outputs)
                if layer._type in ("CAST", "CONSTANT", "SHAPE") or \
                        any(t.dtype != DataType.FLOAT for t in tensors):
                    return f"{layer.name}: no implementation obeys the requested precision constraints"
        if config._default_device_type == trt.DeviceType.DLA:
            if state["num_dla_cores"] == 0:
                return "DLA requested but this platform has no DLA cores"
            if not 0 <= config._dla_core < state["num_dla_cores"]:
                return f"DLA core {config._dla_core} does not exist"
            if weakly and not ({getattr(BuilderFlag, "FP16", None), getattr(BuilderFlag, "INT8", None)}
                               & config._flags_set):
                return "DLA needs FP16 or INT8 mode"
            fallback = BuilderFlag.GPU_FALLBACK in config._flags_set
            for layer in network._layers:
                on_dla = config.get_device_type(layer) == trt.DeviceType.DLA
                if on_dla and _dla_problem(layer) and not fallback:
                    return f"{layer.name} cannot run on DLA ({_dla_problem(layer)}) and GPU fallback is off"
            if any(-1 in t.shape for t in network._inputs) and config._profiles:
                for low, opt, high in config._profiles[0]._shapes.values():
                    if not low == opt == high:
                        return "DLA needs min == opt == max shapes"
        return None

    trt.Builder = Builder

    # -- runtime ----------------------------------------------------------------------------
    class Engine(bound("ICudaEngine")):
        def __init__(self, blob: dict[str, Any]) -> None:
            self._blob = blob
            self._io = [(n, TensorIOMode.INPUT, DataType[d], tuple(s), [tuple(p) for p in prof])
                        for n, d, s, prof in blob["inputs"]]
            self._io += [(n, TensorIOMode.OUTPUT, DataType[d], tuple(s), []) for n, d, s in blob["outputs"]]

        num_io_tensors = property(lambda self: len(self._io))
        device_memory_size = property(lambda self: self._blob["device_memory"])  # 8.5 - 10.x (removed in 11)
        device_memory_size_v2 = property(lambda self: self._blob["device_memory"])  # 10.1+

        def _find(self, name: str) -> tuple:
            for entry in self._io:
                if entry[0] == name:
                    return entry
            raise KeyError(name)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0]

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

    class ExecutionContext(bound("IExecutionContext")):
        def __init__(self, engine: Engine) -> None:
            self._engine = engine
            self._input_shapes: dict[str, tuple[int, ...]] = {}
            self._addresses: dict[str, int] = {}
            self._executions = 0

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(shape)
            call("context.set_input_shape", (name, shape))
            _, _, _, static, prof = self._engine._find(name)
            if prof:
                low, _, high = prof
                if any(d < lo or d > hi for d, lo, hi in zip(shape, low, high)):
                    return False
            elif shape != static:
                return False
            self._input_shapes[name] = shape
            return True

        def _hw(self) -> tuple[int, int]:
            for name, mode, _, _, _ in self._engine._io:
                if mode == TensorIOMode.INPUT and name in self._input_shapes:
                    s = self._input_shapes[name]
                    return (s[1], s[2]) if len(s) == 4 and s[-1] in (1, 3) and s[1] > 3 else (s[2], s[3])
            raise RuntimeError("input shapes not set")

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            _, mode, _, static, _ = self._engine._find(name)
            if mode == TensorIOMode.INPUT:
                return self._input_shapes.get(name, static)
            if -1 not in static:
                return static
            h, w = self._hw()
            out = list(static)
            if name in ("fused", "fused_y") and static[-1] in (1, 3):  # NHWC uint8 graph
                out[1], out[2] = h, w
            else:
                out[2], out[3] = h, w
            return tuple(out)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            call("context.set_tensor_address", (name, int(memory)))
            # release/10.3 include/NvInferRuntime.h:3985-4005 setTensorAddress: false for a name that is not an I/O
            # tensor; "The pointer must have at least 256-byte alignment."
            if name not in {entry[0] for entry in self._engine._io}:
                log("ERROR", f"setTensorAddress: {name} is not an input or output tensor")
                return False
            if int(memory) % 256:
                log("ERROR", f"setTensorAddress: address of {name} is not 256-byte aligned")
                return False
            self._addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            import sage_edge_double_fake_pycuda as cuda  # registered by the tests' fixture

            call("context.execute_async_v3", stream_handle)
            # enqueueV3 enqueues CUDA work: it needs a current context on the calling thread (else the CUDA calls fail
            # with CUDA_ERROR_INVALID_CONTEXT and enqueueV3 returns false), every I/O address, and every input shape.
            if cuda.current_context() is None:
                log("ERROR", "enqueueV3: no current CUDA context on this thread")
                return False
            missing = [entry[0] for entry in self._engine._io if entry[0] not in self._addresses]
            unset = [n for n, mode, _, _, _ in self._engine._io if mode == TensorIOMode.INPUT
                     and n not in self._input_shapes]
            if missing or unset or state["fail_execute"]:
                log("ERROR", f"enqueueV3 failed (addresses missing: {missing}, shapes unset: {unset})")
                return False
            stream = cuda.stream_for(int(stream_handle))
            if stream.handle in cuda.CAPTURING and state["fail_under_capture"]:
                # release/10.3 samples/common/sampleInference.cpp:970-990: "The built TRT engine may contain operations
                # that are not permitted under CUDA graph capture mode ... the enqueue call may return false".
                cuda.CAPTURING[stream.handle]["invalidated"] = True
                log("ERROR", "enqueueV3: operation not permitted when stream is capturing")
                return False
            shapes = dict(self._input_shapes)
            addresses = dict(self._addresses)
            outputs = {n: self.get_tensor_shape(n) for n, mode, _, _, _ in self._engine._io
                       if mode == TensorIOMode.OUTPUT}

            def run() -> None:  # on the stream: reads inputs when the stream reaches it
                self._executions += 1
                arrays = {}
                for name, mode, dtype, _, _ in self._engine._io:
                    if mode == TensorIOMode.INPUT:
                        arrays[name] = cuda.read_device(addresses[name], shapes[name], _NP[dtype])
                for name, mode, dtype, _, _ in self._engine._io:
                    if mode != TensorIOMode.OUTPUT:
                        continue
                    if name == "fused":
                        value = arrays["vis"]
                    elif name == "fused_y" and "vis" in arrays:
                        value = arrays["ir"]
                    else:
                        value = 2.0 * arrays["vis_y"] - 1.0
                    cuda.write_device(addresses[name], np.asarray(value, _NP[dtype]).reshape(outputs[name]))

            stream.enqueue("enqueueV3", run)
            return True

    class Runtime(bound("Runtime")):
        def __init__(self, logger: Logger) -> None:
            self._logger = logger
            self._host_code_allowed = False
            self._dla_core = -1
            use_logger(logger, "createInferRuntime")
            state["last_runtime"] = self

        engine_host_code_allowed = property(  # 8.6+ (bindings)
            lambda self: self._host_code_allowed,
            lambda self, value: object.__setattr__(self, "_host_code_allowed", bool(value)))

        def _set_dla_core(self, value: int) -> None:
            call("runtime.DLA_core", int(value))
            object.__setattr__(self, "_dla_core", int(value))

        DLA_core = property(lambda self: self._dla_core, _set_dla_core)  # noqa: N815
        num_DLA_cores = property(lambda self: state["num_dla_cores"])  # noqa: N815

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> Engine | None:
            call("runtime.deserialize_cuda_engine", (len(serialized_engine), self._dla_core))
            data = bytes(serialized_engine)
            if not data.startswith(MAGIC):
                log("ERROR", "deserializeCudaEngine: not a serialized engine")
                return None
            blob = json.loads(data[len(MAGIC):])
            built = _version_tuple(blob["version"])
            if blob["version_compatible"]:
                # TensorRT docs "Version Compatibility" (10.16.1, 11.1.0) and Support Matrix 11.4.1 "Engine
                # Portability": built with 8.6+, run on the same or a later runtime of the same major, or 8 -> 9/10,
                # 9 -> 10, 10 -> 11; never 8 -> 11. The plan's lean runtime is host code: allowed only explicitly.
                ok = v >= built and (v[0] == built[0] or (built[0], v[0]) in {(8, 9), (8, 10), (9, 10), (10, 11)})
                if not ok:
                    log("ERROR", "version-compatible engine cannot run on this runtime version")
                    return None
                if not self._host_code_allowed:
                    log("ERROR", "engine contains host code (lean runtime) but engine_host_code_allowed is false")
                    return None
            elif blob["version"] != version:  # engines are not portable across TensorRT versions
                log("ERROR", f"engine built with TensorRT {blob['version']}, this is {version}")
                return None
            if blob["dla_core"] is not None:
                # release/10.3 samples/common/sampleEngines.cpp:117-120: setDLACore before deserializing a DLA engine.
                if state["num_dla_cores"] == 0 or not 0 <= self._dla_core < state["num_dla_cores"]:
                    log("ERROR", f"DLA engine needs runtime.DLA_core in 0..{state['num_dla_cores'] - 1}")
                    return None
            return Engine(blob)

    trt.Runtime = Runtime
    return trt
