"""sage-edge check-precision"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.errors import SageEdgeError


@click.command("check-precision")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--calib", type=click.Path(path_type=Path), required=True,
              help="Calibration pairs (folder with ir/ and vis/, or a root of such folders).")
@click.option("--data", type=click.Path(path_type=Path),
              help="Evaluation pairs. Default: every other --calib pair is held back for evaluation.")
@click.option("--precision", "precisions", type=click.Choice(["fp16", "int8"]), multiple=True,
              help="What to check (repeatable). Default: both.")
@click.option("--int8-model", type=click.Path(path_type=Path),
              help="An existing Q/DQ model to evaluate (default: quantize MODEL on the calibration pairs).")
@click.option("--save-int8", type=click.Path(path_type=Path), help="Keep the Q/DQ model quantized here.")
@click.option("--method", type=click.Choice(["max", "entropy"]), default="max", show_default=True)
@click.option("--samples", type=int, default=32, show_default=True, help="Calibration crops.")
@click.option("--shape", "shape_text", default="640x480", show_default=True, metavar="WxH",
              help="Calibration crop, WIDTHxHEIGHT.")
@click.option("--eval-shape", "eval_shape_text", metavar="WxH",
              help="Centre-crop evaluation pairs to WIDTHxHEIGHT (default: full frames).")
@click.option("--eval-pairs", type=int, help="Evaluate at most N pairs.")
@click.option("--fp16-psnr", type=float, default=45.0, show_default=True, help="FP16 pass threshold (dB).")
@click.option("--int8-psnr", type=float, default=35.0, show_default=True, help="INT8 pass threshold (dB).")
@click.option("--underflow-fraction", type=float, default=0.05, show_default=True,
              help="List tensors with more than this fraction of non-zero values below FP16's normal range.")
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="Fusion-metric deltas per pair.")
def check_precision(model: Path, calib: Path, data: Path | None, precisions: tuple[str, ...],
                    int8_model: Path | None, save_int8: Path | None, method: str, samples: int, shape_text: str,
                    eval_shape_text: str | None, eval_pairs: int | None, fp16_psnr: float, int8_psnr: float,
                    underflow_fraction: float, metrics: bool) -> None:
    """Report on the CPU (ONNX Runtime) what FP16 and INT8 will do to MODEL, before building an engine.

    Exits 1 when a check fails (an FP16 overflow inside the network, or a PSNR below its threshold).
    """
    from sage_edge.commands.quantize import calibration_pairs
    from sage_edge.export.precision_check import check_precision as run_check
    from sage_edge.export.precision_check import split_pairs
    from sage_edge.export.quantize import parse_shape

    if save_int8 is not None:
        from sage_edge.atomic import check_writable

        check_writable(save_int8)
    calib_pairs = calibration_pairs(calib)
    if data is None:
        calib_pairs, held_back = split_pairs(calib_pairs)
    else:
        held_back = calibration_pairs(data)
    report = run_check(
        model, calib_pairs, held_back, precisions=precisions or ("fp16", "int8"), int8_model=int8_model,
        method=method, samples=samples, calib_shape=parse_shape(shape_text, "--shape"),
        eval_shape=parse_shape(eval_shape_text, "--eval-shape") if eval_shape_text else None,
        eval_limit=eval_pairs, fp16_psnr=fp16_psnr, int8_psnr=int8_psnr, underflow_fraction=underflow_fraction,
        metrics=metrics, keep_int8=save_int8,
    )
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SageEdgeError(f"precision check failed: {report.failure_summary()}")
    click.echo("precision check passed")
