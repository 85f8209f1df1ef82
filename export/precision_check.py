"""What reduced precision will do to a model, measured on the CPU with ONNX Runtime before any engine is built.

FP16 (``fp16_range_scan`` + ``compare_models``)
    Every intermediate float tensor is exposed as a graph output and run on the
    calibration pairs. A tensor is listed when a value exceeds FP16's largest finite
    value (65504: it becomes inf in TensorRT) or when a notable fraction of its non-zero
    values lies below FP16's smallest normal (6.1e-5: precision is lost, then flushed to
    zero). The FP16 model itself (ModelOpt AutoCast, as ``export --fp16`` writes it) is
    then compared with FP32 on held-back pairs.
INT8 (``compare_models``)
    The Q/DQ model's fused images against FP32's, per pair: PSNR, max abs error (levels)
    and the change of every fusion metric (``sage_edge.metrics.compute_metrics``).

Images are fused by the runtime's ``Fuser`` over ``OnnxRuntimeBackend``: the same path
the product uses, for both the uint8 and the float graphs.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.pairs import ImagePair

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0 ** -14  # 6.103515625e-05
DEFAULT_FP16_PSNR = 45.0
DEFAULT_INT8_PSNR = 35.0
DEFAULT_UNDERFLOW_FRACTION = 0.05


@dataclass
class TensorRange:
    name: str
    op_type: str
    node: str
    max_abs: float = 0.0
    nonzero: int = 0
    subnormal: int = 0  # non-zero values with |x| < FP16_MIN_NORMAL
    in_network: bool = True  # False: colour maths / casts, which export --fp16 and build-engine keep in FP32

    @property
    def overflow(self) -> bool:
        return self.max_abs > FP16_MAX

    @property
    def subnormal_fraction(self) -> float:
        return self.subnormal / self.nonzero if self.nonzero else 0.0


@dataclass
class Fp16Scan:
    tensors: list[TensorRange]
    samples: int
    underflow_fraction: float

    @property
    def overflows(self) -> list[TensorRange]:
        """Tensors that would run in FP16 and overflow it: the failures."""
        return [t for t in self.tensors if t.overflow and t.in_network]

    @property
    def kept_fp32(self) -> list[TensorRange]:
        """Tensors beyond FP16's range outside the network (colour maths), which stay FP32."""
        return [t for t in self.tensors if t.overflow and not t.in_network]

    @property
    def underflows(self) -> list[TensorRange]:
        return [t for t in self.tensors
                if t.in_network and t.nonzero and t.subnormal_fraction > self.underflow_fraction]

    @property
    def ok(self) -> bool:
        return not self.overflows


@dataclass
class PairComparison:
    stem: str
    psnr: float
    max_abs_error: float
    metric_deltas: dict[str, float] = field(default_factory=dict)


@dataclass
class Comparison:
    precision: str
    threshold_psnr: float
    pairs: list[PairComparison]

    @property
    def min_psnr(self) -> float:
        return min(p.psnr for p in self.pairs)

    @property
    def mean_psnr(self) -> float:
        finite = [p.psnr for p in self.pairs if math.isfinite(p.psnr)]
        return float(np.mean(finite)) if finite else math.inf

    @property
    def max_abs_error(self) -> float:
        return max(p.max_abs_error for p in self.pairs)

    @property
    def failures(self) -> list[PairComparison]:
        return [p for p in self.pairs if p.psnr < self.threshold_psnr]

    @property
    def ok(self) -> bool:
        return not self.failures

    def mean_metric_deltas(self) -> dict[str, float]:
        names = [n for p in self.pairs for n in p.metric_deltas]
        names = list(dict.fromkeys(names))
        return {n: float(np.mean([p.metric_deltas[n] for p in self.pairs if n in p.metric_deltas])) for n in names}


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of ``test`` against ``reference`` (uint8 images); +inf when identical."""
    diff = reference.astype(np.float64) - test.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def split_pairs(pairs: Sequence[ImagePair]) -> tuple[list[ImagePair], list[ImagePair]]:
    """(calibration, held-back evaluation): every other pair, so each dataset lands in both halves."""
    pairs = list(pairs)
    if len(pairs) < 2:
        raise SageEdgeError("need at least 2 pairs to calibrate on some and evaluate on others (or pass --data)")
    return pairs[0::2], pairs[1::2]


def _exposed_model(model: "object") -> tuple["object", dict[str, tuple[str, str]]]:
    """A copy of the model with every intermediate float tensor as an output; {tensor: (op_type, node)}."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
    existing = {o.name for o in inferred.graph.output}
    producers: dict[str, tuple[str, str]] = {}
    for node in inferred.graph.node:
        for out in node.output:
            if not out:
                continue
            elem = types.get(out)
            if out in existing:
                producers[out] = (node.op_type, node.name)
                continue
            if elem in float_types:
                inferred.graph.output.append(onnx.helper.make_tensor_value_info(out, elem, None))
                producers[out] = (node.op_type, node.name)
    return inferred, producers


