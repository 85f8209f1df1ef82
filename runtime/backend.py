"""One interface for every inference engine, in the manner of Polygraphy's runners.

A backend loads one model and maps named input arrays to named output arrays.
It knows nothing about images or colour: ``Fuser`` does that, identically for
every backend. Backends are found by name in ``BACKENDS`` and imported lazily,
so a missing optional engine (TensorRT on a desktop, torch on a Jetson) only
matters when it is asked for.
"""
from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from sage_edge.errors import SageEdgeError


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output. ``shape`` holds ints, or strings/None for dynamic axes."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]


class Backend(ABC):
    """Load a model once, then ``infer`` many times. Use as a context manager to release resources."""

    name: str = "backend"

    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]: ...

    @property
    @abstractmethod
    def outputs(self) -> list[TensorSpec]: ...

    @abstractmethod
    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``feed`` maps every input name to a contiguous array of the input's dtype."""

    def close(self) -> None:
        """Release engine resources. Idempotent."""

    def describe(self) -> str:
        return self.name

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# name -> "module:class"; imported on first use.
BACKENDS: dict[str, str] = {
    "onnxruntime": "sage_edge.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "sage_edge.runtime.tensorrt_backend:TensorRTBackend",
    "torch": "sage_edge.models.torch_backend:TorchBackend",
    "openvino": "sage_edge.runtime.openvino_backend:OpenVinoBackend",
}

# Which backends can load which model files, best first, for --backend auto.
BACKENDS_BY_SUFFIX: dict[str, tuple[str, ...]] = {
    ".onnx": ("onnxruntime", "openvino"),  # auto: see choose_backend
    ".xml": ("openvino",),
    ".engine": ("tensorrt",),
    ".plan": ("tensorrt",),
    ".trt": ("tensorrt",),
    ".pt": ("torch",),
    ".pth": ("torch",),
    ".safetensors": ("torch",),
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise SageEdgeError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def available_backends() -> list[str]:
    """Backends whose engine imports on this machine."""
    found = []
    for name in BACKENDS:
        try:
            if backend_class(name).is_available():  # type: ignore[attr-defined]
                found.append(name)
        except Exception:  # an engine that fails to import is simply not available
            continue
    return found


def choose_backend(model_path: Path, requested: str = "auto") -> str:
    suffix = model_path.suffix.lower()
    if suffix not in BACKENDS_BY_SUFFIX:
        raise SageEdgeError(
            f"{model_path}: unknown model type '{suffix}'; use .onnx, .xml (OpenVINO), .engine, .pt/.pth or .safetensors"
        )
    if requested == "auto":
        if suffix == ".onnx" and not _made_for_onnxruntime(model_path):
            from sage_edge.runtime.cpu_tuning import auto_onnx_backend

            return auto_onnx_backend()  # OpenVINO only where it is installed and was measured faster here
        return BACKENDS_BY_SUFFIX[suffix][0]
    if requested not in BACKENDS_BY_SUFFIX[suffix]:
        raise SageEdgeError(
            f"{model_path}: the {requested} backend cannot run {suffix} models "
            f"(use {' or '.join(BACKENDS_BY_SUFFIX[suffix])}, or export the model first)"
        )
    return requested


def _made_for_onnxruntime(model_path: Path) -> bool:
    """A model ``quantize --target cpu`` wrote for ONNX Runtime (its metadata says so): auto keeps it there.

    Read without the onnx package (not on Jetson images): ONNX serializes ``metadata_props`` after the
    graph, so the metadata is in the file's last bytes.
    """
    try:
        with open(model_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (1 << 16)))
            return b"onnxruntime-cpu" in f.read()
    except OSError:
        return False


def frame_size(feed: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(height, width) of a feed: uint8 graphs take N x H x W x C, float graphs N x C x H x W."""
    first = next(iter(feed.values()))
    return (first.shape[1], first.shape[2]) if first.dtype == np.uint8 else (first.shape[2], first.shape[3])


def frame_too_small(model_path: object, feed: Mapping[str, np.ndarray], remedy: str) -> SageEdgeError:
    """The one line for a frame smaller than the graph's border padding mirrors (reflect needs pad < side)."""
    height, width = frame_size(feed)
    return SageEdgeError(f"{model_path}: a {width}x{height} frame is smaller than the border padding needs (more "
                         f"pixels per side than it mirrors); fuse larger frames, or {remedy}")


def open_backend(model_path: str | os.PathLike, backend: str = "auto", **options: object) -> Backend:
    """Open ``model_path`` with the named backend, or the natural one for its file type."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise SageEdgeError(f"{model_path}: no such model file")
    name = choose_backend(model_path, backend)
    return backend_class(name)(model_path, **options)
