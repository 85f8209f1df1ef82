"""``sage-edge bench``: latency, memory and energy of model x backend x precision x resolution, side by side.

Every grid cell runs on the same seeded inputs: real IR/visible pairs from the
shared data folder (or ``samples.synthetic_pair`` when there is none), resized
to the cell's resolution before timing starts. A cell times the real fusion
path, ``Fuser(backend).fuse(ir, vis)``, through a thin proxy around the backend
that stamps the moment ``infer`` is entered and left, so the stages are:

    preprocess   fuse() start -> backend.infer() entered (layout, colour to Y, normalisation)
    h2d          host -> device copy of the inputs          (inside infer; see below)
    inference    the network                                (inside infer)
    d2h          device -> host copy of the outputs         (inside infer)
    postprocess  backend.infer() returned -> fuse() returned (colour re-assembly)
    end_to_end   the whole fuse() call

All host times are ``time.perf_counter_ns``. A backend that can split its own
``infer`` call implements the optional, duck-typed method::

    backend.last_stage_times() -> {"h2d_ms": float, "inference_ms": float, "d2h_ms": float}

(times of the most recent ``infer``; TensorRT measures them with CUDA events
on its stream). Then h2d / inference / d2h come from it (``source:
"cuda-events"``). Otherwise the whole ``infer`` call is the inference stage
(``source: "host"``) and h2d / d2h are recorded as zero with ``source: "n/a"``:
ONNX Runtime's CPU provider and torch on the CPU have no device copy, and
ONNX Runtime's CUDA provider does its copies inside ``run``. A backend may also
offer ``device_memory_bytes() -> int`` for the GPU memory it holds.

Warm-up iterations are run and discarded. On a Jetson (``tegrastats`` on PATH)
power is sampled in the background during the timed iterations only.

The result is a JSON document (``SCHEMA_VERSION``; see ``validate`` and
docs/bench.md) with an ``environment`` record and one entry per cell; cells
that cannot run here (a precision a backend does not offer, an engine built for
another precision, a missing optional component) are entries with
``status: "skipped"`` and the reason, printed too: nothing fails silently.
"""
from __future__ import annotations

import datetime as _dt
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sage_edge import stats
from sage_edge.errors import SageEdgeError

SCHEMA_VERSION = 1
STAGES = ("preprocess", "h2d", "inference", "d2h", "postprocess", "end_to_end")
BAR_STAGES = ("preprocess", "h2d", "inference", "d2h", "postprocess")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
BENCH_BACKENDS = ("onnxruntime", "openvino", "tensorrt", "torch")
DEFAULT_DATA_DIR = Path("..") / "shared" / "data" / "ivif"
DEFAULT_FRAMES = 8
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")
# The stats every stage entry carries.
STAGE_KEYS = ("source", *stats.SUMMARY_KEYS)


def parse_resolution(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480): width x height, as every size flag (``sage_edge.sizes``)."""
    from sage_edge.sizes import parse_size

    return parse_size(text, "--resolution", minimum=8)


def build_engine_command(onnx: Path, precision: str) -> str:
    """The `sage-edge build-engine` command line that builds ``onnx`` at ``precision`` (pasteable)."""
    flags = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --calib DATA_DIR"}[precision]
    export = ""
    if onnx.suffix.lower() != ".onnx":  # weights: export them first
        export, onnx = f"sage-edge export --model {onnx} -o {onnx.stem}.onnx && ", Path(f"{onnx.stem}.onnx")
    return f"{export}sage-edge build-engine {onnx}{flags} -o {onnx.stem}_{precision}.engine"


# --- inputs ---------------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Decoded frames at full size, and where they came from. ``at(w, h)`` gives them resized."""

    frames: list[tuple[np.ndarray, np.ndarray]]
    source: str
    names: list[str]
    pairs: list[Any] = field(default_factory=list)  # ImagePair objects when real data was used
    # The other pairs of the data folder: INT8 copies are calibrated on these, never on the timed frames,
    # so the quality reported for an INT8 cell is measured on pairs its calibration did not see.
    calibration_pairs: list[Any] = field(default_factory=list)
    _cache: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)

    def at(self, width: int, height: int) -> list[tuple[np.ndarray, np.ndarray]]:
        import cv2

        if (width, height) not in self._cache:
            resized = []
            for ir, vis in self.frames:
                interp_ir = cv2.INTER_AREA if ir.shape[1] > width else cv2.INTER_LINEAR
                interp_vis = cv2.INTER_AREA if vis.shape[1] > width else cv2.INTER_LINEAR
                resized.append((
                    np.ascontiguousarray(cv2.resize(ir, (width, height), interpolation=interp_ir)),
                    np.ascontiguousarray(cv2.resize(vis, (width, height), interpolation=interp_vis)),
                ))
            self._cache[(width, height)] = resized
        return self._cache[(width, height)]

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "frames": len(self.frames), "names": self.names}


def load_inputs(data_dir: str | os.PathLike | None = None, frames: int = DEFAULT_FRAMES, seed: int = 0,
                echo: Callable[[str], None] = print) -> Inputs:
    """``frames`` pairs drawn (seeded) from every dataset under ``data_dir``; synthetic pairs when it is absent."""
    from sage_edge.imageio import read_ir, read_visible
    from sage_edge.pairs import find_datasets

    if frames < 1:
        raise SageEdgeError("--frames must be at least 1")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    datasets = find_datasets(root) if root.is_dir() else {}
    pairs = [(name, pair) for name in sorted(datasets) for pair in datasets[name]]
    if not pairs:
        from sage_edge.samples import synthetic_pair

        echo(f"note: no IR/visible pairs under {root}; timing synthetic pairs (sage_edge.samples.synthetic_pair)")
        made = [synthetic_pair(480, 640, seed=seed + i) for i in range(frames)]
        return Inputs(made, f"synthetic (seed {seed})", [f"synthetic-{seed + i}" for i in range(frames)])
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(pairs), size=min(frames, len(pairs)), replace=False).tolist())
    decoded, names, picked = [], [], []
    for index in chosen:
        name, pair = pairs[index]
        ir, vis = read_ir(pair.ir), read_visible(pair.vis)
        if vis.ndim == 2:  # grey visible: benchmark the colour path on the same content
            vis = np.repeat(vis[..., None], 3, axis=2)
        decoded.append((ir, vis))
        names.append(f"{name}/{pair.stem}")
        picked.append(pair)
    others = [pair for i, (_, pair) in enumerate(pairs) if i not in set(chosen)]
    return Inputs(decoded, str(root), names, picked, others)


