"""The ``.json`` sidecar beside every TensorRT engine: what it was built with, and whether it can run here.

TensorRT engines are not portable across GPUs or TensorRT versions. An engine built
elsewhere either fails to deserialize with a cryptic error or, worse, runs with tactics
chosen for another GPU. ``build-engine`` writes ``OUT.engine.json`` beside ``OUT.engine``;
the TensorRT backend reads it and refuses a mismatch with one line saying how to rebuild.

No torch, no TensorRT, no CUDA here: plain JSON, usable by ``doctor`` and ``bench`` too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from sage_edge.atomic import write_bytes_atomic
from sage_edge.errors import SageEdgeError

FORMAT = "sage-edge-engine/1"


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    path = sidecar_path(engine_path)
    data = {"format": FORMAT, **record}
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())
    return path


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of ``engine_path``, None when there is none; one-line error when it is unreadable."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SageEdgeError(f"{path}: unreadable engine sidecar ({type(exc).__name__}); rebuild the engine") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SageEdgeError(f"{path}: not a sage-edge engine sidecar (format {data.get('format')!r})"
                            if isinstance(data, dict) else f"{path}: not a sage-edge engine sidecar")
    return data


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def rebuild_hint(record: Mapping[str, Any], engine_path: str | os.PathLike) -> str:
    onnx = (record.get("onnx") or {}).get("path") or "MODEL.onnx"
    return f"rebuild it on this device: sage-edge build-engine {onnx} -o {engine_path}" + (
        " " + " ".join(record.get("command_flags", [])) if record.get("command_flags") else "")


# Cross-major runs of version-compatible engines that TensorRT supports: Support Matrix 11.4.1, "Engine
# Portability" ("TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8
# version-compatible engines can run with a TensorRT 10 runtime. No other combination across major versions"),
# and "Version Compatibility" (TensorRT 10.16.1 docs: "engines built with TensorRT 8 work with TensorRT 9 and
# TensorRT 10 runtimes"; supported from 8.6: "the plan must be built with a version at least 8.6").
VERSION_COMPATIBLE_ACROSS_MAJORS = {(8, 9), (8, 10), (9, 10), (10, 11)}


def version_compatible_runs(built: str, runtime: str) -> bool:
    """Can a version-compatible engine built with TensorRT ``built`` run on TensorRT ``runtime``?"""
    b, r = _version_tuple(built), _version_tuple(runtime)
    if not b or not r or b[:2] < (8, 6) or r < b:
        return False
    return r[0] == b[0] or (b[0], r[0]) in VERSION_COMPATIBLE_ACROSS_MAJORS


def mismatch(record: Mapping[str, Any], trt_version: str, gpu_name: str | None,
             compute_capability: str | None) -> str | None:
    """Why an engine built as ``record`` cannot run on this TensorRT/GPU, or None when it can.

    TensorRT: the exact version must match, except for version-compatible engines
    (``--version-compatible``, built with 8.6+), which run on the same or a later release of
    the same major, and across majors 8 -> 9/10 and 10 -> 11 (never 8 -> 11).
    GPU: compute capability must match; the name too, but only when the sidecar's name came
    from CUDA (``cuDeviceGetName``, what pycuda reports here). A name that nvidia-smi or the
    Jetson device tree gave spells the same GPU differently, so it is not compared.
    """
    built = str(record.get("tensorrt", ""))
    if record.get("version_compatible"):
        if not version_compatible_runs(built, trt_version):
            return (f"built for TensorRT {built} (version-compatible: runs on later releases of the same major, "
                    f"and 8.6+ -> 10.x, 10.x -> 11.x), this device runs TensorRT {trt_version}")
    elif _version_tuple(built)[:3] != _version_tuple(trt_version)[:3]:
        return f"built with TensorRT {built}, this device runs TensorRT {trt_version}"
    gpu = record.get("gpu") or {}
    built_cc, built_name = gpu.get("compute_capability"), gpu.get("name")
    if built_cc and compute_capability and str(built_cc) != str(compute_capability):
        return (f"built for {built_name or 'a GPU'} (compute capability {built_cc}), "
                f"this device has {gpu_name or 'a GPU'} (compute capability {compute_capability})")
    # Sidecars before name_source existed: a name recorded with a compute capability came from pycuda (CUDA).
    name_from_cuda = gpu.get("name_source", "cuda" if built_cc else None) == "cuda"
    if name_from_cuda and built_name and gpu_name and built_name != gpu_name:
        return f"built for GPU '{built_name}', this device has '{gpu_name}'"
    return None


def check_compatible(engine_path: str | os.PathLike, record: Mapping[str, Any] | None, trt_version: str,
                     gpu_name: str | None, compute_capability: str | None) -> None:
    """Raise one line (with rebuild instructions) when the engine does not match this device."""
    if record is None:
        return
    why = mismatch(record, trt_version, gpu_name, compute_capability)
    if why:
        raise SageEdgeError(f"{engine_path}: engine does not match this device ({why}); "
                            f"{rebuild_hint(record, engine_path)}")


def check_border_pad(engine_path: str | os.PathLike, record: Mapping[str, Any] | None, wanted: int | None) -> None:
    """TensorRT builds the ONNX's border padding in: a different ``--border-pad`` needs another engine."""
    if wanted is None:
        return
    built = (record or {}).get("border_pad")
    if built is None:
        raise SageEdgeError(f"{engine_path}: its sidecar does not say which border padding the engine was built "
                            f"with; leave --border-pad out, or rebuild it with `sage-edge build-engine`")
    if int(built) != int(wanted):
        onnx = ((record or {}).get("onnx") or {}).get("path") or "MODEL.onnx"
        raise SageEdgeError(f"{engine_path}: built with --border-pad {built}, not {wanted}; TensorRT fixes it at "
                            f"build time: sage-edge export --model WEIGHTS --border-pad {wanted} -o {onnx}, then build-engine "
                            "again")
