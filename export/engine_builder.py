"""ONNX -> TensorRT engine. Every build-side TensorRT call sage-edge makes lives in this module.

Runs on the device that will run the engine (engines are not portable across GPUs or
TensorRT versions), so it needs no torch; onnx is optional (used for checks when present).

How precision is chosen, by TensorRT release:
  * 8.5 / 8.6 (JetPack 5.1 / 6.0) and 10.x (JetPack 6.1/6.2 ship 10.3): a weakly typed
    network and builder flags (``BuilderFlag.FP16``, ``BuilderFlag.INT8``). INT8 always
    comes from a Q/DQ ONNX (explicit quantization): the calibrator API was deprecated in
    10.1, and ``--int8`` on an FP32 ONNX runs ``sage-edge quantize`` first. With FP16 on a
    uint8 end-to-end graph, the colour maths is pinned to FP32
    (``OBEY_PRECISION_CONSTRAINTS``): its values exceed FP16's range.
  * 11.x (JetPack 7.2.2+): the FP16/INT8 builder flags are gone (deprecated in 10.12). The
    network is strongly typed and takes its precision from the ONNX: an FP16 ONNX from
    ModelOpt AutoCast (``export --fp16``, done here when ModelOpt is installed) or a Q/DQ
    ONNX from ModelOpt PTQ (``quantize``).
The precision recorded (sidecar, cache key, report) is what the parsed network really holds:
Quantize/Dequantize layers for INT8, HALF tensors for FP16 on 11. ``--int8`` without Q/DQ
layers, and ``--fp16`` on 11 without FP16 tensors, are refused instead of building an FP32
engine under another name. FP32 engines are built with TF32 off (``BuilderFlag.TF32`` is on by
default on Ampere and later), so "fp32" means FP32: the reference every other precision is
verified against.

UINT8 network I/O (the default end-to-end graph) parses on every supported release (8.5 to
11) when each uint8 input feeds only Casts and each uint8 output is made by a Cast
(onnx-tensorrt 8.5-GA maps UINT8 and casts it to/from FLOAT/HALF; 8.6-GA onward refuses uint8
intermediates in ModelImporter.cpp).

The engine is written atomically with a ``.json`` sidecar (``sage_edge.runtime.engine_sidecar``).
``cache_dir`` names engines like jetson-inference does (model + TensorRT version + device +
precision, plus sha256 and profile here), so a second build with the same inputs is a cache hit.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from sage_edge.atomic import write_bytes_atomic
from sage_edge.errors import SageEdgeError
from sage_edge.io_contract import BORDER_PAD, BORDER_PAD_METADATA
from sage_edge.runtime import engine_sidecar
from sage_edge.runtime.tensorrt_api import (check_supported, dla_unavailable_reason, import_tensorrt, shared_logger,
                                            version_tuple)

NETWORK_SCOPE = "/student/"  # the exporter's name scope of the network (everything else is colour maths)
DEFAULT_MIN_SHAPE = (64, 64)
DEFAULT_OPT_SHAPE = (480, 640)
DEFAULT_MAX_SHAPE = (1088, 1920)
DEFAULT_WORKSPACE_MIB = 1024


class BuildError(SageEdgeError):
    """A build failure with detail lines (parser errors, one per line) to print before the one-line error."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


@dataclass
class BuildOptions:
    onnx: Path
    output: Path | None = None
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    workspace_mib: int | None = None
    min_shape: tuple[int, int] | None = None
    opt_shape: tuple[int, int] | None = None
    max_shape: tuple[int, int] | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    timing_cache: Path | None = None
    builder_optimization_level: int | None = None
    version_compatible: bool = False
    cache_dir: Path | None = None
    calib_samples: int = 32

    def command_flags(self) -> list[str]:
        """The build-engine flags that reproduce this build (for the sidecar's rebuild hint)."""
        flags = []
        if self.fp16:
            flags.append("--fp16")
        if self.int8:
            flags.append("--int8")
        for name, shape in (("--min-shape", self.min_shape), ("--opt-shape", self.opt_shape),
                            ("--max-shape", self.max_shape)):
            if shape:
                flags.append(f"{name} {_wxh(shape)}")
        if self.dla_core is not None:
            flags.append(f"--dla-core {self.dla_core}" + (" --gpu-fallback" if self.gpu_fallback else ""))
        if self.version_compatible:
            flags.append("--version-compatible")
        return flags


@dataclass
class BuildReport:
    engine: Path
    sidecar: Path
    tensorrt: str
    method: str  # "builder-flags" or "strongly-typed"
    precision: str
    io_kind: str
    profile: dict[str, dict[str, list[int]]] | None
    cached: bool = False
    build_seconds: float = 0.0
    timing_cache: str | None = None  # "reused (N bytes)" / "created" / None
    dla_core: int | None = None
    gpu_fallback_layers: list[str] = field(default_factory=list)
    pinned_fp32_layers: int = 0
    prepared_onnx: Path | None = None  # the FP16 / Q/DQ ONNX made for this build, when one was made
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Version facts (one place): each entry names the TensorRT release it serves.
def uses_strong_typing(version: tuple[int, int, int]) -> bool:
    """TRT 11 removed the FP16/INT8 builder flags: precision comes from a strongly typed network."""
    return version[0] >= 11


