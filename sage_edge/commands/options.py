"""Options shared by several commands, defined once."""
from __future__ import annotations

import click

from sage_edge.runtime.backend import BACKENDS

model_option = click.option(
    "--model", "-m", "model", default="default", show_default=True,
    help="Zoo name (default, sage-official) or a model file: .onnx, .engine, .pt/.pth, .safetensors.",
)
backend_option = click.option(
    "--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True,
    help="Inference engine; auto picks by model file type.",
)
