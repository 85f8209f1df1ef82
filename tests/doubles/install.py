"""Put the TensorRT / pycuda TEST DOUBLES into sys.modules (used by the tests' ``doubles`` fixtures)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def load(name: str) -> ModuleType:
    """Import ``tests/doubles/<name>.py`` as ``sage_edge_double_<name>`` (a plain folder, not a package)."""
    module_name = f"sage_edge_double_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[module_name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def install(monkeypatch: Any, version: str, gpu: dict[str, Any] | None = None, **trt_options: Any
            ) -> tuple[ModuleType, ModuleType]:
    """(fake tensorrt, fake pycuda.driver) installed for one test via ``monkeypatch``."""
    fake_pycuda = load("fake_pycuda")
    fake_pycuda.reset(**(gpu or {}))
    trt = load("fake_tensorrt").make(version, **trt_options)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, module in fake_pycuda.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    return trt, fake_pycuda
