"""The environment record written into every benchmark result: what ran, where, at which clocks.

Everything is read from files and commands that need no root and no torch:
CPU from /proc/cpuinfo, GPU from nvidia-smi (desktop) or the device tree
(Jetson), TensorRT/CUDA versions from their Python modules or version files,
the Jetson module from /proc/device-tree/model, the L4T release from
/etc/nv_tegra_release, the power mode from ``nvpmodel -q``, whether
``jetson_clocks`` is on from the CPU/GPU/EMC frequency limits (it sets each
domain's minimum to its maximum), temperatures from /sys/class/thermal.
Missing things are None, never an error: the same code runs on a laptop.
"""
from __future__ import annotations

import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

THERMAL_ROOT = Path("/sys/class/thermal")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
NVPMODEL_STATUS = Path("/var/lib/nvpmodel/status")
HOT_C = 90.0  # warn above this when a zone has no trip points
TRIP_MARGIN_C = 5.0


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def run_command(*cmd: str, timeout: float = 5.0) -> str | None:
    """stdout (stripped) of an optional system command; None when it is absent, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def temperatures(root: Path = THERMAL_ROOT) -> dict[str, float]:
    """Zone type -> degrees C, from /sys/class/thermal/thermal_zone*/{type,temp} (milli-degrees)."""
    out: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        kind, temp = _read(zone / "type"), _read(zone / "temp")
        if not temp:
            continue
        try:
            celsius = int(temp) / 1000.0
        except ValueError:
            continue
        if celsius > -200:  # -256 C: an absent sensor
            out[kind or zone.name] = celsius
    return out


def trip_points(root: Path = THERMAL_ROOT) -> dict[str, float]:
    """Zone type -> lowest passive/hot trip point in degrees C (where throttling starts)."""
    out: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        kind = _read(zone / "type") or zone.name
        lowest = None
        for trip in zone.glob("trip_point_*_type"):
            if _read(trip) not in ("passive", "hot"):
                continue
            value = _read(str(trip).replace("_type", "_temp"))
            try:
                celsius = int(value or "") / 1000.0
            except ValueError:
                continue
            lowest = celsius if lowest is None else min(lowest, celsius)
        if lowest is not None:
            out[kind] = lowest
    return out


def _freq_domains() -> dict[str, dict[str, int]]:
    """min/max/cur frequency (Hz or kHz as the kernel gives) of CPU0, the GPU and EMC devfreq domains."""
    domains: dict[str, dict[str, int]] = {}

    def grab(name: str, base: str, lo: str, hi: str, cur: str) -> None:
        values = {k: _read(os.path.join(base, f)) for k, f in (("min", lo), ("max", hi), ("cur", cur))}
        if all(v and v.isdigit() for v in values.values()):
            domains[name] = {k: int(v) for k, v in values.items()}  # type: ignore[arg-type]

    grab("cpu0", "/sys/devices/system/cpu/cpu0/cpufreq", "scaling_min_freq", "scaling_max_freq", "scaling_cur_freq")
    for base in glob.glob("/sys/class/devfreq/*"):
        name = os.path.basename(base)
        if any(tag in name for tag in ("gpu", "ga10b", "gv11b", "gp10b")):
            grab("gpu", base, "min_freq", "max_freq", "cur_freq")
    return domains


def jetson_record() -> dict[str, Any] | None:
    """Jetson module, L4T, power mode, clocks; None off Jetson."""
    model = _read(DEVICE_TREE_MODEL)
    release = _read(NV_TEGRA_RELEASE)
    if not release and not (model and ("Jetson" in model or "Orin" in model)):
        return None
    l4t = None
    if release:
        match = re.search(r"R(\d+) \(release\), REVISION: ([0-9.]+)", release)
        l4t = f"{match.group(1)}.{match.group(2)}" if match else release.splitlines()[0]
    nvp = run_command("nvpmodel", "-q")
    mode = None
    if nvp:
        match = re.search(r"NV Power Mode:\s*(\S+)", nvp)
        mode = match.group(1) if match else nvp.splitlines()[0]
    elif _read(NVPMODEL_STATUS):
        mode = _read(NVPMODEL_STATUS)
    domains = _freq_domains()
    locked = None
    if domains:
        locked = all(d["min"] == d["max"] for d in domains.values())
    return {"module": model, "l4t": l4t, "nvpmodel": mode, "jetson_clocks": locked, "clock_domains": domains}


def gpu_record() -> dict[str, Any]:
    out: dict[str, Any] = {"name": None, "driver": None, "tensorrt": None, "cuda": None}
    smi = run_command("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")
    if smi:
        name, _, driver = smi.splitlines()[0].partition(",")
        out["name"], out["driver"] = name.strip(), driver.strip() or None
    if out["name"] is None:  # Jetson has no nvidia-smi: ask CUDA itself (pycuda, JetPack's CUDA), no context made
        import importlib.util

        if importlib.util.find_spec("pycuda") is not None:
            try:
                from sage_edge.runtime.cuda_memory import device_info

                info = device_info(0)
                out["name"] = info.name
                out["compute_capability"] = info.compute_capability
                out["integrated"] = info.integrated
            except Exception:
                pass
    try:
        import tensorrt  # noqa: F401  (JetPack's python3-libnvinfer; absent on most desktops)

        out["tensorrt"] = tensorrt.__version__
    except Exception:
        pass
    for version_file in ("/usr/local/cuda/version.json", "/usr/local/cuda/version.txt"):
        text = _read(version_file)
        if not text:
            continue
        if version_file.endswith(".json"):
            try:
                out["cuda"] = json.loads(text)["cuda"]["version"]
            except (ValueError, KeyError, TypeError):
                pass
        else:
            match = re.search(r"([0-9]+\.[0-9]+(?:\.[0-9]+)?)", text)
            out["cuda"] = match.group(1) if match else None
        if out["cuda"]:
            break
    return out


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception:
        return []


def sidecar(model_path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The engine's ``<engine>.json`` sidecar (see runtime/engine_sidecar.py); an unreadable one is noted, not raised."""
    if model_path is None or Path(model_path).suffix.lower() not in (".engine", ".plan", ".trt"):
        return None
    from sage_edge.errors import SageEdgeError
    from sage_edge.runtime.engine_sidecar import read_sidecar

    try:
        return read_sidecar(model_path)
    except SageEdgeError as exc:
        return {"error": str(exc)}


