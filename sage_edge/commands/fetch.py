"""sage-edge fetch NAME"""
from __future__ import annotations

import click

from sage_edge import zoo
from sage_edge.atomic import check_writable_dir
from sage_edge.errors import SageEdgeError


@click.command()
@click.argument("name", default="sage-official")
@click.option("--url", help="Download from here instead (http(s):// or file://); the sha256 is still checked.")
@click.option("--force", is_flag=True, help="Download again even if a verified copy is cached.")
def fetch(name: str, url: str | None, force: bool) -> None:
    """Download a published model into the cache, pinned and sha256-verified.

    The cache is $SAGE_EDGE_CACHE, else $XDG_CACHE_HOME/sage-edge or ~/.cache/sage-edge. Offline, download
    the file on another machine and give it with --url file:///path/to/file.
    """
    models = zoo.cache_dir() / "models"
    try:
        check_writable_dir(models)
    except SageEdgeError:
        raise SageEdgeError(f"cannot write to the model cache {models}: set SAGE_EDGE_CACHE to a folder "
                            "you can write to") from None
    path = zoo.fetch(name, url=url, force=force)
    click.echo(f"{name}: {path} (sha256 verified)")
