"""sage-edge train ..."""
from __future__ import annotations

import click


@click.group()
def train() -> None:
    """Train students (desktop GPU; runs on CPU at small sizes). Needs the [train] extra."""


@train.command("source")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset root (ir/+vis/).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--steps", default=3000, show_default=True)
@click.option("--batch-size", default=4, show_default=True)
@click.option("--seed", default=2, show_default=True)
@click.option("--threads", default=0, show_default=True, help="torch threads (0: default).")
def train_source_command(data: str, out: str, steps: int, batch_size: int, seed: int, threads: int) -> None:
    """Train the student on SAGE's source loss terms only (no teacher, no SAM)."""
    from sage_edge.train.source_training import SourceTrainConfig, train_source

    path = train_source(SourceTrainConfig(data=data, out=out, steps=steps, batch_size=batch_size, seed=seed,
                                          threads=threads))
    click.echo(f"wrote {path}")
