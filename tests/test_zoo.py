"""Model zoo: pinned, verified downloads that leave nothing behind on failure."""
from __future__ import annotations

import pytest

from sage_edge import zoo
from sage_edge.errors import SageEdgeError


def test_fetch_verifies_and_resolves(official_in_cache, official_checkpoint):
    assert official_in_cache.is_file()
    assert zoo.sha256_of(official_in_cache) == zoo.ZOO["sage-official"].sha256
    assert zoo.resolve_model("sage-official") == official_in_cache
    # A second fetch is a verified cache hit (the source is not read again).
    assert zoo.fetch("sage-official", url="file:///nonexistent/checkpoints.pt", progress=False) == official_in_cache


def test_unfetched_name_says_how_to_fetch(isolated_cache):
    with pytest.raises(SageEdgeError, match="sage-edge fetch sage-official"):
        zoo.resolve_model("sage-official")


def test_corrupt_download_leaves_nothing(isolated_cache, tmp_path):
    corrupt = tmp_path / "checkpoints.pt"
    corrupt.write_bytes(b"not the published weights" * 100)
    with pytest.raises(SageEdgeError, match="corrupt"):
        zoo.fetch("sage-official", url=corrupt.as_uri(), progress=False)
    assert not isolated_cache.exists() or not any(isolated_cache.rglob("*"))or all(p.is_dir() for p in isolated_cache.rglob("*"))


def test_failed_download_leaves_nothing(isolated_cache, tmp_path):
    with pytest.raises(SageEdgeError, match="failed"):
        zoo.fetch("sage-official", url=(tmp_path / "missing.pt").as_uri(), progress=False)
    assert all(p.is_dir() for p in isolated_cache.rglob("*"))


def test_unknown_names_and_missing_paths():
    with pytest.raises(SageEdgeError, match="unknown model 'nope'"):
        zoo.resolve_model("nope")
    with pytest.raises(SageEdgeError, match="no such model file"):
        zoo.resolve_model("models/nope.onnx")
    with pytest.raises(SageEdgeError, match="unknown downloadable model"):
        zoo.fetch("default")


def test_fetch_cli(isolated_cache, official_checkpoint):
    from conftest import run_cli

    result = run_cli("fetch", "sage-official", "--url", official_checkpoint.resolve().as_uri(),
                     env={"SAGE_EDGE_CACHE": str(isolated_cache)})
    assert result.returncode == 0, result.stderr
    assert "sha256 verified" in result.stdout