def supports_optimization_level(version: tuple[int, int, int]) -> bool:
    """IBuilderConfig.builder_optimization_level: TRT 8.6+."""
    return version >= (8, 6, 0)


def supports_version_compatible(version: tuple[int, int, int]) -> bool:
    """BuilderFlag.VERSION_COMPATIBLE: TRT 8.6+."""
    return version >= (8, 6, 0)


def network_flags(trt: Any, version: tuple[int, int, int], strongly_typed: bool) -> int:
    if version[0] < 10:
        # TRT 8.5 / 8.6: the ONNX parser needs an explicit-batch network.
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        # TRT 10.x (opt-in) and 11.x (always, for FP16/INT8): precision from the ONNX types.
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    # TRT 10.x: explicit batch is the only mode; EXPLICIT_BATCH is deprecated and ignored.
    return 0


# ----------------------------------------------------------------------------------------------
def parse_hw(text: str, what: str) -> tuple[int, int]:
    """A frame size: WIDTHxHEIGHT (``sage_edge.sizes``, as every size flag), or trtexec's spec
    ``name:dims[,name:dims]`` (e.g. ``ir:1x480x640x1,vis:1x480x640x3`` for the uint8 graph,
    ``vis_y:1x1x480x640,ir:1x1x480x640`` for the float graph) -> (height, width)."""
    text = str(text).strip()
    if ":" in text:
        return _parse_trtexec_shapes(text, what)
    from sage_edge.sizes import parse_size_hw

    return parse_size_hw(text, what)


def _wxh(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def _parse_trtexec_shapes(text: str, what: str) -> tuple[int, int]:
    """trtexec's shape spec (samples/common/sampleOptions.cpp: ``spec ::= name":"shape[","spec]``, quotes allowed)."""
    from sage_edge import io_contract

    found = set()
    for part in text.split(","):
        name, _, dims_text = part.strip().rpartition(":")
        name = name.strip().strip("'\"")
        try:
            dims = tuple(int(d) for d in dims_text.lower().split("x"))
        except ValueError:
            dims = ()
        if not name or len(dims) != 4 or min(dims) < 1:
            raise SageEdgeError(f"{what} '{text}': each entry must be name:NxHxWxC (uint8 graph) or name:NxCxHxW "
                                "(float graph), e.g. ir:1x480x640x1")
        nhwc = dims[3] in (1, 3) and dims[1] not in (1, 3)
        nchw = dims[1] in (1, 3) and dims[3] not in (1, 3)
        if name == io_contract.VIS or (name not in (io_contract.VIS_Y,) and nhwc and not nchw):
            found.add((dims[1], dims[2]))
        elif name == io_contract.VIS_Y or nchw:
            found.add((dims[2], dims[3]))
        else:
            raise SageEdgeError(f"{what} '{text}': cannot tell the layout of {name}:{dims_text}; give WIDTHxHEIGHT instead")
    if len(found) != 1:
        raise SageEdgeError(f"{what} '{text}': the inputs must share one height and width, got "
                            + ", ".join(f"{h}x{w}" for h, w in sorted(found)))
    return found.pop()


_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}  # trtexec's base-2 suffixes (sampleOptions.cpp)


def parse_workspace_mib(text: str | int) -> int:
    """Workspace size in MiB from ``1024``, ``1024M``, ``2G`` or trtexec's ``workspace:1024M`` (default unit MiB)."""
    spec = str(text).strip()
    if ":" in spec:
        pools = dict(p.strip().split(":", 1) for p in spec.split(",") if ":" in p)
        if set(pools) != {"workspace"}:
            raise SageEdgeError(f"--workspace '{text}': only the workspace pool can be set here "
                                "(e.g. workspace:1024M)")
        spec = pools["workspace"].strip()
    unit = _UNITS.get(spec[-1:].upper(), None) if spec else None
    number = spec[:-1] if unit else spec
    try:
        size = float(number) * (unit or _UNITS["M"])
    except ValueError:
        raise SageEdgeError(f"--workspace '{text}': expected MiB (1024), a size with a unit (1024M, 2G) or "
                            "trtexec's workspace:1024M") from None
    mib = int(size) >> 20
    if mib < 1:
        raise SageEdgeError("--workspace must be at least 1 MiB")
    return mib


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _onnx_io_kind(names_in: list[str], names_out: list[str], source: Path) -> str:
    from sage_edge import io_contract

    return io_contract.io_kind(names_in, names_out, str(source))