# --- the grid -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    model: str  # the --model spec as given (zoo name or path)
    backend: str
    precision: str
    width: int
    height: int
    pipeline: bool = False
    threads: int = 0  # CPU backends; 0: the measured default (sage_edge.runtime.cpu_tuning)

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def mode(self) -> str:
        return "pipeline" if self.pipeline else "inference"

    @property
    def label(self) -> str:
        return model_label(self.model)

    @property
    def key(self) -> str:
        key = config_key(self.label, self.backend, self.precision, self.resolution, self.mode)
        return f"{key} | {self.threads} threads" if self.threads else key


def model_label(spec: str) -> str:
    """A zoo name as is; a file by its name (so runs on two machines match by file name)."""
    from sage_edge.zoo import ZOO

    return spec if spec in ZOO else Path(spec).name


def config_key(model: str, backend: str, precision: str, resolution: str, mode: str) -> str:
    return f"{model} | {backend} | {precision} | {resolution} | {mode}"


def grid(models: Sequence[str], backends: Sequence[str], precisions: Sequence[str],
         resolutions: Sequence[tuple[int, int]], pipeline: bool = False, threads: Sequence[int] = (0,)) -> list[Cell]:
    for b in backends:
        if b not in BENCH_BACKENDS:
            raise SageEdgeError(f"unknown backend '{b}'; choose from {', '.join(BENCH_BACKENDS)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise SageEdgeError(f"unknown precision '{p}'; choose from {', '.join(PRECISIONS)}")
    if any(t < 0 for t in threads):
        raise SageEdgeError("--threads must be 0 (the measured default) or a positive number")
    cpu_backends = ("onnxruntime", "openvino")
    cells = [Cell(m, b, p, w, h, pipeline, t if b in cpu_backends else 0) for m in models for b in backends
             for p in precisions for (w, h) in resolutions for t in (threads or (0,))]
    return list(dict.fromkeys(cells))


class Skip(Exception):
    """A grid cell that cannot run here; the message says why (it is printed and saved, never fatal)."""


# --- model resolution per backend and precision -------------------------------------------------------------


class ModelResolver:
    """Finds the file each cell runs: the model as given, its weights (torch), or its INT8 Q/DQ copy (ORT).

    INT8 copies are made once per model with ``sage_edge.export.quantize.quantize_onnx``, calibrated on the
    benchmark's own pairs, in a scratch folder removed by ``close()``.
    """

    def __init__(self, inputs: Inputs, echo: Callable[[str], None] = print, quantize_samples: int = 16) -> None:
        self.inputs = inputs
        self.echo = echo
        self.quantize_samples = quantize_samples
        self._scratch: Path | None = None
        self._int8: dict[Path, Path] = {}
        self._fp16: dict[Path, Path] = {}

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def resolve(self, cell: Cell) -> tuple[Path, list[str]]:
        from sage_edge.zoo import ZOO, resolve_model

        notes: list[str] = []
        spec = cell.model
        if cell.backend == "torch":
            if spec not in ZOO and Path(spec).suffix.lower() not in WEIGHT_SUFFIXES:
                raise Skip(f"the torch backend needs .pt/.pth/.safetensors weights, not {Path(spec).suffix or spec}")
            if cell.precision != "fp32":
                raise Skip(f"{cell.precision} is not offered by the torch eager backend (fp32 only)")
            return resolve_model(spec, want="weights"), notes
        if cell.backend == "tensorrt":
            path = resolve_model(spec, want="any") if spec in ZOO else Path(spec)
            if path.suffix.lower() not in ENGINE_SUFFIXES:
                raise Skip(f"the tensorrt backend runs serialized engines: build one first "
                           f"(`{build_engine_command(path, cell.precision)}`) and pass it as --model")
            return self._engine_precision(path, cell, notes), notes
        if cell.backend == "openvino":
            return self._openvino_model(spec, cell, notes), notes
        # onnxruntime
        path = resolve_model(spec, want="onnx") if spec in ZOO else resolve_model(spec)
        if path.suffix.lower() != ".onnx":
            raise Skip(f"the onnxruntime backend runs .onnx models, not {path.suffix}")
        if cell.precision == "fp16":
            if "CUDAExecutionProvider" not in _ort_providers():
                raise Skip("fp16 is not benchmarked on onnxruntime's CPU provider (no fp16 kernels: it would "
                           "time casts); use a CUDA onnxruntime or --backend tensorrt for fp16")
            return self._fp16_model(path, cell, notes), notes
        if cell.precision == "bf16":
            raise Skip("bf16 is an OpenVINO precision hint here; use --backend openvino")
        if cell.precision == "fp32":
            if _is_qdq(path):
                notes.append("the model carries Q/DQ nodes: fp32 here means 'the model as given'")
            return path, notes
        return self._int8_model(path, cell, notes), notes

    def _openvino_model(self, spec: str, cell: Cell, notes: list[str]) -> Path:
        from sage_edge.zoo import ZOO, resolve_model

        path = resolve_model(spec, want="onnx") if spec in ZOO else resolve_model(spec)
        if path.suffix.lower() not in (".onnx", ".xml"):
            raise Skip(f"the openvino backend runs .onnx or OpenVINO .xml models, not {path.suffix}")
        if cell.precision != "int8":
            return path
        if path.suffix.lower() == ".xml" or _is_qdq(path):
            notes.append("the model is already quantized: run as given")
            return path
        key = ("openvino", path)
        if key not in self._int8:
            self._int8[key] = self._quantize(path, cell, "openvino")  # type: ignore[index]
        notes.append("INT8 OpenVINO IR made by NNCF (quantize --target openvino), calibrated on pairs other than "
                     "the timed ones")
        return self._int8[key]  # type: ignore[index]

    def _quantize(self, path: Path, cell: Cell, target: str) -> Path:
        if not self.inputs.calibration_pairs:
            raise Skip("int8 needs real pairs to calibrate on, other than the timed ones (no data folder found)")
        try:
            from sage_edge.export import quantize_cpu
        except ImportError as exc:
            raise Skip(f"int8 needs sage_edge.export.quantize_cpu ({exc})") from None
        suffix = ".int8.xml" if target == "openvino" else ".int8.cpu.onnx"
        out = self._scratch_dir() / f"{path.stem}{suffix}"
        self.echo(f"quantizing {path.name} for {target} ({self.quantize_samples} calibration crops from "
                  f"{len(self.inputs.calibration_pairs)} pairs not timed here) ...")
        shape = (cell.height, cell.width)
        try:
            with _quiet():
                if target == "openvino":
                    quantize_cpu.quantize_openvino(path, out, self.inputs.calibration_pairs,
                                                   samples=self.quantize_samples, calib_shape=shape, progress=False)
                else:
                    quantize_cpu.quantize_ort_cpu(path, out, self.inputs.calibration_pairs,
                                                  samples=self.quantize_samples, calib_shape=shape, progress=False)
        except (SageEdgeError, ImportError) as exc:
            raise Skip(f"int8 quantization for {target} unavailable: {exc}") from None
        return out

    def _engine_precision(self, path: Path, cell: Cell, notes: list[str]) -> Path:
        from sage_edge.environment import sidecar

        meta = sidecar(path) or {}
        built = meta.get("precision") if isinstance(meta, dict) else None
        if built is not None:  # "int8+fp16" (INT8 with FP16 fallback) counts as int8; ["fp16"] as fp16
            text = " ".join(built) if isinstance(built, (list, tuple)) else str(built)
            built = "int8" if "int8" in text.lower() else "fp16" if "fp16" in text.lower() else "fp32"
        if built is None:
            notes.append("no sidecar metadata: the engine's precision is unknown; labelled as requested")
        elif str(built).lower() != cell.precision:
            raise Skip(f"{path.name} was built for {built}; rebuild it for {cell.precision} to benchmark that")
        return path

    def _scratch_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="sage-edge-bench-"))
        return self._scratch

    def _fp16_model(self, path: Path, cell: Cell, notes: list[str]) -> Path:
        if path in self._fp16:
            return self._fp16[path]
        try:
            from sage_edge.export.fp16 import convert_fp16
        except ImportError as exc:
            raise Skip(f"fp16 needs sage_edge.export.fp16 ({exc})") from None
        target = self._scratch_dir() / f"{path.stem}.fp16.onnx"
        self.echo(f"converting {path.name} to FP16 (ModelOpt AutoCast) ...")
        try:
            with _quiet():
                convert_fp16(path, target, self.inputs.pairs or None, shape=(cell.height, cell.width))
        except SageEdgeError as exc:
            raise Skip(f"fp16 conversion unavailable: {exc}") from None
        notes.append("FP16 model made by sage_edge.export.fp16 (colour maths kept in FP32)")
        self._fp16[path] = target
        return target

    def _int8_model(self, path: Path, cell: Cell, notes: list[str]) -> Path:
        if _is_qdq(path):
            notes.append("the model already carries Q/DQ nodes: run as given")
            return path
        if path not in self._int8:
            self._int8[path] = self._quantize(path, cell, "cpu")
        notes.append("INT8 u8s8 for ONNX Runtime's CPU provider (quantize --target cpu), calibrated on pairs other "
                     "than the timed ones")
        return self._int8[path]


