"""sage-edge check-trt"""
from __future__ import annotations

from pathlib import Path

import click


@click.command("check-trt")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--trt", "trt", multiple=True, metavar="8.5|8.6|10|11",
              help="TensorRT version(s) to check against (repeatable or comma-separated; default: all).")
@click.pass_context
def check_trt(ctx: click.Context, model: Path, trt: tuple[str, ...]) -> None:
    """Check MODEL against the ONNX-parser rules of each TensorRT version, without TensorRT.

    The rules come from onnx-tensorrt's sources for that version (operator table, data types, the
    uint8 rule, opset range); see docs/tensorrt.md. Prints one line per violation and exits 1, or
    one OK line per version.
    """
    from sage_edge.export.trt_compat import check_trt as run_check
    from sage_edge.export.trt_compat import describe_rules, parse_versions

    versions = parse_versions(trt)
    report = run_check(model, versions)
    for violation in report.violations:
        click.echo(str(violation))
    for note in report.notes:
        click.echo(f"note: {note}")
    for version in versions:
        failing = report.failing(version)
        verdict = "OK" if not failing else f"{len(failing)} violation(s)"
        click.echo(f"TensorRT {version}: {verdict} ({describe_rules(version)})")
    if report.violations:
        ctx.exit(1)
