"""``sage-edge quantize`` for every target, with a quality floor: an INT8 model that does not hold is never written.

The calibration pairs are split (``precision_check.split_pairs``: every other pair, so each dataset lands in
both halves). The model is calibrated on one half and quantized into scratch space; its fused images are then
compared with the FP32 model's on the other half, the held-back pairs, through the runtime's ``Fuser``. Only
when the lowest PSNR over those pairs reaches the floor (default ``DEFAULT_MIN_PSNR``) is the model moved to
its destination; otherwise the command prints one line naming the worst pair and exits 1, leaving nothing.

Targets:
    tensorrt  ModelOpt explicit Q/DQ for ``build-engine`` (``export.quantize``); judged on ONNX Runtime's CPU
              provider, which runs the same Q/DQ arithmetic TensorRT fuses into INT8 kernels.
    cpu       ONNX Runtime u8s8 static QDQ (``export.quantize_cpu.quantize_ort_cpu``): faster than FP32 on CPUs.
    openvino  NNCF INT8 OpenVINO IR (``export.quantize_cpu.quantize_openvino``), judged on OpenVINO itself.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sage_edge.errors import SageEdgeError
from sage_edge.pairs import ImagePair

TARGETS = ("tensorrt", "cpu", "openvino")
DEFAULT_MIN_PSNR = 35.0
DEFAULT_EVAL_PAIRS = 8
# --method per target; None: the target's own default.
METHODS_BY_TARGET = {"tensorrt": ("max", "entropy"), "cpu": ("nncf", "max", "entropy", "percentile"),
                     "openvino": ("nncf",)}


@dataclass
class GatedQuantization:
    target: str
    report: "object"  # export.quantize.QuantizeReport
    comparison: "object"  # export.precision_check.Comparison over the held-back pairs
    calibration_pairs: int
    min_psnr: float

    @property
    def worst(self) -> "object":
        return min(self.comparison.pairs, key=lambda p: p.psnr)  # type: ignore[attr-defined]


def output_suffix(target: str) -> str:
    return ".xml" if target == "openvino" else ".onnx"


def _open_quantized(target: str, path: Path) -> "object":
    if target == "openvino":
        from sage_edge.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, precision="int8")
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path)


def quantize_checked(model_path: str | os.PathLike, output: str | os.PathLike, pairs: Sequence[ImagePair],
                     target: str = "tensorrt", min_psnr: float = DEFAULT_MIN_PSNR, method: str | None = None,
                     samples: int = 32, calib_shape: tuple[int, int] | None = None,
                     eval_pairs: int = DEFAULT_EVAL_PAIRS, high_precision: str = "fp32", seed: int = 0,
                     progress: bool = True) -> GatedQuantization:
    """Quantize ``model_path`` for ``target``, check it on held-back pairs, write ``output`` only if it holds."""
    from sage_edge.export.precision_check import compare_backends, load_eval_images, split_pairs
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    if target not in TARGETS:
        raise SageEdgeError(f"unknown --target '{target}'; use {', '.join(TARGETS)}")
    method = method or METHODS_BY_TARGET[target][0]
    if method not in METHODS_BY_TARGET[target]:
        raise SageEdgeError(f"--method {method} is not offered for --target {target} "
                            f"(use {' or '.join(METHODS_BY_TARGET[target])})")
    if eval_pairs < 1:
        raise SageEdgeError("--eval-pairs must be at least 1")
    model_path, output = Path(model_path), Path(output)
    if output.suffix.lower() != output_suffix(target):
        raise SageEdgeError(f"{output}: --target {target} writes a {output_suffix(target)} file")
    calib, held_back = split_pairs(pairs)
    with tempfile.TemporaryDirectory(prefix="sage-edge-quantize-gate-") as scratch:
        staged = Path(scratch) / f"model.int8{output_suffix(target)}"
        if target == "tensorrt":
            from sage_edge.export.quantize import quantize_onnx

            report = quantize_onnx(model_path, staged, calib, method=method, samples=samples,
                                   calib_shape=calib_shape, high_precision=high_precision, seed=seed,
                                   progress=progress)
        elif target == "cpu":
            from sage_edge.export.quantize_cpu import quantize_ort_cpu

            report = quantize_ort_cpu(model_path, staged, calib, method="minmax" if method == "max" else method,
                                      samples=samples, calib_shape=calib_shape, seed=seed, progress=progress)
        else:
            from sage_edge.export.quantize_cpu import quantize_openvino

            report = quantize_openvino(model_path, staged, calib, samples=samples, calib_shape=calib_shape,
                                       seed=seed, progress=progress)
        images = load_eval_images(held_back, shape=report.calib_shape, limit=eval_pairs)
        with OnnxRuntimeBackend(model_path) as reference, _open_quantized(target, staged) as quantized:
            comparison = compare_backends(reference, quantized, images, "INT8", min_psnr, metrics=False,
                                          progress=progress)
        result = GatedQuantization(target, report, comparison, len(calib), min_psnr)
        if not comparison.ok:
            worst = result.worst
            raise SageEdgeError(
                f"{model_path.name}: INT8 ({target}) reaches only {worst.psnr:.2f} dB PSNR against FP32 on the "
                f"held-back pair {worst.stem} (floor {min_psnr:g} dB; {len(comparison.failures)} of "
                f"{len(comparison.pairs)} pairs below); nothing written. Try more --samples, another --method "
                f"or --target, or keep this model in FP32/FP16 (--min-psnr lowers the floor)")
        _move_into_place(target, staged, output)
    report.path = output
    return result


def _move_into_place(target: str, staged: Path, output: Path) -> None:
    import shutil

    from sage_edge.atomic import atomic_path

    if target == "openvino":
        from sage_edge.export.quantize_cpu import copy_openvino_model

        copy_openvino_model(staged, output)
        return
    with atomic_path(output) as tmp:
        shutil.copyfile(staged, tmp)