def record() -> dict[str, Any]:
    """The environment at the start of a run."""
    import numpy

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except Exception:
        ort_version = None
    torch_version = sys.modules["torch"].__version__ if "torch" in sys.modules else None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine()},
        "onnxruntime": {"version": ort_version, "providers": ort_providers()},
        "numpy": numpy.__version__,
        "torch": torch_version,
        "gpu": gpu_record(),
        "jetson": jetson_record(),
        "temperatures_start_c": temperatures(),
        "temperatures_end_c": None,
        "load_average_start": _load_average(),
        "load_average_end": None,
        "warnings": [],
    }


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def finish(env: dict[str, Any]) -> dict[str, Any]:
    """Add end temperatures, load and the clock/throttling/busy warnings to ``env`` (in place); returns it."""
    env["temperatures_end_c"] = temperatures()
    env["load_average_end"] = _load_average()
    env["warnings"] = warnings(env)
    return env


def warnings(env: dict[str, Any], trips: dict[str, float] | None = None) -> list[str]:
    out: list[str] = []
    jetson = env.get("jetson")
    if jetson:
        if jetson.get("jetson_clocks") is False:
            out.append("clocks are not locked: run `sudo jetson_clocks` for stable latencies (DVFS adds jitter)")
        gpu = (jetson.get("clock_domains") or {}).get("gpu")
        if gpu and jetson.get("jetson_clocks") and gpu["cur"] < gpu["max"]:
            out.append(f"GPU runs at {gpu['cur']} below its locked maximum {gpu['max']}: throttling")
    cores = (env.get("cpu") or {}).get("cores") or 0
    busy = [(when.split("_")[2], env[when][0]) for when in ("load_average_start", "load_average_end")
            if env.get(when) and cores and env[when][0] > cores]
    if busy:
        loads = ", ".join(f"{load:.1f} at the {when}" for when, load in busy)
        out.append(f"the machine was busy (1-minute load {loads}, on {cores} cores): "
                   "other processes inflate these latencies")
    trips = trip_points() if trips is None else trips
    for when in ("temperatures_start_c", "temperatures_end_c"):
        for zone, celsius in (env.get(when) or {}).items():
            limit = trips.get(zone)
            if (limit is not None and celsius >= limit - TRIP_MARGIN_C) or (limit is None and celsius >= HOT_C):
                out.append(f"{zone} at {celsius:.1f} C ({when.split('_')[1]}) is at or near its throttling point")
    return sorted(set(out), key=out.index)
