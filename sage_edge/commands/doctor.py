"""sage-edge doctor"""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """One screen of facts: platform, Jetson/JetPack, CUDA, TensorRT, pycuda, ONNX Runtime, OpenCV, cameras.

    Each line is OK, missing or warning, with the fix after the arrow.
    """
    from sage_edge.doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
        return
    for check in checks:
        click.echo(check.line())
    problems = [c for c in checks if c.status in ("missing", "warning")]
    click.echo(f"{len(problems)} to look at" if problems else "all good")
