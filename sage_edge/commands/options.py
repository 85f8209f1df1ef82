"""Options shared by several commands, defined once."""
from __future__ import annotations

import click

from sage_edge.io_contract import DEFAULT_BORDER_PAD
from sage_edge.runtime.backend import BACKENDS

model_option = click.option(
    "--model", "-m", "model", default="default", show_default=True,
    help="Zoo name (default, sage-official) or a model file: .onnx, .engine, .pt/.pth, .safetensors.",
)
backend_option = click.option(
    "--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True,
    help="Inference engine; auto picks by model file type.",
)

BORDER_PAD_HELP = ("Pixels mirrored around the image before the network and cropped after it, so that no dark or "
                   "bright ring lines the borders; 0 turns it off.")
border_pad_option = click.option(
    "--border-pad", type=click.IntRange(min=0), default=None, metavar="PIXELS",
    help=BORDER_PAD_HELP + f" [default: the model's own: {DEFAULT_BORDER_PAD} for .pt/.safetensors and sage-edge "
    "ONNX exports; a TensorRT engine's is fixed when it is built]",
)