def _onnx_facts(path: Path) -> dict[str, Any] | None:
    """Facts from the ONNX itself when the onnx package is installed (it is optional on a Jetson): whether
    quantization or AutoCast must run before parsing. The parsed network has the final word (network_precision)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    return {
        "qdq": any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node),
        "fp16": any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
        or any(n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute)
               for n in model.graph.node),
        # the border padding TensorRT builds in: the border_pad initializer, else the metadata, else unknown
        "border_pad": next((int(onnx.numpy_helper.to_array(t).reshape(-1)[0]) for t in model.graph.initializer
                            if t.name == BORDER_PAD),
                           next((int(p.value) for p in model.metadata_props if p.key == BORDER_PAD_METADATA), None)),
    }


def cache_key(onnx_sha256: str, trt_version: str, device: str, precision: str,
              profile: dict[str, dict[str, list[int]]] | None, stem: str) -> str:
    """jetson-inference style: ``<model>.<sha>.<TRT version>.<device>.<precision>.<profile>.engine``."""
    profile_tag = hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()[:8] if profile else "static"
    return f"{stem}.{onnx_sha256[:16]}.{trt_version}.{device}.{precision.upper()}.{profile_tag}.engine"


def gpu_facts() -> dict[str, Any]:
    """GPU name and compute capability, as CUDA names them (``cuDeviceGetName``: what the runtime check compares).

    pycuda when present, else libcuda through ctypes. Only without a usable libcuda does the name
    come from nvidia-smi or the Jetson device tree; ``name_source`` records which, and the runtime
    compares names only when both came from CUDA (review B4).
    """
    try:
        from sage_edge.runtime.cuda_memory import device_info

        info = device_info(0)
        return {"name": info.name, "compute_capability": info.compute_capability, "integrated": info.integrated,
                "name_source": "cuda"}
    except Exception:
        pass
    try:
        from sage_edge.runtime.cuda_memory import driver_device_facts

        return {**driver_device_facts(0), "name_source": "cuda"}
    except Exception:
        pass
    from sage_edge import environment

    gpu = environment.gpu_record()
    jetson = environment.jetson_record()
    name = gpu.get("name") or ((jetson or {}).get("module"))
    source = "nvidia-smi" if gpu.get("name") else ("device-tree" if name else None)
    return {"name": name, "compute_capability": None, "integrated": jetson is not None, "name_source": source}


def network_precision(trt: Any, network: Any) -> dict[str, bool]:
    """What the parsed network really carries: {"qdq": Quantize/Dequantize layers, "fp16": HALF tensors}."""
    qdq_types = {getattr(trt.LayerType, name) for name in ("QUANTIZE", "DEQUANTIZE") if hasattr(trt.LayerType, name)}
    half = trt.DataType.HALF
    fp16 = any(network.get_input(i).dtype == half for i in range(network.num_inputs))
    qdq = False
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        qdq = qdq or layer.type in qdq_types
        fp16 = fp16 or any(layer.get_output(j).dtype == half for j in range(layer.num_outputs))
    return {"qdq": qdq, "fp16": fp16}


def _layer_inputs(layer: Any) -> list[Any]:
    return [t for t in (layer.get_input(k) for k in range(layer.num_inputs)) if t is not None]


def _layer_outputs(layer: Any) -> list[Any]:
    return [layer.get_output(j) for j in range(layer.num_outputs)]


# ----------------------------------------------------------------------------------------------
class EngineBuilder:
    """Builds one engine. ``trt`` and ``gpu`` may be injected (tests use doubles of the tensorrt module)."""

    def __init__(self, options: BuildOptions, trt: Any = None, gpu: dict[str, Any] | None = None,
                 prepare_fp16: Callable[[Path, Path], None] | None = None,
                 prepare_int8: Callable[[Path, Path, Path, int], None] | None = None,
                 echo: Callable[[str], None] = lambda line: None) -> None:
        self.options = options
        self.trt = trt if trt is not None else import_tensorrt()
        self.version = check_supported(self.trt)
        self.gpu = gpu
        self.prepare_fp16 = prepare_fp16 or _autocast_fp16
        self.prepare_int8 = prepare_int8 or _modelopt_int8
        self.echo = echo

    # -- the steps ------------------------------------------------------------------------
    def _validate(self) -> None:
        o = self.options
        if not o.onnx.is_file():
            raise SageEdgeError(f"{o.onnx}: no such ONNX file")
        if o.onnx.suffix.lower() != ".onnx":
            raise SageEdgeError(f"{o.onnx}: build-engine takes an .onnx model")
        if o.dla_core is not None:
            if not (o.fp16 or o.int8):
                raise SageEdgeError("DLA runs only FP16 or INT8: add --fp16 or --int8 to --dla-core")
            if o.min_shape and o.max_shape and o.min_shape != o.max_shape:
                raise SageEdgeError("DLA needs static shapes: give one size (--opt-shape WxH) or export with "
                                    "--height/--width; --min-shape and --max-shape must equal it")
            unavailable = dla_unavailable_reason(self.version)
            if unavailable:
                raise SageEdgeError(unavailable)
            if o.int8 and self.version[0] < 10:
                # TensorRT 8.x developer guide, "Working with DLA" (NVIDIA blog "TensorRT 和 DLA":
                # "DLA不支持Explicit Quantization"): Q/DQ layers fall back to the GPU, and sage-edge's INT8 is Q/DQ only.
                raise SageEdgeError(f"the DLA of TensorRT {self.trt.__version__} does not run explicit (Q/DQ) "
                                    "quantization, the only INT8 sage-edge makes: use --fp16 with --dla-core")
        if o.gpu_fallback and o.dla_core is None:
            raise SageEdgeError("--gpu-fallback only applies with --dla-core")
        if o.builder_optimization_level is not None:
            if not 0 <= o.builder_optimization_level <= 5:
                raise SageEdgeError("--builder-optimization-level must be 0..5")
            if not supports_optimization_level(self.version):
                raise SageEdgeError(f"--builder-optimization-level needs TensorRT 8.6+, this is {self.trt.__version__}")
        if o.version_compatible and not supports_version_compatible(self.version):
            raise SageEdgeError(f"--version-compatible needs TensorRT 8.6+, this is {self.trt.__version__}")
        if o.workspace_mib is not None and o.workspace_mib < 1:
            raise SageEdgeError("--workspace must be at least 1 MiB")

    def _prepare_onnx(self, scratch: Path, facts: dict[str, Any] | None) -> tuple[Path, list[str]]:
        """(ONNX to parse, notes): quantize / AutoCast first when the onnx package shows it is needed.

        Without onnx (usual on a Jetson) the parsed network is checked instead (``_settle_precision``).
        """
        o = self.options
        notes: list[str] = []
        source = o.onnx
        if o.int8 and facts is not None and not facts["qdq"]:
            source = self._quantize(scratch, notes)
        if uses_strong_typing(self.version) and o.fp16 and not o.int8 and facts is not None and not facts["fp16"]:
            source = self._autocast(scratch, notes)
        return source, notes

    def _quantize(self, scratch: Path, notes: list[str]) -> Path:
        o = self.options
        if o.calib is None:
            raise SageEdgeError(f"{o.onnx} has no Q/DQ nodes: give --calib DIR to quantize it first, or run "
                                "`sage-edge quantize` (INT8 calibrators are deprecated since TensorRT 10.1)")
        target = scratch / (o.onnx.stem + ".qdq.onnx")
        self.echo(f"quantizing {o.onnx.name} to INT8 Q/DQ on {o.calib} (ModelOpt) ...")
        self.prepare_int8(o.onnx, target, o.calib, o.calib_samples)
        notes.append(f"quantized to {target.name} first (--int8 on an FP32 ONNX)")
        return target

    def _autocast(self, scratch: Path, notes: list[str]) -> Path:
        o = self.options
        target = scratch / (o.onnx.stem + ".fp16.onnx")
        self.echo(f"TensorRT {self.trt.__version__} builds strongly typed: converting {o.onnx.name} to FP16 "
                  "(ModelOpt AutoCast) ...")
        self.prepare_fp16(o.onnx, target)
        notes.append(f"converted to {target.name} first (TensorRT 11 takes FP16 from the ONNX)")
        return target

    def _settle_precision(self, builder: Any, scratch: Path, source: Path, network: Any, parser: Any,
                          notes: list[str]) -> tuple[Path, Any, Any, str]:
        """(source, network, parser, precision label) from what the parsed network really holds (review A3).

        Converts first when the onnx package was not there to tell (--int8 with --calib, --fp16 on
        TensorRT 11), and refuses a precision the network does not carry instead of mislabelling.
        """
        o, trt = self.options, self.trt
        strong = uses_strong_typing(self.version)
        held = network_precision(trt, network)
        if o.int8 and not held["qdq"] and source == o.onnx:
            source = self._quantize(scratch, notes)
            network, parser = self._parse(builder, source, strong)
            held = network_precision(trt, network)
        if strong and o.fp16 and not o.int8 and not held["fp16"] and source == o.onnx:
            source = self._autocast(scratch, notes)
            network, parser = self._parse(builder, source, strong)
            held = network_precision(trt, network)
        if o.int8 and not held["qdq"]:
            raise SageEdgeError(f"{source.name}: --int8 needs a Q/DQ model and this network has no Quantize/Dequantize "
                                "layers (TensorRT would build it without INT8 and no scales): quantize it with "
                                "`sage-edge quantize`, or give --calib DIR")
        if strong:
            if o.fp16 and not o.int8 and not held["fp16"]:
                raise SageEdgeError(f"{source.name}: TensorRT {trt.__version__} takes FP16 from the ONNX and this "
                                    "network has no FP16 tensors: convert it first with ModelOpt AutoCast "
                                    f"(`sage-edge export --model WEIGHTS --fp16 -o {source.stem}.fp16.onnx`), "
                                    "or build without --fp16")
            parts = [name for name, present in (("int8", held["qdq"]), ("fp16", held["fp16"])) if present]
            if o.int8 and o.fp16 and not held["fp16"]:
                notes.append("no FP16 tensors in this Q/DQ model: its non-quantized layers run in FP32 "
                             "(quantize with --high-precision fp16 for FP16 there)")
            return source, network, parser, "+".join(parts) or "fp32"
        if held["qdq"] and not o.int8:
            # TensorRT 8.x/10.x developer guide, "Working with Quantized Types": "To enable any quantization
            # operations, the INT8 flag must be set in the builder config."
            raise SageEdgeError(f"{source.name} has Q/DQ (INT8) nodes: add --int8 (TensorRT {trt.__version__} "
                                "needs the INT8 builder flag for them)")
        if held["fp16"] and not o.fp16:
            notes.append("the ONNX holds FP16 tensors: add --fp16 to let TensorRT run its layers in FP16")
        parts = [name for name, wanted in (("int8", o.int8), ("fp16", o.fp16)) if wanted]
        return source, network, parser, "+".join(parts) or "fp32"

    def _parse(self, builder: Any, source: Path, strong: bool) -> tuple[Any, Any]:
        trt = self.trt
        network = builder.create_network(network_flags(trt, self.version, strong))
        parser = trt.OnnxParser(network, self.logger)
        ok = parser.parse(source.read_bytes(), str(source))
        if not ok:
            lines = [self._parser_error_line(parser.get_error(i)) for i in range(parser.num_errors)]
            if "UINT8" in " ".join(lines).upper():
                raise BuildError(self._uint8_message(source), lines)
            raise BuildError(f"{source}: TensorRT's ONNX parser reported {len(lines)} error(s) (listed above)", lines)
        return network, parser

    @staticmethod
    def _parser_error_line(err: Any) -> str:
        # IParserError: code(), desc(), node(), and since TRT 10 node_name()/node_operator().
        node = ""
        if hasattr(err, "node_name") and err.node_name():
            node = f"node {err.node_name()}"
            if hasattr(err, "node_operator") and err.node_operator():
                node += f" ({err.node_operator()})"
        elif err.node() >= 0:
            node = f"node #{err.node()}"
        code = getattr(err.code(), "name", str(err.code()))
        return f"parser error [{code}]{' ' + node if node else ''}: {err.desc()}"

    def _uint8_message(self, source: Path) -> str:
        return (f"{source}: TensorRT {self.trt.__version__} refuses its uint8 tensors: uint8 is allowed only on graph "
                "inputs that feed Casts and on graph outputs made by a Cast, never in between (onnx-tensorrt "
                "ModelImporter.cpp); re-export it with this sage-edge (`sage-edge export`), or `--io float`")

    def _profile(self, builder: Any, network: Any, io_kind: str) -> tuple[Any, dict[str, dict[str, list[int]]] | None]:
        """One optimization profile for the H/W axes of every input, or None for a static network."""
        o = self.options
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dynamic = [t for t in inputs if any(int(d) == -1 for d in t.shape)]
        if not dynamic:
            static = [tuple(int(d) for d in t.shape) for t in inputs]
            for name, shape in (("--min-shape", o.min_shape), ("--opt-shape", o.opt_shape), ("--max-shape", o.max_shape)):
                if shape is not None and not any(_hw(s, io_kind) == shape for s in static):
                    raise SageEdgeError(f"{name} {_wxh(shape)}: the ONNX has static inputs "
                                        f"{[list(s) for s in static]}; re-export it with --height/--width")
            return None, None
        low, high = o.min_shape or DEFAULT_MIN_SHAPE, o.max_shape or DEFAULT_MAX_SHAPE
        # Without --opt-shape: the default opt shape, clamped into the given min..max.
        opt = o.opt_shape or tuple(min(max(d, lo), hi) for d, lo, hi in zip(DEFAULT_OPT_SHAPE, low, high))
        if o.dla_core is not None:  # DLA: static shapes only
            low = high = opt
        if not (low[0] <= opt[0] <= high[0] and low[1] <= opt[1] <= high[1]):
            raise SageEdgeError(f"shapes must satisfy min <= opt <= max in width and height: "
                                f"{_wxh(low)}, {_wxh(opt)}, {_wxh(high)} (WIDTHxHEIGHT)")
        profile = builder.create_optimization_profile()
        record: dict[str, dict[str, list[int]]] = {}
        for t in dynamic:
            shapes = [_with_hw(tuple(int(d) for d in t.shape), hw, io_kind) for hw in (low, opt, high)]
            try:
                profile.set_shape(t.name, *shapes)
            except RuntimeError as exc:  # pyCore.cpp opt_profile_set_shape: setDimensions refused the shapes
                raise SageEdgeError(f"TensorRT refused the profile for '{t.name}' ({exc}): {shapes}") from None
            record[t.name] = {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])}
        return profile, record

    def _pin_colour_maths_fp32(self, network: Any) -> list[Any]:
        """Weakly typed FP16 builds (TRT 8.5-10): keep the colour maths (layers outside the network scope) in FP32.

        Pins only layers whose inputs and outputs are all FLOAT, never CAST, CONSTANT or SHAPE
        layers (release/10.3 include/NvInfer.h ILayer::setPrecision: with OBEY_PRECISION_CONSTRAINTS
        "build fails" when no implementation conforms; uint8 casts and shape arithmetic have none in
        FP32). Layers TensorRT adds without a name (broadcast shuffles, "(Unnamed Layer* N)") belong to
        the scope of the layers that consume them.
        """
        trt = self.trt
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        if not any(layer.name.startswith(NETWORK_SCOPE) for layer in layers):
            return []
        consumers: dict[str, list[Any]] = {}
        for layer in layers:
            for tensor in _layer_inputs(layer):
                consumers.setdefault(tensor.name, []).append(layer)
        memo: dict[str, bool] = {}

        def in_scope(layer: Any) -> bool:
            if layer.name in memo:
                return memo[layer.name]
            memo[layer.name] = False  # cycles (none in TensorRT networks) end here
            if layer.name.startswith(NETWORK_SCOPE):
                memo[layer.name] = True
            elif layer.name.startswith("(Unnamed Layer"):
                users = [c for out in _layer_outputs(layer) for c in consumers.get(out.name, [])]
                memo[layer.name] = bool(users) and all(in_scope(c) for c in users)
            return memo[layer.name]

        skip = {getattr(trt.LayerType, name) for name in ("CAST", "CONSTANT", "SHAPE") if hasattr(trt.LayerType, name)}
        pinned = []
        for layer in layers:
            tensors = _layer_inputs(layer) + _layer_outputs(layer)
            if in_scope(layer) or layer.type in skip or not _layer_inputs(layer) or not _layer_outputs(layer):
                continue
            if any(t.dtype != trt.DataType.FLOAT for t in tensors):
                continue  # casts to/from uint8, integer shape arithmetic: nothing to pin
            layer.precision = trt.DataType.FLOAT
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.DataType.FLOAT)
            pinned.append(layer)
        return pinned

    def _configure(self, builder: Any, network: Any, precision: str, strong: bool,
                   io_kind: str) -> tuple[Any, dict[str, dict[str, list[int]]] | None, int, list[str], str | None]:
        trt, o = self.trt, self.options
        config = builder.create_builder_config()
        # TRT 8.4+: memory pools (max_workspace_size was removed in 10).
        if o.workspace_mib is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(o.workspace_mib) << 20)
        # Layer information in the engine (engine inspector, trtexec --profilingVerbosity=detailed).
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            # TF32 is on by default (include/NvInfer.h BuilderFlag::kTF32) and rounds Conv inputs to 10 mantissa bits
            # on Ampere+ (Orin): "fp32" engines are the exact reference that verify compares every precision with.
            config.clear_flag(trt.BuilderFlag.TF32)
        pinned: list[Any] = []
        if not strong:
            # TRT 8.5 / 8.6 / 10.x: precision by builder flags (deprecated in 10.12, removed in 11).
            if "fp16" in precision:
                config.set_flag(trt.BuilderFlag.FP16)
                pinned = self._pin_colour_maths_fp32(network)
                if pinned:
                    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            if "int8" in precision:
                config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: Q/DQ scales, no calibrator
        if o.builder_optimization_level is not None:
            config.builder_optimization_level = int(o.builder_optimization_level)  # TRT 8.6+
        if o.version_compatible:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)  # TRT 8.6+
        profile, record = self._profile(builder, network, io_kind)
        if profile is not None and config.add_optimization_profile(profile) < 0:
            # include/NvInfer.h IBuilderConfig::addOptimizationProfile: -1 when the profile is invalid.
            raise SageEdgeError(f"TensorRT rejected the optimization profile {record}: every dynamic input needs "
                                "min <= opt <= max shapes of its rank")
        fallback: list[str] = []
        if o.dla_core is not None:
            fallback = self._configure_dla(builder, network, config, pinned)
        cache_note = self._load_timing_cache(config)
        return config, record, len(pinned), fallback, cache_note

    def _configure_dla(self, builder: Any, network: Any, config: Any, pinned: list[Any]) -> list[str]:
        """DLA core + the layers that will run on the GPU instead, listed per layer (GPU fallback is silent otherwise).

        A layer cannot run on the DLA when TensorRT says so (``can_run_on_DLA``), when it is kept in
        FP32 (DLA computes in FP16 or INT8: TensorRT docs "DLA Supported Layers and Restrictions"),
        or when it touches a UINT8 tensor (the uint8 I/O casts: no DLA layer takes UINT8).
        """
        trt, o = self.trt, self.options
        cores = int(builder.num_DLA_cores)
        if cores == 0:
            if self.version[0] >= 11:
                raise SageEdgeError(f"TensorRT {trt.__version__} sees no DLA: from TensorRT 11.4.1 DLA runs only on "
                                    "Jetson AGX Orin with JetPack 7.2.2+ (Jetson Thor and Orin Nano have none)")
            raise SageEdgeError("this device has no DLA (Jetson AGX Orin and Orin NX have DLA cores; Orin Nano and "
                                "desktop GPUs do not)")
        if not 0 <= o.dla_core < cores:
            raise SageEdgeError(f"--dla-core {o.dla_core}: this device has DLA cores 0..{cores - 1}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(o.dla_core)
        if o.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        pinned_names = {layer.name for layer in pinned}
        fallback = []
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            kind = getattr(layer.type, "name", str(layer.type))
            tensors = _layer_inputs(layer) + _layer_outputs(layer)
            if layer.name in pinned_names:
                why = f"{kind}, kept in FP32; DLA computes in FP16/INT8"
            elif any(t.dtype == trt.DataType.UINT8 for t in tensors):
                why = f"{kind}, UINT8; no DLA layer takes UINT8"
            elif not config.can_run_on_DLA(layer):
                why = kind
            else:
                continue
            fallback.append(f"{layer.name} ({why})")
            if o.gpu_fallback:
                config.set_device_type(layer, trt.DeviceType.GPU)  # explicit placement, not TensorRT's silent one
        if fallback and not o.gpu_fallback:
            raise BuildError(f"{len(fallback)} layers cannot run on DLA (listed above): add --gpu-fallback to "
                             "run them on the GPU", [f"not on DLA: {name}" for name in fallback])
        return fallback

    def _load_timing_cache(self, config: Any) -> str | None:
        path = self.options.timing_cache
        if path is None:
            return None
        data = path.read_bytes() if path.is_file() else b""
        cache = config.create_timing_cache(data)
        # ignore_mismatch=False: a cache from another device/TRT version is rejected by TensorRT itself.
        if not config.set_timing_cache(cache, False):
            raise SageEdgeError(f"{path}: TensorRT rejected this timing cache (another GPU or TensorRT version?); "
                                "delete it to start a new one")
        return f"reused {path} ({len(data)} bytes)" if data else f"created {path}"

    def _save_timing_cache(self, config: Any) -> None:
        path = self.options.timing_cache
        if path is None:
            return
        cache = config.get_timing_cache()
        if cache is not None:
            write_bytes_atomic(path, bytes(cache.serialize()))

    # -- the build --------------------------------------------------------------------------
    def build(self) -> BuildReport:
        o = self.options
        self._validate()
        trt = self.trt
        facts = _onnx_facts(o.onnx)
        gpu = self.gpu if self.gpu is not None else gpu_facts()
        onnx_sha = _sha256(o.onnx)
        device = f"DLA{o.dla_core}" if o.dla_core is not None else "GPU"
        strong = uses_strong_typing(self.version)

        self.logger = shared_logger(trt)  # one trt.Logger per process (the runtime uses the same)
        with tempfile.TemporaryDirectory(prefix="sage-edge-build-") as scratch_dir:
            scratch = Path(scratch_dir)
            source, notes = self._prepare_onnx(scratch, facts)
            builder = trt.Builder(self.logger)
            network, parser = self._parse(builder, source, strong)
            source, network, parser, precision = self._settle_precision(builder, scratch, source, network, parser,
                                                                        notes)
            io_kind = _onnx_io_kind([network.get_input(i).name for i in range(network.num_inputs)],
                                    [network.get_output(i).name for i in range(network.num_outputs)], o.onnx)
            config, profile, pinned, fallback, cache_note = self._configure(builder, network, precision, strong,
                                                                           io_kind)
            output = o.output or o.onnx.with_suffix(".engine")
            if o.cache_dir is not None:
                key = cache_key(onnx_sha, trt.__version__, device, precision, profile, o.onnx.stem)
                cached = self._cache_hit(o.cache_dir / key, gpu)
                if cached is not None:
                    return self._finish_cache_hit(cached, output if o.output else None)
                output = o.cache_dir / key if o.output is None else output

            start = time.perf_counter()
            serialized = builder.build_serialized_network(network, config)
            seconds = time.perf_counter() - start
            if serialized is None:
                raise SageEdgeError(f"{o.onnx}: TensorRT could not build the engine (see the TensorRT log above)")
            self._save_timing_cache(config)
            engine_bytes = bytes(serialized)
            kept_onnx = None
            if source != o.onnx:  # keep the FP16 / Q/DQ ONNX made for this build, beside the engine
                kept_onnx = output.with_name(output.stem + source.name[len(o.onnx.stem):])
                write_bytes_atomic(kept_onnx, source.read_bytes())

        record = {
            "tensorrt": trt.__version__,
            "gpu": {"name": gpu.get("name"), "compute_capability": gpu.get("compute_capability"),
                    "name_source": gpu.get("name_source")},
            "precision": precision,
            "build_method": "strongly-typed" if strong else "builder-flags",
            "io_kind": io_kind,
            "profile": profile,
            "dla_core": o.dla_core,
            "gpu_fallback_layers": fallback,
            "version_compatible": o.version_compatible,
            "onnx": {"path": str(o.onnx), "sha256": onnx_sha},
            "border_pad": facts["border_pad"] if facts else None,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()},
            "command_flags": o.command_flags(),
            "build_seconds": round(seconds, 3),
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_bytes_atomic(output, engine_bytes)
        sidecar = engine_sidecar.write_sidecar(output, record)
        if o.cache_dir is not None and o.output is not None:  # also keep it in the cache for the next build
            key = cache_key(onnx_sha, trt.__version__, device, precision, profile, o.onnx.stem)
            write_bytes_atomic(o.cache_dir / key, engine_bytes)
            engine_sidecar.write_sidecar(o.cache_dir / key, record)
        return BuildReport(engine=output, sidecar=sidecar, tensorrt=trt.__version__,
                           method=record["build_method"], precision=precision, io_kind=io_kind, profile=profile,
                           build_seconds=seconds, timing_cache=cache_note, dla_core=o.dla_core,
                           gpu_fallback_layers=fallback, pinned_fp32_layers=pinned, prepared_onnx=kept_onnx,
                           notes=notes)

    def _cache_hit(self, path: Path, gpu: dict[str, Any]) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            record = engine_sidecar.read_sidecar(path)
        except SageEdgeError:
            return None
        if record is None or engine_sidecar.mismatch(record, self.trt.__version__, gpu.get("name"),
                                                     gpu.get("compute_capability")):
            return None
        return {"path": path, "record": record}

    def _finish_cache_hit(self, hit: dict[str, Any], copy_to: Path | None) -> BuildReport:
        path, record = hit["path"], hit["record"]
        engine = path
        if copy_to is not None:
            write_bytes_atomic(copy_to, path.read_bytes())
            engine_sidecar.write_sidecar(copy_to, {k: v for k, v in record.items() if k != "format"})
            engine = copy_to
        return BuildReport(engine=engine, sidecar=engine_sidecar.sidecar_path(engine), tensorrt=record["tensorrt"],
                           method=record.get("build_method", ""), precision=record.get("precision", ""),
                           io_kind=record.get("io_kind", ""), profile=record.get("profile"), cached=True,
                           dla_core=record.get("dla_core"), gpu_fallback_layers=record.get("gpu_fallback_layers", []),
                           notes=[f"cache hit: {path}"])


def _hw(shape: tuple[int, ...], io_kind: str) -> tuple[int, int]:
    return (shape[1], shape[2]) if io_kind == "uint8" else (shape[2], shape[3])


def _with_hw(shape: tuple[int, ...], hw: tuple[int, int], io_kind: str) -> tuple[int, ...]:
    """Fill the dynamic H/W axes of ``shape`` (NHWC for uint8 graphs, NCHW for float graphs)."""
    out = list(shape)
    h_axis, w_axis = (1, 2) if io_kind == "uint8" else (2, 3)
    out[h_axis], out[w_axis] = hw
    if out[0] == -1:
        out[0] = 1
    if any(d == -1 for d in out):
        raise SageEdgeError(f"unexpected dynamic axes in input shape {shape}")
    return tuple(out)


# Default preparers: desktop-only (ModelOpt); one-line errors on a Jetson without it.
def _autocast_fp16(source: Path, target: Path) -> None:
    from sage_edge.export.fp16 import convert_fp16

    convert_fp16(source, target)


def _modelopt_int8(source: Path, target: Path, calib: Path, samples: int) -> None:
    from sage_edge.export.quantize import quantize_onnx
    from sage_edge.pairs import find_datasets

    pairs = [p for ps in find_datasets(calib).values() for p in ps]
    quantize_onnx(source, target, pairs, samples=samples)


def build_engine(options: BuildOptions, echo: Callable[[str], None] = lambda line: None) -> BuildReport:
    return EngineBuilder(options, echo=echo).build()


__all__ = ["BuildOptions", "BuildReport", "BuildError", "EngineBuilder", "build_engine", "cache_key", "parse_hw",
           "parse_workspace_mib", "network_flags", "network_precision", "uses_strong_typing", "version_tuple"]
