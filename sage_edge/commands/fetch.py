"""sage-edge fetch NAME"""
from __future__ import annotations

import click

from sage_edge import zoo


@click.command()
@click.argument("name", default="sage-official")
@click.option("--url", help="Download from here instead (http(s):// or file://); the sha256 is still checked.")
@click.option("--force", is_flag=True, help="Download again even if a verified copy is cached.")
def fetch(name: str, url: str | None, force: bool) -> None:
    """Download a published model into the cache, pinned and sha256-verified."""
    path = zoo.fetch(name, url=url, force=force)
    click.echo(f"{name}: {path} (sha256 verified)")