def fp16_range_scan(model_path: str | os.PathLike, feeds: Sequence[dict[str, np.ndarray]],
                    underflow_fraction: float = DEFAULT_UNDERFLOW_FRACTION, progress: bool = True) -> Fp16Scan:
    """Run the FP32 model on ``feeds`` with every intermediate tensor exposed; collect value ranges."""
    import onnx
    import onnxruntime as ort
    from tqdm import tqdm

    model = onnx.load(str(model_path))
    exposed, producers = _exposed_model(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # No graph optimisation: fused nodes would hide the tensors we want to see.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    from sage_edge.export.quantize import nodes_outside_network

    outside = set(nodes_outside_network(model))
    ranges = {n: TensorRange(n, *producers.get(n, ("", ""))) for n in names}
    for r in ranges.values():
        r.in_network = r.node not in outside
    for feed in tqdm(feeds, desc="FP16 range scan", unit="pair", disable=not progress):
        for name, value in zip(names, session.run(names, feed)):
            if not np.issubdtype(value.dtype, np.floating) or value.size == 0:
                continue
            a = np.abs(value)
            r = ranges[name]
            peak = float(np.nanmax(a)) if a.size else 0.0  # inf counts: it is an overflow already
            if not math.isnan(peak):
                r.max_abs = max(r.max_abs, peak)
            r.nonzero += int(np.count_nonzero(a))
            r.subnormal += int(np.count_nonzero((a > 0) & (a < FP16_MIN_NORMAL)))
    tensors = [r for r in ranges.values() if r.nonzero or r.max_abs]
    return Fp16Scan(tensors=tensors, samples=len(feeds), underflow_fraction=underflow_fraction)


def _load_metrics() -> Callable[..., dict[str, float]] | None:
    try:
        from sage_edge.metrics import compute_metrics
    except ImportError:
        return None
    return compute_metrics


def compare_models(reference_path: str | os.PathLike, test_path: str | os.PathLike,
                   images: Sequence[tuple[str, np.ndarray, np.ndarray]], precision: str, threshold_psnr: float,
                   metrics: bool = True, progress: bool = True) -> Comparison:
    """Fuse each (stem, ir, vis) with both models through ``Fuser``; PSNR, max abs error, metric deltas."""
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(reference_path) as ref_backend, OnnxRuntimeBackend(test_path) as test_backend:
        return compare_backends(ref_backend, test_backend, images, precision, threshold_psnr, metrics, progress)


def compare_backends(ref_backend: "object", test_backend: "object",
                     images: Sequence[tuple[str, np.ndarray, np.ndarray]], precision: str, threshold_psnr: float,
                     metrics: bool = True, progress: bool = True) -> Comparison:
    """Like ``compare_models`` for two open backends (e.g. a TensorRT engine against FP32 ONNX Runtime)."""
    from tqdm import tqdm

    from sage_edge.runtime.fuser import Fuser

    compute = _load_metrics() if metrics else None
    results = []
    ref, test = Fuser(ref_backend), Fuser(test_backend)  # type: ignore[arg-type]
    for stem, ir, vis in tqdm(images, desc=f"{precision} vs FP32", unit="pair", disable=not progress):
        fused_ref, fused_test = ref.fuse(ir, vis), test.fuse(ir, vis)
        deltas: dict[str, float] = {}
        if compute is not None:
            m_ref, m_test = compute(ir, vis, fused_ref), compute(ir, vis, fused_test)
            deltas = {k: float(m_test[k] - m_ref[k]) for k in m_ref if k in m_test}
        err = float(np.abs(fused_ref.astype(np.int16) - fused_test.astype(np.int16)).max())
        results.append(PairComparison(stem, psnr(fused_ref, fused_test), err, deltas))
    if not results:
        raise SageEdgeError("no evaluation pairs")
    return Comparison(precision, threshold_psnr, results)


def load_eval_images(pairs: Sequence[ImagePair], shape: tuple[int, int] | None = None,
                     limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, ir, vis) of each pair, centre-cropped to ``shape`` when given (full frames otherwise)."""
    from sage_edge.export.quantize import crop_to, load_pair_images

    out = []
    for pair in list(pairs)[:limit]:
        ir, vis = load_pair_images(pair)
        if shape is not None:
            ir, vis = crop_to(ir, vis, shape)
        out.append((pair.stem, ir, vis))
    return out


def scan_feeds(model_path: str | os.PathLike, images: Sequence[tuple[str, np.ndarray, np.ndarray]]
               ) -> list[dict[str, np.ndarray]]:
    """Model inputs for each image pair, in the model's own layout."""
    import onnx

    from sage_edge.export.onnx_export import feed_for
    from sage_edge.export.quantize import model_io_kind

    kind = model_io_kind(onnx.load(str(model_path), load_external_data=False))
    return [feed_for(kind, ir, vis) for _, ir, vis in images]


def format_fp16_scan(scan: Fp16Scan, limit: int = 20) -> list[str]:
    lines = [f"FP16 range scan: {len(scan.tensors)} tensors on {scan.samples} pairs"]
    if scan.overflows:
        lines.append(f"  OVERFLOW (|x| > {FP16_MAX:g}, inf in FP16): {len(scan.overflows)} tensors")
        for t in sorted(scan.overflows, key=lambda t: -t.max_abs)[:limit]:
            lines.append(f"    {t.name}  ({t.op_type} {t.node})  max |x| {t.max_abs:.4g}")
    else:
        worst = max((t for t in scan.tensors if t.in_network), key=lambda t: t.max_abs, default=None)
        if worst is not None:
            lines.append(f"  no overflow in the network: largest |x| {worst.max_abs:.4g} in {worst.name} "
                         f"({worst.op_type})")
    if scan.kept_fp32:
        lines.append(f"  {len(scan.kept_fp32)} colour-maths tensors exceed FP16 (largest |x| "
                     f"{max(t.max_abs for t in scan.kept_fp32):.4g}): kept in FP32 by export --fp16 and build-engine")
    if scan.underflows:
        lines.append(f"  underflow (> {scan.underflow_fraction:.0%} of non-zero values below the FP16 normal "
                     f"range {FP16_MIN_NORMAL:.3g}): {len(scan.underflows)} tensors")
        for t in sorted(scan.underflows, key=lambda t: -t.subnormal_fraction)[:limit]:
            lines.append(f"    {t.name}  ({t.op_type} {t.node})  {t.subnormal_fraction:.1%} subnormal")
    else:
        lines.append("  no notable underflow")
    return lines


def format_comparison(cmp: Comparison, what: str = "held-back pairs", metric_names: Sequence[str] = ("EN", "SD", "SF", "AG", "MI", "VIF", "Qabf",
                                                                      "SSIM")) -> list[str]:
    lines = [f"{cmp.precision} vs FP32 on {len(cmp.pairs)} {what} (threshold PSNR >= {cmp.threshold_psnr:g} dB)"]
    shown = [n for n in metric_names if any(n in p.metric_deltas for p in cmp.pairs)]
    header = f"  {'pair':<24} {'PSNR dB':>8} {'max err':>8}" + "".join(f" {'d' + n:>8}" for n in shown)
    lines.append(header)
    for p in cmp.pairs:
        row = f"  {p.stem[:24]:<24} {p.psnr:>8.2f} {p.max_abs_error:>8.0f}"
        row += "".join(f" {p.metric_deltas.get(n, float('nan')):>8.4f}" for n in shown)
        lines.append(row + ("" if p.psnr >= cmp.threshold_psnr else "  FAIL"))
    lines.append(f"  min PSNR {cmp.min_psnr:.2f} dB, mean {cmp.mean_psnr:.2f} dB, max abs error "
                 f"{cmp.max_abs_error:.0f} levels: {'PASS' if cmp.ok else 'FAIL'}")
    return lines


@dataclass
class PrecisionReport:
    fp16_scan: Fp16Scan | None = None
    fp16: Comparison | None = None
    int8: Comparison | None = None
    int8_model: Path | None = None

    @property
    def ok(self) -> bool:
        parts = [self.fp16_scan, self.fp16, self.int8]
        return all(p.ok for p in parts if p is not None)

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.fp16_scan is not None:
            out += format_fp16_scan(self.fp16_scan)
        if self.fp16 is not None:
            out += format_comparison(self.fp16)
        if self.int8 is not None:
            if self.int8_model is not None:
                out.append(f"INT8 Q/DQ model: {self.int8_model}")
            out += format_comparison(self.int8)
        return out

    def failure_summary(self) -> str:
        reasons = []
        if self.fp16_scan is not None and not self.fp16_scan.ok:
            reasons.append(f"{len(self.fp16_scan.overflows)} tensors overflow FP16")
        for cmp in (self.fp16, self.int8):
            if cmp is not None and not cmp.ok:
                reasons.append(f"{cmp.precision} PSNR {cmp.min_psnr:.2f} dB < {cmp.threshold_psnr:g} dB "
                               f"on {len(cmp.failures)} of {len(cmp.pairs)} pairs")
        return "; ".join(reasons)


def check_precision(model_path: str | os.PathLike, calib_pairs: Sequence[ImagePair],
                    eval_pairs: Sequence[ImagePair], precisions: Sequence[str] = ("fp16", "int8"),
                    int8_model: str | os.PathLike | None = None, method: str = "max", samples: int = 32,
                    calib_shape: tuple[int, int] | None = None, eval_shape: tuple[int, int] | None = None,
                    eval_limit: int | None = None, fp16_psnr: float = DEFAULT_FP16_PSNR,
                    int8_psnr: float = DEFAULT_INT8_PSNR, underflow_fraction: float = DEFAULT_UNDERFLOW_FRACTION,
                    metrics: bool = True, keep_int8: str | os.PathLike | None = None,
                    progress: bool = True) -> PrecisionReport:
    """The whole report. The INT8 model is ``int8_model`` or quantized here from ``calib_pairs``."""
    import tempfile

    from sage_edge.export.quantize import DEFAULT_CALIB_SHAPE, crop_to, is_qdq_model, load_pair_images

    model_path = Path(model_path)
    if not model_path.is_file():
        raise SageEdgeError(f"{model_path}: no such model file")
    if model_path.suffix.lower() != ".onnx":
        raise SageEdgeError(f"{model_path}: check-precision needs the FP32 .onnx model")
    if is_qdq_model(model_path):
        raise SageEdgeError(f"{model_path}: this is a Q/DQ model; pass the FP32 model (and this one as --int8-model)")
    report = PrecisionReport()
    images = load_eval_images(eval_pairs, eval_shape, eval_limit)
    with tempfile.TemporaryDirectory(prefix="sage-edge-precision-") as scratch:
        if "fp16" in precisions:
            import onnx

            from sage_edge.export.fp16 import convert_model_fp16

            rng = np.random.default_rng(0)
            shape = calib_shape or DEFAULT_CALIB_SHAPE
            scan_images = []
            for pair in list(calib_pairs)[: max(1, min(samples, len(calib_pairs)))]:
                scan_images.append((pair.stem, *crop_to(*load_pair_images(pair), shape, rng)))
            report.fp16_scan = fp16_range_scan(model_path, scan_feeds(model_path, scan_images),
                                               underflow_fraction, progress)
            fp16_path = Path(scratch) / "model.fp16.onnx"
            onnx.save(convert_model_fp16(model_path, calib_pairs, shape), str(fp16_path))
            report.fp16 = compare_models(model_path, fp16_path, images, "FP16", fp16_psnr, metrics, progress)
        if "int8" in precisions:
            if int8_model is None:
                from sage_edge.export.quantize import quantize_onnx

                target = Path(keep_int8) if keep_int8 else Path(scratch) / "model.qdq.onnx"
                quantize_onnx(model_path, target, calib_pairs, method=method, samples=samples,
                              calib_shape=calib_shape, progress=progress)
                int8_model = target
                report.int8_model = Path(keep_int8) if keep_int8 else None
            else:
                int8_model = Path(int8_model)
                if not int8_model.is_file():
                    raise SageEdgeError(f"{int8_model}: no such model file")
                report.int8_model = int8_model
            report.int8 = compare_models(model_path, int8_model, images, "INT8", int8_psnr, metrics, progress)
    return report


# ``verify``: an engine or model against the FP32 ONNX Runtime reference, at per-precision tolerances.
VERIFY_TOLERANCES = {  # precision: (min PSNR dB, max abs error in levels or None)
    "fp32": (50.0, 4),
    "fp16": (DEFAULT_FP16_PSNR, 24),
    "int8": (DEFAULT_INT8_PSNR, None),
    "int8+fp16": (DEFAULT_INT8_PSNR, None),
}


@dataclass
class VerifyReport:
    model: Path
    reference: Path
    precision: str
    comparison: Comparison
    max_abs_limit: float | None

    @property
    def ok(self) -> bool:
        return self.comparison.ok and (self.max_abs_limit is None or
                                       self.comparison.max_abs_error <= self.max_abs_limit)

    def lines(self) -> list[str]:
        out = [f"verify {self.model} ({self.precision}) against FP32 ONNX Runtime {self.reference}"]
        out += format_comparison(self.comparison, "pairs")
        if self.max_abs_limit is not None:
            out.append(f"  max abs error {self.comparison.max_abs_error:.0f} (limit {self.max_abs_limit:g}): "
                       f"{'PASS' if self.comparison.max_abs_error <= self.max_abs_limit else 'FAIL'}")
        return out


def model_precision(model: Path, sidecar: dict | None) -> str:
    """The precision a model or engine runs at: the engine sidecar's, or read from the ONNX."""
    if sidecar and sidecar.get("precision"):
        return str(sidecar["precision"])
    if model.suffix.lower() == ".onnx":
        from sage_edge.export.fp16 import is_fp16_model
        from sage_edge.export.quantize import is_qdq_model

        if is_qdq_model(model):
            return "int8"
        if is_fp16_model(model):
            return "fp16"
    return "fp32"


def verify(model: str | os.PathLike, pairs: Sequence[ImagePair], reference: str | os.PathLike | None = None,
           backend: str = "auto", min_psnr: float | None = None, max_abs_error: float | None = None,
           eval_shape: tuple[int, int] | None = None, limit: int | None = None, metrics: bool = True,
           progress: bool = True) -> VerifyReport:
    """Run ``model`` (engine or ONNX) on real pairs and compare with the FP32 ONNX Runtime reference."""
    from sage_edge.runtime.backend import open_backend
    from sage_edge.runtime.engine_sidecar import read_sidecar
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    model = Path(model)
    if not model.is_file():
        raise SageEdgeError(f"{model}: no such model file")
    sidecar = read_sidecar(model) if model.suffix.lower() in (".engine", ".plan", ".trt") else None
    if reference is None:
        source = ((sidecar or {}).get("onnx") or {}).get("path")
        if source and Path(source).is_file() and model.suffix.lower() != ".onnx":
            reference = source
        else:
            raise SageEdgeError(f"{model}: give the FP32 ONNX model to compare with: --reference MODEL.onnx")
    reference = Path(reference)
    if not reference.is_file():
        raise SageEdgeError(f"{reference}: no such reference model")
    from sage_edge.export.quantize import is_qdq_model

    if is_qdq_model(reference):
        raise SageEdgeError(f"{reference}: the reference must be the FP32 ONNX, not a Q/DQ model")
    precision = model_precision(model, sidecar)
    default_psnr, default_abs = VERIFY_TOLERANCES.get(precision, VERIFY_TOLERANCES["fp32"])
    psnr_limit = default_psnr if min_psnr is None else min_psnr
    abs_limit = default_abs if max_abs_error is None else max_abs_error
    images = load_eval_images(pairs, eval_shape, limit)
    with OnnxRuntimeBackend(reference) as ref_backend, open_backend(model, backend) as test_backend:
        comparison = compare_backends(ref_backend, test_backend, images, precision.upper(), psnr_limit, metrics,
                                      progress)
    return VerifyReport(model, reference, precision, comparison, abs_limit)
