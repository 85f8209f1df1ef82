"""CPU defaults measured on this machine: how many threads, and which backend runs ``.onnx`` under ``auto``.

ONNX Runtime and OpenVINO default to one thread per physical core. That is best on an idle machine, but
not on a shared one: measured on a 2-core VM shared with other jobs (benchmarks/RESULTS.md), 1 thread
beat 2 for ONNX Runtime FP32 (0.90x the time), ONNX Runtime INT8 (0.78x) and OpenVINO FP32 (0.95x). A
thread that waits at each operator's barrier for a core another process holds costs more than the
second core gives.

So the default (``threads=0`` for every CPU backend) is, in order:

1. ``SAGE_EDGE_THREADS`` when set (an integer >= 1);
2. the thread count ``sage-edge bench --threads 1 --threads 2 --threads 0`` measured fastest on this
   machine (CPU model and core count) for that backend, saved in the cache (``cpu-tuning.json``);
3. otherwise every usable core, unless the machine is already busy (1-minute load average at or above
   the number of usable cores), where 1 thread is used.

``describe()`` of each backend, and so ``bench`` and ``run`` summaries, show the count in use.

``--backend auto`` runs ``.onnx`` on ONNX Runtime, except on an x86 CPU where OpenVINO is installed and
``sage-edge bench`` measured it faster than ONNX Runtime for that model's FP32 (both cells in one
interleaved run): then on OpenVINO. The measurement is saved per machine in the same cache file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ENV_VAR = "SAGE_EDGE_THREADS"
CACHE_FILE = "cpu-tuning.json"
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _machine_key(backend: str) -> str:
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{backend} | {model} | {usable_cores()} cores"


def _cache_path() -> Path:
    from sage_edge.zoo import cache_dir

    return cache_dir() / CACHE_FILE


def _saved() -> dict:
    try:
        saved = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _save(key: str, entry: dict) -> Path:
    from sage_edge.atomic import write_bytes_atomic

    saved = _saved()
    saved[key] = entry
    path = _cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(saved, indent=2, sort_keys=True) + "\n").encode())
    return path


def measured_best(backend: str) -> int | None:
    """The thread count saved by ``record_best`` for this backend on this machine, or None."""
    try:
        best = int(_saved()[_machine_key(backend)]["threads"])
    except (ValueError, KeyError, TypeError):
        return None
    return best if 1 <= best <= usable_cores() else None


def record_best(backend: str, threads: int, medians_ms: dict[int, float]) -> Path:
    """Save ``threads`` as this machine's best for ``backend`` (with the medians that chose it)."""
    return _save(_machine_key(backend), {"threads": int(threads),
                                         "median_ms": {str(k): round(v, 3) for k, v in sorted(medians_ms.items())}})


def record_onnx_backend(fastest: str, medians_ms: dict[str, float]) -> Path:
    """Save which backend ran FP32 ``.onnx`` fastest here (``sage-edge bench``, interleaved cells)."""
    return _save(_machine_key("auto .onnx"), {"backend": fastest,
                                              "median_ms": {k: round(v, 3) for k, v in sorted(medians_ms.items())}})


def auto_onnx_backend() -> str:
    """``onnxruntime``, or ``openvino`` on an x86 CPU where it is installed and was measured faster here."""
    import platform

    if platform.machine().lower() not in X86_MACHINES:
        return "onnxruntime"
    try:
        choice = str(_saved()[_machine_key("auto .onnx")]["backend"])
    except (KeyError, TypeError):
        return "onnxruntime"
    if choice != "openvino":
        return "onnxruntime"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino"


def _busy() -> bool:
    try:
        return os.getloadavg()[0] >= usable_cores()
    except (AttributeError, OSError):
        return False


def default_threads(backend: str) -> int:
    """Threads for ``backend`` when the user gave none (see the module docstring for the order)."""
    from sage_edge.errors import SageEdgeError

    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise SageEdgeError(f"{ENV_VAR}={text!r}: use a whole number of threads, at least 1")
        return int(text)
    best = measured_best(backend)
    if best is not None:
        return best
    return 1 if _busy() else usable_cores()


def resolve_threads(backend: str, threads: int) -> int:
    """``threads`` as given (>= 1), or the default for 0."""
    from sage_edge.errors import SageEdgeError

    if threads < 0:
        raise SageEdgeError("--threads must be 0 (the measured default) or a positive number")
    return threads if threads else default_threads(backend)
