"""Optional dependencies: which pip extra brings a missing module, for one-line errors.

The base install (``pip install .``) is the torch-free runtime. A command that needs more imports it
lazily; when that import fails, ``missing_module_error`` turns the ``ModuleNotFoundError`` into one line
naming the extra to install (``pip install 'sage-edge[train]'``), instead of a 30-line traceback.
"""
from __future__ import annotations

from sage_edge.errors import SageEdgeError

# top-level module -> (what it is, the extra that installs it; None: not from pip)
OPTIONAL_MODULES: dict[str, tuple[str, str | None]] = {
    "torch": ("PyTorch", "export"),
    "torchvision": ("torchvision", "train"),
    "onnx": ("onnx", "export"),
    "onnxscript": ("onnxscript", "export"),
    "onnxslim": ("onnxslim", "export"),
    "safetensors": ("safetensors", "export"),
    "modelopt": ("NVIDIA ModelOpt", "quantize"),
    "onnx_graphsurgeon": ("onnx-graphsurgeon", "quantize"),
    "polygraphy": ("Polygraphy", "quantize"),
    "segment_anything": ("segment-anything", "train"),
    "matplotlib": ("matplotlib", "plot"),
    "PIL": ("Pillow", "train"),
    "scipy": ("scipy", "test"),
    "pycuda": ("pycuda", "jetson"),
    "tensorrt": ("TensorRT", None),
}

# The extra a command's users want, when it covers the missing module (train wants [train], not [export]).
COMMAND_EXTRAS: dict[str, str] = {
    "train": "train",
    "export": "export",
    "quantize": "quantize",
    "check-precision": "quantize",
    "build-engine": "quantize",
}

_EXTRA_CONTENTS = {
    "export": {"torch", "onnx", "onnxscript", "onnxslim", "safetensors"},
    "quantize": {"torch", "onnx", "onnxslim", "modelopt", "onnx_graphsurgeon", "polygraphy"},
    "train": {"torch", "torchvision", "segment_anything", "safetensors", "matplotlib", "PIL"},
    "plot": {"matplotlib"},
    "test": {"scipy", "matplotlib"},
    "jetson": {"pycuda"},
}


def missing_module_error(exc: ModuleNotFoundError, command: str | None = None) -> SageEdgeError | None:
    """One-line error for an optional module that is not installed; None when ``exc`` is not about one."""
    top = (exc.name or "").split(".")[0]
    if top not in OPTIONAL_MODULES:
        return None
    what, extra = OPTIONAL_MODULES[top]
    where = f"`sage-edge {command}`" if command else "this command"
    if extra is None:  # TensorRT: from JetPack, never from pip
        return SageEdgeError(f"{where} needs {what}, which is not installed: on a Jetson, "
                             "sudo apt install python3-libnvinfer (JetPack's TensorRT); see README, Jetson install")
    wanted = COMMAND_EXTRAS.get(command or "")
    if wanted is not None and top in _EXTRA_CONTENTS[wanted]:
        extra = wanted
    return SageEdgeError(f"{where} needs {what} ({top}), which is not installed: pip install 'sage-edge[{extra}]'")