def _quiet() -> Any:
    """Swallow ModelOpt's calibration prints and progress bars, which would bury the results table."""
    import contextlib
    import io

    chatter = io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(chatter))
    stack.enter_context(contextlib.redirect_stderr(chatter))
    return stack


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except ImportError:
        return []


def _is_qdq(path: Path) -> bool:
    try:
        from sage_edge.export.quantize import is_qdq_model

        return is_qdq_model(path)
    except ImportError:
        try:
            import onnx
        except ImportError:  # a Jetson image without the onnx package: cannot tell, run the model as given
            return False
        model = onnx.load(str(path), load_external_data=False)
        return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


# --- timing -----------------------------------------------------------------------------------------------------


class _TimedBackend:
    """Stands in for a backend inside ``Fuser``: stamps infer() entry/exit, asks for device stage times."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.t_enter = 0
        self.t_exit = 0
        self.device_stages: dict[str, float] | None = None
        self._has_stages = callable(getattr(backend, "last_stage_times", None))

    @property
    def inputs(self) -> Any:
        return self.backend.inputs

    @property
    def outputs(self) -> Any:
        return self.backend.outputs

    def describe(self) -> str:
        return self.backend.describe()

    def __getattr__(self, name: str) -> Any:  # anything else the Fuser may ask of the backend
        return getattr(self.backend, name)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.t_enter = time.perf_counter_ns()
        out = self.backend.infer(feed)
        self.t_exit = time.perf_counter_ns()
        if self._has_stages:
            times = self.backend.last_stage_times()
            self.device_stages = dict(times) if times else None
        return out


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so each cell reports its own peak; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_bytes() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) of this process in bytes."""
    current = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if not peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux; process lifetime
    return current, peak


def _gpu_memory(backend: Any) -> int | None:
    query = getattr(backend, "device_memory_bytes", None)
    if callable(query):
        try:
            return int(query())
        except Exception:
            return None
    torch_mod = getattr(backend, "torch", None)
    device = getattr(backend, "device", None)
    if torch_mod is not None and getattr(device, "type", None) == "cuda":
        return int(torch_mod.cuda.max_memory_allocated(device))
    return None


@dataclass
class RunOptions:
    warmup: int = 10
    iterations: int | None = 100
    duration_s: float | None = None
    tegrastats_interval_ms: int = 100
    progress: bool = True

    def check(self) -> None:
        if self.warmup < 0:
            raise SageEdgeError("--warmup must be >= 0")
        if self.duration_s is not None:
            if self.duration_s <= 0:
                raise SageEdgeError("--duration must be > 0 seconds")
        elif self.iterations is None or self.iterations < 1:
            raise SageEdgeError("--iterations must be >= 1")


def _loop(step: Callable[[int], None], opts: RunOptions, desc: str) -> tuple[int, float]:
    """Run ``step(i)`` for the timed iterations; (count, elapsed seconds)."""
    from tqdm import tqdm

    start = time.perf_counter()
    count = 0
    if opts.duration_s is not None:
        with tqdm(desc=desc, unit="it", disable=not opts.progress, leave=False) as bar:
            while count == 0 or time.perf_counter() - start < opts.duration_s:
                step(count)
                count += 1
                bar.update(1)
    else:
        for i in tqdm(range(int(opts.iterations or 0)), desc=desc, unit="it", disable=not opts.progress,
                      leave=False):
            step(i)
            count += 1
    return count, time.perf_counter() - start


def _stage_entry(samples_ms: Sequence[float] | None, source: str, count: int) -> dict[str, Any]:
    summary = stats.summarize(samples_ms) if samples_ms else stats.zero_summary(count)
    return {"source": source, **summary}


