"""Named models: the bundled default and downloadable published weights.

``--model NAME`` accepts a zoo name or a file path. Downloads are cached under
``$SAGE_EDGE_CACHE`` (default: ``$XDG_CACHE_HOME/sage-edge`` or
``~/.cache/sage-edge``), pinned to a commit and verified by sha256; a failed or
corrupted download leaves nothing in the cache.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError

DOWNLOAD_CHUNK = 1 << 16


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    weights_file: str  # file name, in the package assets (bundled) or the cache (downloaded)
    onnx_file: str | None = None  # bundled ONNX, if any
    url: str | None = None  # None: bundled with the package
    sha256: str | None = None


ZOO: dict[str, ZooEntry] = {
    "default": ZooEntry(
        name="default",
        description="sage-edge's bundled student (see sage_edge/assets/MODEL_CARD.md)",
        weights_file="default.safetensors",
        onnx_file="default.onnx",
    ),
    "sage-official": ZooEntry(
        name="sage-official",
        description="the published SAGE student (CVPR 2025), RollingPlain/SAGE_IVIF @ 377fdbe",
        weights_file="sage-official.pt",
        url=(
            "https://github.com/RollingPlain/SAGE_IVIF/raw/377fdbef6b8b6ccbd1139358ad66bb41ea084dc1/"
            "checkpoints/checkpoints.pt"
        ),
        sha256="ecfde477ca4cd65401f207d5dc91ce6c475a49891d768dbdb7a66366255ee836",
    ),
}


def cache_dir() -> Path:
    if os.environ.get("SAGE_EDGE_CACHE"):
        return Path(os.environ["SAGE_EDGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sage-edge"


ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def asset_path(file_name: str) -> Path:
    # A plain path, not importlib.resources.files (Python 3.9+; JetPack 5.1's TensorRT needs Python 3.8).
    # sage-edge installs as files (setup.cfg package_data), never as a zip, so the path exists.
    return ASSETS_DIR / file_name


def _entry_path(entry: ZooEntry, file_name: str) -> Path:
    return asset_path(file_name) if entry.url is None else cache_dir() / "models" / file_name


def resolve_model(spec: str | os.PathLike, want: str = "any") -> Path:
    """A model file for ``spec`` (zoo name or path).

    want: "any" (ONNX when the zoo has one, else weights), "onnx", or "weights" (.pt/.safetensors, for export).
    """
    spec_str = str(spec)
    if spec_str in ZOO:
        entry = ZOO[spec_str]
        if want in ("any", "onnx") and entry.onnx_file:
            path = _entry_path(entry, entry.onnx_file)
        elif want == "onnx":
            raise SageEdgeError(f"model '{spec_str}' has no bundled ONNX; export it with "
                                f"`sage-edge export --model {spec_str} -o {spec_str}.onnx`, then use --model {spec_str}.onnx")
        else:
            path = _entry_path(entry, entry.weights_file)
        if not path.is_file():
            if entry.url is not None:
                raise SageEdgeError(f"model '{spec_str}' is not downloaded yet: run `sage-edge fetch {spec_str}`")
            raise SageEdgeError(f"bundled model file {path} is missing: reinstall sage-edge")
        return path
    path = Path(spec_str).expanduser()
    if path.is_file():
        return path
    if path.suffix or os.sep in spec_str:
        raise SageEdgeError(f"{spec_str}: no such model file")
    raise SageEdgeError(f"unknown model '{spec_str}': not a file, and not one of {', '.join(ZOO)}")


def resolve_model_for_backend(spec: str | os.PathLike, backend: str) -> Path:
    """The model file a backend can run: zoo names give weights for torch, ONNX otherwise."""
    return resolve_model(spec, want="weights" if backend == "torch" else "any")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, url: str | None = None, force: bool = False, progress: bool = True) -> Path:
    """Download a zoo model into the cache (verified), returning its path. Idempotent."""
    if name not in ZOO or ZOO[name].url is None:
        downloadable = [n for n, e in ZOO.items() if e.url]
        raise SageEdgeError(f"unknown downloadable model '{name}'; choose from {', '.join(downloadable)}")
    entry = ZOO[name]
    target = _entry_path(entry, entry.weights_file)
    if target.is_file() and not force and sha256_of(target) == entry.sha256:
        return target
    source = url or entry.url
    from tqdm import tqdm

    with atomic_path(target) as tmp:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(source, timeout=60) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {name}", disable=not progress) as bar:
                    for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SageEdgeError(
                f"download of '{name}' from {source} failed: {reason}; offline? download {entry.url} on a "
                f"connected machine, then run `sage-edge fetch {name} --url file:///path/to/{Path(entry.url).name}` "
                f"(or copy it to {target} and run `sage-edge fetch {name}` to verify it)"
            ) from None
        if digest.hexdigest() != entry.sha256:
            raise SageEdgeError(
                f"download of '{name}' from {source} is corrupt: sha256 {digest.hexdigest()[:16]}..., "
                f"expected {entry.sha256[:16]}...; nothing was cached"
            )
    return target
