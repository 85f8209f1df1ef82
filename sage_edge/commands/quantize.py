"""sage-edge quantize"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

import click

from sage_edge.atomic import check_writable
from sage_edge.errors import SageEdgeError


def calibration_pairs(calib: Path) -> list:
    """Every IR/visible pair under ``calib`` (a dataset folder, or a root of dataset folders)."""
    from sage_edge.pairs import find_datasets

    return [pair for pairs in find_datasets(calib).values() for pair in pairs]


@contextlib.contextmanager
def fp32_onnx(spec: str) -> Iterator[Path]:
    """The FP32 ONNX for ``spec``: a file, a zoo name's bundled ONNX, or a zoo name's weights exported here."""
    from sage_edge.zoo import ZOO, resolve_model

    if spec in ZOO and ZOO[spec].onnx_file is None:
        weights = resolve_model(spec, want="weights")  # one-line error when not fetched yet
        from sage_edge.export.onnx_export import export_onnx
        from sage_edge.models.checkpoint import load_student

        with tempfile.TemporaryDirectory(prefix="sage-edge-quantize-export-") as scratch:
            path = Path(scratch) / f"{spec}.onnx"
            export_onnx(load_student(weights), path, io_kind="uint8")
            yield path
        return
    path = resolve_model(spec, want="onnx") if spec in ZOO else Path(spec)
    if not path.is_file():
        raise SageEdgeError(f"{spec}: no such model file (or zoo name: default, sage-official)")
    if path.suffix.lower() != ".onnx":
        raise SageEdgeError(f"{path}: quantize takes an FP32 .onnx model or a zoo name (export weights first)")
    yield path


@click.command()
@click.argument("model")
@click.option("--calib", type=click.Path(path_type=Path), required=True,
              help="Calibration pairs: a folder with ir/ and vis/, or a root of such folders. Every other pair "
                   "is held back to check the result.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output model: .onnx (tensorrt, cpu) or .xml (openvino).")
@click.option("--target", type=click.Choice(["tensorrt", "cpu", "openvino"]), default="tensorrt", show_default=True,
              help="tensorrt: ModelOpt Q/DQ for build-engine; cpu: ONNX Runtime u8s8 (faster than FP32 on CPUs); "
                   "openvino: NNCF INT8 OpenVINO IR.")
@click.option("--method", type=click.Choice(["max", "entropy", "percentile", "nncf"]), default=None,
              help="Activation range calibration [default: max for tensorrt, nncf for cpu and openvino]. "
                   "cpu also takes ONNX Runtime's max, entropy, percentile.")
@click.option("--samples", type=int, default=32, show_default=True, help="Calibration crops.")
@click.option("--shape", "shape_text", default="640x480", show_default=True, metavar="WxH",
              help="Calibration and check crop, WIDTHxHEIGHT: use the engine profile's opt shape (ignored for static "
                   "models).")
@click.option("--min-psnr", type=float, default=35.0, show_default=True,
              help="Refuse to write a model whose PSNR against FP32 falls below this on any held-back pair.")
@click.option("--eval-pairs", type=int, default=8, show_default=True, help="Held-back pairs to check.")
@click.option("--high-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="tensorrt: precision of what is not quantized (fp16: faster engines; fp32 runs anywhere).")
@click.option("--seed", type=int, default=0, show_default=True, help="Crop positions.")
def quantize(model: str, calib: Path, output: Path, target: str, method: str | None, samples: int,
             shape_text: str, min_psnr: float, eval_pairs: int, high_precision: str, seed: int) -> None:
    """INT8 post-training quantization of an FP32 sage-edge model (file or zoo name), checked before it is written.

    Only the network is quantized; the colour maths and I/O casts of the uint8 graph stay in FP32.
    The result is compared with FP32 on held-back pairs and written only if every one reaches --min-psnr.
    Build a tensorrt result with `sage-edge build-engine OUT.onnx --int8`; run a cpu result with
    `--backend onnxruntime`, an openvino one with `--backend openvino`.
    """
    from sage_edge.export.quantize import parse_shape
    from sage_edge.export.quantize_gate import output_suffix, quantize_checked

    if output.suffix.lower() != output_suffix(target):
        raise SageEdgeError(f"{output}: --target {target} writes a {output_suffix(target)} file")
    if target != "tensorrt" and high_precision != "fp32":
        raise SageEdgeError("--high-precision applies to --target tensorrt only")
    check_writable(output)
    shape = parse_shape(shape_text, "--shape")
    pairs = calibration_pairs(calib)
    with fp32_onnx(model) as model_path:
        if output.resolve() == model_path.resolve():
            raise SageEdgeError(f"{output}: choose an output other than the input model")
        done = quantize_checked(model_path, output, pairs, target=target, min_psnr=min_psnr, method=method,
                                samples=samples, calib_shape=shape, eval_pairs=eval_pairs,
                                high_precision=high_precision, seed=seed)
    report, cmp = done.report, done.comparison
    h, w = report.calib_shape
    kind = {"tensorrt": "INT8 Q/DQ for TensorRT", "cpu": "INT8 u8s8 QDQ for ONNX Runtime CPU",
            "openvino": "INT8 OpenVINO IR (NNCF)"}[target]
    click.echo(f"wrote {report.path} ({kind}, io={report.io_kind}, {report.method} calibration on "
               f"{report.samples} crops of {w}x{h} from {done.calibration_pairs} pairs)")
    click.echo(f"quantized: {len(report.quantized_nodes)} nodes ({report.qdq_pairs} quantizers); kept in "
               f"{high_precision}: {report.excluded_nodes} colour-maths/cast nodes")
    click.echo(f"checked against FP32 on {len(cmp.pairs)} held-back pairs: PSNR min {cmp.min_psnr:.2f} dB "
               f"({done.worst.stem}), mean {cmp.mean_psnr:.2f} dB, max abs error {cmp.max_abs_error:.0f} levels "
               f"(floor {min_psnr:g} dB)")
    if target == "tensorrt":
        converted = ("" if report.opset_conversion_diff is None else
                     f", converted down from ModelOpt's opset 19 (ONNX Runtime max abs diff "
                     f"{report.opset_conversion_diff:g})")
        click.echo(f"check-trt: opset {report.opset}{converted}; passes the ONNX parser rules of TensorRT "
                   f"{', '.join(report.trt_versions)}")
        if high_precision == "fp16":
            click.echo("note: FP16 Q/DQ needs opset 19, which TensorRT 8.5/8.6 do not parse; there, build the "
                       "--high-precision fp32 model with `build-engine --int8 --fp16`")