class _CellTimer:
    """Times ``Fuser(backend).fuse`` one frame at a time, so that several cells can take turns (interleaved)."""

    def __init__(self, backend: Any, frames: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        from sage_edge.runtime.fuser import Fuser

        self.timed = _TimedBackend(backend)
        self.fuser = Fuser(self.timed)  # type: ignore[arg-type]
        self.frames = frames
        self.host: dict[str, list[float]] = {s: [] for s in ("preprocess", "infer_call", "postprocess", "end_to_end")}
        self.device: dict[str, list[float]] = {"h2d": [], "inference": [], "d2h": []}
        self.count = 0
        self.busy_s = 0.0  # time spent in timed iterations
        self.samples: list[Any] = []  # tegrastats samples that arrived during this cell's iterations

    def warmup(self, iterations: int) -> None:
        for i in range(iterations):
            self.fuser.fuse(*self.frames[i % len(self.frames)])

    def step(self) -> None:
        ir, vis = self.frames[self.count % len(self.frames)]
        t0 = time.perf_counter_ns()
        self.fuser.fuse(ir, vis)
        t3 = time.perf_counter_ns()
        timed, host = self.timed, self.host
        host["preprocess"].append((timed.t_enter - t0) / 1e6)
        host["infer_call"].append((timed.t_exit - timed.t_enter) / 1e6)
        host["postprocess"].append((t3 - timed.t_exit) / 1e6)
        host["end_to_end"].append((t3 - t0) / 1e6)
        if timed.device_stages:
            for stage in self.device:
                self.device[stage].append(float(timed.device_stages.get(f"{stage}_ms", 0.0)))
        self.count += 1
        self.busy_s += (t3 - t0) / 1e9

    def result(self, elapsed: float) -> dict[str, Any]:
        from sage_edge import tegrastats

        count, host, device = self.count, self.host, self.device
        split = len(device["inference"]) == count
        stages = {
            "preprocess": _stage_entry(host["preprocess"], "host", count),
            "h2d": _stage_entry(device["h2d"] if split else None, "cuda-events" if split else "n/a", count),
            "inference": _stage_entry(device["inference"] if split else host["infer_call"],
                                      "cuda-events" if split else "host", count),
            "d2h": _stage_entry(device["d2h"] if split else None, "cuda-events" if split else "n/a", count),
            "postprocess": _stage_entry(host["postprocess"], "host", count),
            "end_to_end": _stage_entry(host["end_to_end"], "host", count),
        }
        extra = {"infer_call_host": _stage_entry(host["infer_call"], "host", count)} if split else {}
        power = tegrastats.summarize_samples(self.samples, frames=count, seconds=self.busy_s) \
            if self.samples else None
        return {
            "iterations": count,
            "elapsed_s": elapsed,
            "stages": stages,
            "extra_stages": extra,
            "samples_ms": {"end_to_end": host["end_to_end"],
                           "inference": device["inference"] if split else host["infer_call"]},
            "power": power,
        }


def time_interleaved(timers: Sequence[_CellTimer], opts: RunOptions, block: int = 1,
                     desc: str = "bench") -> float:
    """Timed iterations of every cell, taking turns in blocks of ``block`` iterations (A B C A B C ...).

    Cells run one after another drift with the machine (other jobs, clocks, caches): measured on a shared
    2-core VM, the same model given twice came out at 1.00 and 0.75 when its cells ran in sequence. Taking
    turns exposes every cell to the same conditions, so their ratios hold. With ``--duration`` each cell
    gets that much timed inference. tegrastats samples are credited to the cell whose iterations they
    arrived in. Returns the wall time of the whole interleaved run.
    """
    from tqdm import tqdm

    from sage_edge import tegrastats

    if block < 1:
        raise SageEdgeError("--block must be at least 1")
    total = None if opts.duration_s is not None else int(opts.iterations or 0) * len(timers)
    sampler = tegrastats.TegraStatsSampler(opts.tegrastats_interval_ms)
    start = time.perf_counter()
    with sampler, tqdm(total=total, desc=desc, unit="it", disable=not opts.progress, leave=False) as bar:
        while True:
            pending = [t for t in timers if (t.busy_s < opts.duration_s or t.count == 0)] \
                if opts.duration_s is not None else [t for t in timers if t.count < int(opts.iterations or 0)]
            if not pending:
                break
            for timer in pending:
                seen = len(sampler.samples)
                for _ in range(block):
                    if opts.duration_s is None and timer.count >= int(opts.iterations or 0):
                        break
                    timer.step()
                    bar.update(1)
                timer.samples.extend(sampler.samples[seen:])
    return time.perf_counter() - start


def time_inference(backend: Any, frames: Sequence[tuple[np.ndarray, np.ndarray]], opts: RunOptions,
                   desc: str = "bench") -> dict[str, Any]:
    """Time ``Fuser(backend).fuse`` on ``frames`` (cycled): stage entries, raw samples, power, memory."""
    timer = _CellTimer(backend, frames)
    timer.warmup(opts.warmup)
    elapsed = time_interleaved([timer], opts, desc=desc)
    return timer.result(elapsed)


# --- pipeline mode ------------------------------------------------------------------------------------------


def pipeline_module() -> Any | None:
    """``sage_edge.runtime.pipeline`` (the `run` pipeline) when installed, else None."""
    try:
        from sage_edge.runtime import pipeline
    except ImportError:
        return None
    return pipeline if hasattr(pipeline, "Pipeline") else None


# Pipeline stage -> bench stage. The pipeline's "latency" runs from the later frame's arrival (file read)
# to the end of its output stage: the frame's end-to-end latency, queueing included.
PIPELINE_STAGES = {"preprocess": "preprocess", "inference": "inference", "postprocess": "postprocess",
                   "end_to_end": "latency"}
PIPELINE_EXTRA = ("capture_wait", "pairing_skew", "output")


def time_pipeline(model_path: Path, backend_name: str, frames: Sequence[tuple[np.ndarray, np.ndarray]],
                  opts: RunOptions, desc: str = "pipeline") -> dict[str, Any]:
    """Time the full ``sage-edge run`` pipeline (``sage_edge.runtime.pipeline.Pipeline``) on file sources.

    ``frames`` are written as PNG image sequences (ir/, vis/) and replayed in a loop through the pipeline's
    threads: decode, pairing, preprocess (thermal stretch), ``Fuser``, compose, the (empty) output stage.
    The first ``warmup`` frames are dropped from every stage. Stages come from the pipeline's own
    ``StageTimings``; inside the pipeline "inference" is the whole ``Fuser.fuse`` call (no h2d/d2h split).
    FPS is the pipeline's throughput (frames / elapsed), since frames overlap across its threads.
    """
    from sage_edge import tegrastats
    from sage_edge.imageio import write_image

    module = pipeline_module()
    if module is None:
        raise Skip("--pipeline needs sage_edge.runtime.pipeline (the `run` pipeline), which is not installed here")
    with tempfile.TemporaryDirectory(prefix="sage-edge-bench-pipe-") as scratch:
        ir_dir, vis_dir = Path(scratch) / "ir", Path(scratch) / "vis"
        for i, (ir, vis) in enumerate(frames):
            write_image(ir_dir / f"{i:04d}.png", ir)
            write_image(vis_dir / f"{i:04d}.png", vis)
        if opts.duration_s is not None:
            limit: dict[str, Any] = {"frames": None, "duration": opts.duration_s}
        else:
            limit = {"frames": opts.warmup + int(opts.iterations or 0), "duration": None}
        pipe = module.Pipeline(f"file://{ir_dir}", f"file://{vis_dir}", model=str(model_path), backend=backend_name,
                               loop=True, log=lambda message: None, **limit)
        sampler = tegrastats.TegraStatsSampler(opts.tegrastats_interval_ms)
        with sampler:
            summary = pipe.run()
    values = {stage: pipe.timings.values(stage)[opts.warmup:].tolist() for stage in module.STAGES}
    count = len(values["latency"])
    if count == 0:
        raise Skip(f"the pipeline fused {summary.frames} frames, none after the {opts.warmup} warm-up frames")
    stages = {s: _stage_entry(None, "n/a", count) for s in STAGES}
    for ours, theirs in PIPELINE_STAGES.items():
        stages[ours] = _stage_entry(values[theirs][-count:], "host", count)
    extra = {s: _stage_entry(values[s], "host", len(values[s])) for s in PIPELINE_EXTRA if values[s]}
    elapsed = float(summary.elapsed_s)
    power = tegrastats.summarize_samples(sampler.samples, frames=summary.frames, seconds=elapsed) \
        if sampler.samples else None
    return {"iterations": count, "elapsed_s": elapsed, "stages": stages, "extra_stages": extra,
            "samples_ms": {"end_to_end": values["latency"][-count:], "inference": values["inference"][-count:]},
            "power": power, "throughput_fps_pipeline": float(summary.fps), "backend_description": summary.backend}


# --- running the grid -----------------------------------------------------------------------------------------


def _new_entry(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    return {
        "key": cell.key, "model": cell.label, "model_spec": cell.model, "model_path": None,
        "backend": cell.backend, "backend_description": None, "precision": cell.precision,
        "resolution": cell.resolution, "width": cell.width, "height": cell.height, "mode": cell.mode,
        "threads": None, "status": "skipped", "reason": None, "notes": [], "warmup": opts.warmup,
    }


def _backend_class(cell: Cell) -> Any:
    from sage_edge.runtime.backend import backend_class

    try:
        klass = backend_class(cell.backend)
        if not klass.is_available():  # type: ignore[attr-defined]
            raise Skip(f"the {cell.backend} backend is not available on this machine")
    except (ImportError, SageEdgeError, OSError) as exc:
        raise Skip(f"the {cell.backend} backend is not available on this machine ({exc})") from None
    return klass


def _open_cell_backend(cell: Cell, klass: Any, path: Path,
                       backend_options: Mapping[str, Mapping[str, Any]] | None) -> Any:
    options = dict((backend_options or {}).get(cell.backend, {}))
    if cell.backend == "onnxruntime" and cell.threads:
        options["intra_op_threads"] = cell.threads
    if cell.backend == "openvino":
        options["precision"] = cell.precision
        if cell.threads:
            options["threads"] = cell.threads
    try:
        return klass(path, **options)
    except ImportError as exc:
        raise Skip(f"the {cell.backend} backend cannot load here ({exc})") from None
    except SageEdgeError as exc:
        raise Skip(str(exc)) from None


def _finish_entry(entry: dict[str, Any], timing: dict[str, Any], peak_scope: str) -> None:
    current, peak = _rss_bytes()
    e2e = timing["stages"]["end_to_end"]
    pipeline_fps = timing.pop("throughput_fps_pipeline", None)
    entry.update(timing)
    entry["status"] = "ok"
    # Bare inference: frames run one after another, FPS = 1000 / mean end-to-end latency.
    entry["fps"] = pipeline_fps if pipeline_fps is not None else stats.fps_from_ms(e2e["mean"])
    if pipeline_fps is not None:
        entry["throughput_fps"] = pipeline_fps
    else:
        busy = sum(timing["samples_ms"]["end_to_end"]) / 1000.0
        entry["throughput_fps"] = timing["iterations"] / busy if busy > 0 else 0.0
    entry["memory"] = {"rss_mb": current / 2**20, "peak_rss_mb": peak / 2**20, "peak_rss_scope": peak_scope,
                       "gpu_peak_mb": entry.pop("gpu_peak_mb", None)}


def run_cell(cell: Cell, resolver: ModelResolver, inputs: Inputs, opts: RunOptions,
             backend_options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """One grid cell on its own: a result entry (status ok), or a skipped entry with the reason."""
    entry = _new_entry(cell, opts)
    try:
        path, notes = resolver.resolve(cell)
        entry["model_path"], entry["notes"] = str(path), notes
        per_cell_peak = _reset_peak_rss()  # after any quantization: the peak is the backend's and the loop's
        frames = inputs.at(cell.width, cell.height)
        klass = _backend_class(cell)
        if cell.pipeline:
            timing = time_pipeline(path, cell.backend, frames, opts, desc=cell.key)
            entry["backend_description"] = timing.pop("backend_description")
            entry["notes"].append("pipeline: end_to_end = arrival -> output (queueing included); "
                                  "FPS = pipeline throughput")
        else:
            with _open_cell_backend(cell, klass, path, backend_options) as backend:
                entry["backend_description"] = backend.describe()
                entry["threads"] = getattr(backend, "threads", None)
                try:
                    timing = time_inference(backend, frames, opts, desc=cell.key)
                except SageEdgeError as exc:
                    raise Skip(f"{exc}") from None
                gpu = _gpu_memory(backend)
            entry["gpu_peak_mb"] = gpu / 2**20 if gpu is not None else None
    except Skip as skip:
        entry["reason"] = str(skip)
        return entry
    _finish_entry(entry, timing, "cell" if per_cell_peak else "process")
    return entry


@dataclass
class _Prepared:
    cell: Cell
    entry: dict[str, Any]
    backend: Any
    timer: _CellTimer


def _quality(prepared: Sequence[_Prepared], inputs: Inputs) -> None:
    """Each cell's fused frames against its model's FP32 reference cell: PSNR (min, mean) and max abs error.

    The reference is the model's fp32 ONNX Runtime cell at that resolution (else its first fp32 cell). A cell
    without one in the grid gets ``quality: null``.
    """
    from sage_edge.export.precision_check import psnr

    outputs: dict[int, list[np.ndarray]] = {}

    def fused(p: _Prepared) -> list[np.ndarray]:
        if id(p) not in outputs:
            outputs[id(p)] = [p.timer.fuser.fuse(ir, vis) for ir, vis in p.timer.frames]
        return outputs[id(p)]

    for p in prepared:
        candidates = [q for q in prepared if q.cell.label == p.cell.label and q.cell.resolution == p.cell.resolution
                      and q.cell.precision == "fp32" and q.cell.backend != "torch"]
        candidates.sort(key=lambda q: (q.cell.backend != "onnxruntime", q.cell.threads))
        if not candidates:
            p.entry["quality"] = None
            continue
        ref = candidates[0]
        values = [psnr(r, t) for r, t in zip(fused(ref), fused(p))]
        errors = [int(np.abs(r.astype(np.int16) - t.astype(np.int16)).max()) for r, t in zip(fused(ref), fused(p))]
        worst = int(np.argmin(values))
        finite = [v for v in values if np.isfinite(v)]
        p.entry["quality"] = {
            "reference": ref.cell.key, "frames": len(values), "identical": not finite,
            "psnr_min_db": float(min(finite)) if finite else None,
            "psnr_mean_db": float(np.mean(finite)) if finite else None,
            "max_abs_error": max(errors), "worst_frame": inputs.names[worst] if worst < len(inputs.names) else None,
        }


def _record_tuning(results: Sequence[Mapping[str, Any]], echo: Callable[[str], None]) -> None:
    """Save what this run measured for the CPU defaults (``sage_edge.runtime.cpu_tuning``)."""
    from sage_edge.runtime import cpu_tuning

    ok = [r for r in results if r["status"] == "ok" and r["mode"] == "inference" and r.get("threads")]
    groups: dict[tuple[str, ...], dict[int, float]] = {}
    for r in ok:
        groups.setdefault((r["model"], r["backend"], r["precision"], r["resolution"]), {})[int(r["threads"])] = \
            r["stages"]["end_to_end"]["p50"]
    for (model, backend, precision, resolution), medians in groups.items():
        if len(medians) > 1 and backend in ("onnxruntime", "openvino"):
            best = min(medians, key=medians.get)
            path = cpu_tuning.record_best(backend, best, medians)
            echo(f"threads: {backend} ran fastest with {best} here ({model} {precision} {resolution}); "
                 f"saved as its default in {path}")
    by_model: dict[tuple[str, str], dict[str, float]] = {}
    for r in ok:
        if r["precision"] == "fp32" and r["backend"] in ("onnxruntime", "openvino"):
            slot = by_model.setdefault((r["model"], r["resolution"]), {})
            slot[r["backend"]] = min(slot.get(r["backend"], float("inf")), r["stages"]["end_to_end"]["p50"])
    for (model, resolution), medians in by_model.items():
        if len(medians) == 2:
            fastest = min(medians, key=medians.get)
            path = cpu_tuning.record_onnx_backend(fastest, medians)
            echo(f"auto backend: {fastest} ran FP32 .onnx fastest here ({model} {resolution}); saved in {path}")


def run_grid(cells: Sequence[Cell], inputs: Inputs, opts: RunOptions, echo: Callable[[str], None] = print,
             backend_options: Mapping[str, Mapping[str, Any]] | None = None, quantize_samples: int = 16,
             settings: Mapping[str, Any] | None = None, block: int = 1, record_tuning: bool = False
             ) -> dict[str, Any]:
    """Run every cell; the full result document (see ``validate``).

    Bare-inference cells are opened and warmed up first, then timed interleaved (``time_interleaved``); then
    each cell's quality against its model's FP32 cell is measured on the same frames. Pipeline cells (their
    own threads) run one after another afterwards.
    """
    from sage_edge import __version__, environment

    opts.check()
    env = environment.record()
    entries: list[dict[str, Any]] = []
    prepared: list[_Prepared] = []
    pipelines: list[tuple[Cell, dict[str, Any]]] = []
    resolver = ModelResolver(inputs, echo=echo, quantize_samples=quantize_samples)
    try:
        for cell in cells:
            entry = _new_entry(cell, opts)
            entries.append(entry)
            if cell.pipeline:
                pipelines.append((cell, entry))
                continue
            try:
                path, notes = resolver.resolve(cell)
                entry["model_path"], entry["notes"] = str(path), notes
                klass = _backend_class(cell)
                backend = _open_cell_backend(cell, klass, path, backend_options)
                try:
                    entry["backend_description"] = backend.describe()
                    entry["threads"] = getattr(backend, "threads", None)
                    timer = _CellTimer(backend, inputs.at(cell.width, cell.height))
                    timer.warmup(opts.warmup)
                except SageEdgeError as exc:
                    backend.close()
                    raise Skip(f"{exc}") from None
                prepared.append(_Prepared(cell, entry, backend, timer))
            except Skip as skip:
                entry["reason"] = str(skip)
        _reset_peak_rss()
        if prepared:
            elapsed = time_interleaved([p.timer for p in prepared], opts, block=block,
                                       desc=f"{len(prepared)} cells interleaved")
            for p in prepared:
                gpu = _gpu_memory(p.backend)
                p.entry["gpu_peak_mb"] = gpu / 2**20 if gpu is not None else None
                _finish_entry(p.entry, p.timer.result(elapsed), "cell" if len(prepared) == 1 else "process")
                if len(prepared) > 1:
                    p.entry["notes"].append(f"timed interleaved with {len(prepared) - 1} other cell(s), "
                                            f"in turns of {block} iteration(s)")
            _quality(prepared, inputs)
        for p in prepared:
            p.backend.close()
        prepared.clear()
        for cell, entry in pipelines:
            entry.update(run_cell(cell, resolver, inputs, opts, backend_options))
    finally:
        for p in prepared:
            p.backend.close()
        resolver.close()
    for cell, entry in zip(cells, entries):
        if entry["status"] == "skipped":
            echo(f"skipped {cell.key}: {entry['reason']}")
        else:
            for note in entry["notes"]:
                echo(f"note {cell.key}: {note}")
        if entry.get("model_path") and entry["model_path"].lower().endswith(ENGINE_SUFFIXES):
            entry["engine_metadata"] = environment.sidecar(entry["model_path"])
    environment.finish(env)
    for warning in env["warnings"]:
        echo(f"warning: {warning}")
    if record_tuning:
        _record_tuning(entries, echo)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "sage-edge bench",
        "sage_edge_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "warmup": opts.warmup, "iterations": opts.iterations if opts.duration_s is None else None,
            "duration_s": opts.duration_s, "inputs": inputs.describe(), "interleaved": True, "block": block,
            **dict(settings or {}),
        },
        "environment": env,
        "results": entries,
    }


# --- schema ------------------------------------------------------------------------------------------------------

_TOP_KEYS = {"schema_version": int, "tool": str, "settings": dict, "environment": dict, "results": list}
_RESULT_KEYS = {"key": str, "model": str, "backend": str, "precision": str, "resolution": str, "mode": str,
                "status": str}
_OK_KEYS = {"iterations": int, "elapsed_s": float, "stages": dict, "fps": float, "memory": dict}


def validate(doc: Any, what: str = "result") -> dict[str, Any]:
    """Check ``doc`` against the documented schema (docs/bench.md); returns it, or raises one line."""
    def fail(msg: str) -> None:
        raise SageEdgeError(f"{what}: not a sage-edge bench result ({msg})")

    if not isinstance(doc, dict):
        fail("top level is not an object")
    for key, kind in _TOP_KEYS.items():
        if not isinstance(doc.get(key), kind):
            fail(f"'{key}' missing or not {kind.__name__}")
    if doc["schema_version"] > SCHEMA_VERSION:
        fail(f"schema_version {doc['schema_version']} is newer than this sage-edge reads ({SCHEMA_VERSION})")
    for i, entry in enumerate(doc["results"]):
        if not isinstance(entry, dict):
            fail(f"results[{i}] is not an object")
        for key, kind in _RESULT_KEYS.items():
            if not isinstance(entry.get(key), kind):
                fail(f"results[{i}].{key} missing or not {kind.__name__}")
        if entry["status"] == "skipped":
            if not isinstance(entry.get("reason"), str):
                fail(f"results[{i}] is skipped without a reason")
            continue
        if entry["status"] != "ok":
            fail(f"results[{i}].status '{entry['status']}' is not ok/skipped")
        for key, kind in _OK_KEYS.items():
            value = entry.get(key)
            if kind is float and isinstance(value, int):
                value = float(value)
            if not isinstance(value, kind):
                fail(f"results[{i}].{key} missing or not {kind.__name__}")
        for stage in STAGES:
            block = entry["stages"].get(stage)
            if not isinstance(block, dict):
                fail(f"results[{i}].stages.{stage} missing")
            for k in STAGE_KEYS:
                if k not in block:
                    fail(f"results[{i}].stages.{stage}.{k} missing")
    return doc


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SageEdgeError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise SageEdgeError(f"{path}: not JSON ({str(exc).splitlines()[0][:120]})") from None
    return validate(doc, str(path))


def write_json(doc: Mapping[str, Any], path: str | os.PathLike) -> None:
    import json

    from sage_edge.atomic import write_bytes_atomic

    validate(dict(doc))
    write_bytes_atomic(path, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())


# --- tables, plot, compare -----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


TABLE_HEADER = ("model", "backend", "prec", "res", "mode", "e2e p50", "p90", "p99", "mean", "std", "FPS",
                "pre p50", "infer p50", "post p50", "peak RSS MB", "W", "mJ/frame", "threads", "ratio",
                "PSNR min dB")


def _quality_text(entry: Mapping[str, Any]) -> str:
    quality = entry.get("quality")
    if not quality:
        return "-"
    if quality.get("identical"):
        return "identical" if quality["reference"] != entry["key"] else "reference"
    return f"{quality['psnr_min_db']:.2f}"


def table_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """One row per cell that ran; ``ratio`` = its e2e p50 / the first cell's (interleaved cells only)."""
    rows = []
    ran = [r for r in doc["results"] if r["status"] == "ok"]
    base = ran[0]["stages"]["end_to_end"]["p50"] if ran else None
    for r in doc["results"]:
        if r["status"] != "ok":
            continue
        s = r["stages"]
        e2e = s["end_to_end"]
        power = r.get("power") or {}
        watts = power.get("total_avg_mw")
        rows.append([
            r["model"], r["backend"], r["precision"], r["resolution"], r["mode"],
            _fmt(e2e["p50"]), _fmt(e2e["p90"]), _fmt(e2e["p99"]), _fmt(e2e["mean"]), _fmt(e2e["std"]),
            _fmt(r["fps"], 1), _fmt(s["preprocess"]["p50"]), _fmt(s["inference"]["p50"]),
            _fmt(s["postprocess"]["p50"]), _fmt(r["memory"]["peak_rss_mb"], 0),
            _fmt(watts / 1000 if watts is not None else None, 2), _fmt(power.get("energy_per_frame_mj"), 1),
            str(r.get("threads") or "-"),
            _fmt(stats.ratio(e2e["p50"], base) if r["mode"] == "inference" else None, 3),
            _quality_text(r),
        ])
    return rows


def skipped_rows(doc: Mapping[str, Any]) -> list[str]:
    return [f"{r['key']}: {r['reason']}" for r in doc["results"] if r["status"] == "skipped"]


def format_table(doc: Mapping[str, Any], include_skipped: bool = True) -> str:
    rows = table_rows(doc)
    lines = []
    if rows:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(TABLE_HEADER)]
        lines.append("  ".join(h.rjust(w) if i >= 5 else h.ljust(w) for i, (h, w) in enumerate(zip(TABLE_HEADER, widths))))
        for row in rows:
            lines.append("  ".join(c.rjust(w) if i >= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        lines.append("latencies in ms (host perf_counter; warm-up excluded); W / mJ/frame from tegrastats on Jetson; "
                     "ratio = e2e p50 / the first row's (cells timed interleaved); PSNR min = worst frame against "
                     "the model's fp32 cell")
    else:
        lines.append("no configuration ran")
    if include_skipped:
        for line in skipped_rows(doc):
            lines.append(f"skipped: {line}")
    return "\n".join(lines)


def format_markdown(doc: Mapping[str, Any]) -> str:
    env = doc["environment"]
    jetson = env.get("jetson") or {}
    where = jetson.get("module") or env.get("gpu", {}).get("name") or "no GPU"
    lines = [
        f"### sage-edge bench ({doc.get('created_utc', '')})",
        "",
        f"Machine: {where}; CPU {env['cpu']['model']} x{env['cpu']['cores']}; "
        f"onnxruntime {env['onnxruntime']['version']}"
        + (f"; L4T {jetson.get('l4t')}, nvpmodel {jetson.get('nvpmodel')}, jetson_clocks {jetson.get('jetson_clocks')}"
           if jetson else ""),
        f"Inputs: {doc['settings']['inputs']['source']} ({doc['settings']['inputs']['frames']} pairs); "
        f"warm-up {doc['settings']['warmup']}; latencies in ms.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "|".join("---" if i < 5 else "---:" for i in range(len(TABLE_HEADER))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(doc)]
    skipped = skipped_rows(doc)
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {s}" for s in skipped]
    for warning in env.get("warnings") or []:
        lines.append(f"\n> warning: {warning}")
    return "\n".join(lines) + "\n"


def write_text(path: str | os.PathLike, text: str) -> None:
    from sage_edge.atomic import write_bytes_atomic

    write_bytes_atomic(path, text.encode())


def plot(doc: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Latency distribution per configuration (box plot) and mean stage times (stacked bars), one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SageEdgeError("--plot needs matplotlib: pip install 'sage-edge[plot]'") from None
    from sage_edge.atomic import atomic_path

    ok = [r for r in doc["results"] if r["status"] == "ok"]
    if not ok:
        raise SageEdgeError("nothing to plot: no configuration ran")
    labels = [f"{r['model']}\n{r['backend']} {r['precision']} {r['resolution']}"
              + (" pipeline" if r["mode"] == "pipeline" else "") for r in ok]
    height = max(3.0, 0.9 * len(ok) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), sharey=True)
    positions = list(range(len(ok)))
    left.boxplot([r["samples_ms"]["end_to_end"] for r in ok], positions=positions, vert=False, whis=(1, 99),
                 showfliers=True, flierprops={"markersize": 2})
    left.scatter([r["stages"]["end_to_end"]["p99"] for r in ok], positions, marker="|", color="red", s=200,
                 label="p99", zorder=3)
    left.set_yticks(positions)
    left.set_yticklabels(labels, fontsize=8)
    left.set_xlabel("end-to-end latency per frame (ms)")
    left.set_title("Latency distribution (whiskers p1-p99)")
    left.legend(loc="lower right", fontsize=8)
    left.grid(axis="x", alpha=0.3)
    colours = {"preprocess": "#4c72b0", "h2d": "#dd8452", "inference": "#55a868", "d2h": "#c44e52",
               "postprocess": "#8172b3"}
    start = np.zeros(len(ok))
    for stage in BAR_STAGES:
        widths = np.array([r["stages"][stage]["mean"] for r in ok])
        right.barh(positions, widths, left=start, color=colours[stage], label=stage)
        start += widths
    right.set_xlabel("mean time per frame (ms)")
    right.set_title("Stages (mean)")
    right.legend(loc="lower right", fontsize=8)
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


COMPARE_METRICS = (
    ("e2e p50", lambda r: r["stages"]["end_to_end"]["p50"]),
    ("e2e p90", lambda r: r["stages"]["end_to_end"]["p90"]),
    ("e2e p99", lambda r: r["stages"]["end_to_end"]["p99"]),
    ("e2e mean", lambda r: r["stages"]["end_to_end"]["mean"]),
    ("infer p50", lambda r: r["stages"]["inference"]["p50"]),
    ("FPS", lambda r: r["fps"]),
    ("mJ/frame", lambda r: (r.get("power") or {}).get("energy_per_frame_mj")),
)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per configuration present (and run) in both: A, B and B/A for each metric."""
    a_ok = {r["key"]: r for r in a["results"] if r["status"] == "ok"}
    b_ok = {r["key"]: r for r in b["results"] if r["status"] == "ok"}
    common = [k for k in a_ok if k in b_ok]
    rows = []
    for key in common:
        row: dict[str, Any] = {"key": key, "metrics": {}}
        for name, getter in COMPARE_METRICS:
            va, vb = getter(a_ok[key]), getter(b_ok[key])
            row["metrics"][name] = {"a": va, "b": vb, "ratio": stats.ratio(vb, va)}
        rows.append(row)
    return rows


def format_compare(a: Mapping[str, Any], b: Mapping[str, Any], a_name: str = "A", b_name: str = "B") -> str:
    rows = compare(a, b)
    if not rows:
        raise SageEdgeError(
            f"{a_name} and {b_name} have no configuration in common (model | backend | precision | resolution | mode)"
        )

    def where(doc: Mapping[str, Any]) -> str:
        env = doc["environment"]
        return (env.get("jetson") or {}).get("module") or (env.get("gpu") or {}).get("name") or env["cpu"]["model"]

    lines = [f"A = {a_name} ({where(a)})", f"B = {b_name} ({where(b)})",
             "ratio = B / A (latency < 1: B is faster; FPS > 1: B is faster)", ""]
    for row in rows:
        lines.append(row["key"])
        for name, m in row["metrics"].items():
            if m["a"] is None and m["b"] is None:
                continue
            lines.append(f"  {name:<10} A {_fmt(m['a']):>9}  B {_fmt(m['b']):>9}  B/A {_fmt(m['ratio'], 3):>7}")
    only_a = sorted({r["key"] for r in a["results"] if r["status"] == "ok"} - {r["key"] for r in rows})
    only_b = sorted({r["key"] for r in b["results"] if r["status"] == "ok"} - {r["key"] for r in rows})
    for key in only_a:
        lines.append(f"only in A: {key}")
    for key in only_b:
        lines.append(f"only in B: {key}")
    return "\n".join(lines)


def estimate_text(models: Iterable[str], resolutions: Sequence[tuple[int, int]], module: str) -> str:
    """Roofline estimates (``sage_edge.roofline``) of each model's ONNX graph at each resolution."""
    from sage_edge import roofline
    from sage_edge.zoo import ZOO, resolve_model

    roofline.get_module(module)
    blocks = []
    for spec in models:
        path = resolve_model(spec, want="onnx") if spec in ZOO else resolve_model(spec)
        if path.suffix.lower() != ".onnx":
            raise SageEdgeError(f"--estimate counts an ONNX graph; {path.name} is not .onnx")
        for width, height in resolutions:
            blocks.append(roofline.format_estimate(roofline.estimate_model(path, width, height, module)))
    return "\n\n".join(blocks)
