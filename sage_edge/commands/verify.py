"""sage-edge verify"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.commands.options import backend_option
from sage_edge.errors import SageEdgeError


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Real pairs: a folder with ir/ and vis/, or a root of such folders.")
@click.option("--reference", type=click.Path(path_type=Path),
              help="FP32 ONNX reference (default for an engine: the ONNX named in its .json sidecar).")
@backend_option
@click.option("--psnr", "min_psnr", type=float,
              help="Pass threshold in dB (default by precision: FP32 50, FP16 45, INT8 35).")
@click.option("--max-abs-error", type=float, help="Largest allowed error in levels (default by precision).")
@click.option("--pairs", "limit", type=int, help="Use at most N pairs.")
@click.option("--eval-shape", "eval_shape_text", metavar="WxH",
              help="Centre-crop pairs to WIDTHxHEIGHT (default: full frames).")
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="Fusion-metric deltas per pair.")
def verify(model: Path, data: Path, reference: Path | None, backend: str, min_psnr: float | None,
           max_abs_error: float | None, limit: int | None, eval_shape_text: str | None, metrics: bool) -> None:
    """Check an engine (or ONNX model) against the FP32 ONNX Runtime reference on real pairs.

    Run it right after `sage-edge build-engine`. Exits 1 when a tolerance is not met.
    """
    from sage_edge.commands.quantize import calibration_pairs
    from sage_edge.export.precision_check import verify as run_verify
    from sage_edge.export.quantize import parse_shape

    report = run_verify(model, calibration_pairs(data), reference=reference, backend=backend, min_psnr=min_psnr,
                        max_abs_error=max_abs_error, limit=limit, metrics=metrics,
                        eval_shape=parse_shape(eval_shape_text, "--eval-shape") if eval_shape_text else None)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        c = report.comparison
        raise SageEdgeError(f"verify failed: {model} ({report.precision}) min PSNR {c.min_psnr:.2f} dB "
                            f"(threshold {c.threshold_psnr:g}), max abs error {c.max_abs_error:.0f}"
                            + (f" (limit {report.max_abs_limit:g})" if report.max_abs_limit is not None else ""))
    click.echo("verify passed")
