"""sage_edge.runtime: run exported fusion models without torch (ONNX Runtime, TensorRT).

Nothing under this package may import torch: Jetson images ship without it.
"""
from sage_edge.runtime.backend import Backend, TensorSpec, available_backends, open_backend
from sage_edge.runtime.fuser import Fuser

__all__ = ["Backend", "TensorSpec", "Fuser", "open_backend", "available_backends"]
