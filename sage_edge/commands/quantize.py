"""sage-edge quantize"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.atomic import check_writable
from sage_edge.errors import SageEdgeError


def calibration_pairs(calib: Path) -> list:
    """Every IR/visible pair under ``calib`` (a dataset folder, or a root of dataset folders)."""
    from sage_edge.pairs import find_datasets

    return [pair for pairs in find_datasets(calib).values() for pair in pairs]


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--calib", type=click.Path(path_type=Path), required=True,
              help="Calibration pairs: a folder with ir/ and vis/, or a root of such folders.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output Q/DQ .onnx file.")
@click.option("--method", type=click.Choice(["max", "entropy"]), default="max", show_default=True,
              help="Activation range calibration.")
@click.option("--samples", type=int, default=32, show_default=True, help="Calibration crops.")
@click.option("--shape", "shape_text", default="640x480", show_default=True, metavar="WxH",
              help="Calibration crop, WIDTHxHEIGHT: use the engine profile's opt shape (ignored for static models).")
@click.option("--high-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Precision of what is not quantized (fp16: faster TensorRT engines; fp32 runs anywhere).")
@click.option("--seed", type=int, default=0, show_default=True, help="Crop positions.")
def quantize(model: Path, calib: Path, output: Path, method: str, samples: int, shape_text: str,
             high_precision: str, seed: int) -> None:
    """INT8 post-training quantization (ModelOpt, explicit Q/DQ) of an FP32 sage-edge ONNX model.

    Only the network's Conv layers get Q/DQ; the colour maths and I/O casts of the uint8 graph
    stay in high precision. Build the result with `sage-edge build-engine OUT.onnx --int8`.
    """
    from sage_edge.export.quantize import parse_shape, quantize_onnx

    if not model.is_file():
        raise SageEdgeError(f"{model}: no such model file")
    if output.suffix.lower() != ".onnx":
        raise SageEdgeError(f"{output}: the output must end in .onnx")
    if output.resolve() == model.resolve():
        raise SageEdgeError(f"{output}: choose an output other than the input model")
    check_writable(output)
    shape = parse_shape(shape_text, "--shape")
    pairs = calibration_pairs(calib)
    report = quantize_onnx(model, output, pairs, method=method, samples=samples, calib_shape=shape,
                           high_precision=high_precision, seed=seed)
    h, w = report.calib_shape
    click.echo(f"wrote {report.path} (INT8 Q/DQ, io={report.io_kind}, {report.method} calibration on "
               f"{report.samples} crops of {w}x{h} from {len(pairs)} pairs)")
    click.echo(f"quantized: {len(report.quantized_nodes)} nodes ({report.qdq_pairs} Q/DQ pairs); "
               f"kept in {high_precision}: {report.excluded_nodes} colour-maths/cast nodes")
    converted = ("" if report.opset_conversion_diff is None else
                 f", converted down from ModelOpt's opset 19 (ONNX Runtime max abs diff "
                 f"{report.opset_conversion_diff:g})")
    click.echo(f"check-trt: opset {report.opset}{converted}; passes the ONNX parser rules of TensorRT "
               f"{', '.join(report.trt_versions)}")
    if high_precision == "fp16":
        click.echo("note: FP16 Q/DQ needs opset 19, which TensorRT 8.5/8.6 do not parse; there, build the "
                   "--high-precision fp32 model with `build-engine --int8 --fp16`")
