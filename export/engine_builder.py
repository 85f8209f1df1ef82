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
    network is created ``STRONGLY_TYPED`` and takes its precision from the ONNX: an FP16
    ONNX from ModelOpt AutoCast (``export --fp16``, done here when ModelOpt is installed)
    or a Q/DQ ONNX from ModelOpt PTQ (``quantize``).
UINT8 network I/O (the default end-to-end graph) needs TensorRT 8.6 or later; 8.5 gets a
one-line error suggesting ``export --io float``.

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
from sage_edge.runtime.tensorrt_api import check_supported, import_tensorrt, version_tuple

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
                flags.append(f"{name} {shape[0]}x{shape[1]}")
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


def supports_uint8_io(version: tuple[int, int, int]) -> bool:
    """UINT8 network inputs/outputs: TRT 8.6+ (not 8.5, JetPack 5.1)."""
    return version >= (8, 6, 0)


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
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise SageEdgeError(f"{what} '{text}': expected HxW, e.g. 480x640") from None
    if h < 1 or w < 1:
        raise SageEdgeError(f"{what} '{text}': height and width must be positive")
    return h, w


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
    """Facts from the ONNX itself when the onnx package is installed (it is optional on a Jetson)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    elem = {i.name: i.type.tensor_type.elem_type for i in list(model.graph.input) + list(model.graph.output)}
    return {
        "uint8_io": any(t == onnx.TensorProto.UINT8 for t in elem.values()),
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
    """GPU name and compute capability (pycuda when present, else nvidia-smi / the device tree)."""
    try:
        from sage_edge.runtime.cuda_memory import device_info

        info = device_info(0)
        return {"name": info.name, "compute_capability": info.compute_capability, "integrated": info.integrated}
    except Exception:
        pass
    from sage_edge import environment

    gpu = environment.gpu_record()
    jetson = environment.jetson_record()
    name = gpu.get("name") or ((jetson or {}).get("module"))
    return {"name": name, "compute_capability": None, "integrated": jetson is not None}


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
                raise SageEdgeError("DLA needs static shapes: give one size (--opt-shape HxW) or export with "
                                    "--height/--width; --min-shape and --max-shape must equal it")
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

    def _prepare_onnx(self, scratch: Path, facts: dict[str, Any] | None) -> tuple[Path, str, bool, list[str]]:
        """(ONNX to parse, precision, strongly typed?, notes): quantize / AutoCast first where needed."""
        o = self.options
        notes: list[str] = []
        source = o.onnx
        qdq = facts["qdq"] if facts else None
        fp16_onnx = facts["fp16"] if facts else None
        strong = uses_strong_typing(self.version)
        if o.int8 and qdq is False:
            if o.calib is None:
                raise SageEdgeError(f"{o.onnx} has no Q/DQ nodes: give --calib DIR to quantize it first, or run "
                                    "`sage-edge quantize` (INT8 calibrators are deprecated since TensorRT 10.1)")
            target = scratch / (o.onnx.stem + ".qdq.onnx")
            self.echo(f"quantizing {o.onnx.name} to INT8 Q/DQ on {o.calib} (ModelOpt) ...")
            self.prepare_int8(o.onnx, target, o.calib, o.calib_samples)
            source, qdq = target, True
            notes.append(f"quantized to {target.name} first (--int8 on an FP32 ONNX)")
        if o.int8 and qdq is None:
            notes.append("onnx is not installed, so Q/DQ nodes could not be checked; assuming a Q/DQ model")
        if strong and o.fp16 and not o.int8 and fp16_onnx is False:
            # TRT 11: no FP16 flag. The ONNX must carry FP16 itself.
            target = scratch / (o.onnx.stem + ".fp16.onnx")
            self.echo(f"TensorRT {self.trt.__version__} builds strongly typed: converting {o.onnx.name} to FP16 "
                      "(ModelOpt AutoCast) ...")
            self.prepare_fp16(o.onnx, target)
            source = target
            notes.append(f"converted to {target.name} first (TensorRT 11 takes FP16 from the ONNX)")
        precision = "int8" if o.int8 else "fp16" if (o.fp16 or (strong and fp16_onnx)) else "fp32"
        if o.int8 and o.fp16:
            precision = "int8+fp16"
        return source, precision, strong, notes

    def _parse(self, builder: Any, source: Path, strong: bool) -> tuple[Any, Any]:
        trt = self.trt
        network = builder.create_network(network_flags(trt, self.version, strong))
        parser = trt.OnnxParser(network, self.logger)
        ok = parser.parse(source.read_bytes(), str(source))
        if not ok:
            lines = [self._parser_error_line(parser.get_error(i)) for i in range(parser.num_errors)]
            joined = " ".join(lines)
            if "UINT8" in joined.upper() and not supports_uint8_io(self.version):
                raise BuildError(self._uint8_message(), lines)
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

    def _uint8_message(self) -> str:
        return (f"TensorRT {self.trt.__version__} cannot take uint8 network I/O (TensorRT 8.6+ can, JetPack 6+): "
                "export the float graph instead: sage-edge export --io float -o model_float.onnx")

    def _profile(self, builder: Any, network: Any, io_kind: str) -> tuple[Any, dict[str, dict[str, list[int]]] | None]:
        """One optimization profile for the H/W axes of every input, or None for a static network."""
        o = self.options
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dynamic = [t for t in inputs if any(int(d) == -1 for d in t.shape)]
        if not dynamic:
            static = [tuple(int(d) for d in t.shape) for t in inputs]
            for name, shape in (("--min-shape", o.min_shape), ("--opt-shape", o.opt_shape), ("--max-shape", o.max_shape)):
                if shape is not None and not any(_hw(s, io_kind) == shape for s in static):
                    raise SageEdgeError(f"{name} {shape[0]}x{shape[1]}: the ONNX has static inputs "
                                        f"{[list(s) for s in static]}; re-export it with --height/--width")
            return None, None
        low, high = o.min_shape or DEFAULT_MIN_SHAPE, o.max_shape or DEFAULT_MAX_SHAPE
        # Without --opt-shape: the default opt shape, clamped into the given min..max.
        opt = o.opt_shape or tuple(min(max(d, lo), hi) for d, lo, hi in zip(DEFAULT_OPT_SHAPE, low, high))
        if o.dla_core is not None:  # DLA: static shapes only
            low = high = opt
        if not (low[0] <= opt[0] <= high[0] and low[1] <= opt[1] <= high[1]):
            raise SageEdgeError(f"shapes must satisfy min <= opt <= max: {low}, {opt}, {high}")
        profile = builder.create_optimization_profile()
        record: dict[str, dict[str, list[int]]] = {}
        for t in dynamic:
            shapes = [_with_hw(tuple(int(d) for d in t.shape), hw, io_kind) for hw in (low, opt, high)]
            profile.set_shape(t.name, *shapes)
            record[t.name] = {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])}
        return profile, record

    def _pin_colour_maths_fp32(self, network: Any) -> int:
        """Weakly typed FP16 builds (TRT 8.5-10): keep layers outside the network scope in FP32."""
        trt = self.trt
        scoped = [network.get_layer(i) for i in range(network.num_layers)]
        if not any(layer.name.startswith(NETWORK_SCOPE) for layer in scoped):
            return 0
        pinned = 0
        for layer in scoped:
            if layer.name.startswith(NETWORK_SCOPE):
                continue
            outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
            if not outputs or any(out.dtype != trt.DataType.FLOAT for out in outputs):
                continue  # casts to/from uint8, shape arithmetic: nothing to pin
            layer.precision = trt.DataType.FLOAT
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.DataType.FLOAT)
            pinned += 1
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
        pinned = 0
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
        if profile is not None:
            config.add_optimization_profile(profile)
        fallback: list[str] = []
        if o.dla_core is not None:
            fallback = self._configure_dla(builder, network, config)
        cache_note = self._load_timing_cache(config)
        return config, record, pinned, fallback, cache_note

    def _configure_dla(self, builder: Any, network: Any, config: Any) -> list[str]:
        """DLA core + the layers that will run on the GPU instead (GPU fallback is silent otherwise)."""
        trt, o = self.trt, self.options
        cores = int(builder.num_DLA_cores)
        if cores == 0:
            raise SageEdgeError("this device has no DLA (Jetson AGX/NX Orin have DLA cores; Orin Nano does not)")
        if not 0 <= o.dla_core < cores:
            raise SageEdgeError(f"--dla-core {o.dla_core}: this device has DLA cores 0..{cores - 1}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(o.dla_core)
        if o.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        fallback = []
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                fallback.append(f"{layer.name} ({getattr(layer.type, 'name', layer.type)})")
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
        if facts and facts["uint8_io"] and not supports_uint8_io(self.version):
            raise SageEdgeError(self._uint8_message())
        gpu = self.gpu if self.gpu is not None else gpu_facts()
        onnx_sha = _sha256(o.onnx)
        device = f"DLA{o.dla_core}" if o.dla_core is not None else "GPU"

        self.logger = trt.Logger(trt.Logger.WARNING)
        with tempfile.TemporaryDirectory(prefix="sage-edge-build-") as scratch_dir:
            scratch = Path(scratch_dir)
            source, precision, strong, notes = self._prepare_onnx(scratch, facts)
            builder = trt.Builder(self.logger)
            network, _parser = self._parse(builder, source, strong)
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
            "gpu": {"name": gpu.get("name"), "compute_capability": gpu.get("compute_capability")},
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
           "network_flags", "uses_strong_typing", "supports_uint8_io", "version_tuple"]
