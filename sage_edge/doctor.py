"""``sage-edge doctor``: one screen of facts about this machine, each OK / missing / warning with the fix.

Never raises for a missing component: the point is to report it. Reads files and runs
optional commands (``nvpmodel``, ``v4l2-ctl``, ``nvidia-smi``) only when present; no torch.
Jetson facts come from ``sage_edge.environment`` (the same record benchmarks store).
"""
from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sage_edge.environment import run_command

OK, MISSING, WARNING, INFO = "OK", "missing", "warning", "info"

# L4T (Jetson Linux) release -> JetPack. First match on the longest prefix wins. Sources: NVIDIA's JetPack archive
# (developer.nvidia.com/embedded/jetpack/downloads/archive-7.0: "JetPack 7.0 with Jetson Linux 38.2/38.2.1",
# archive-7.1: "JetPack 7.1 with Jetson Linux 38.4"; docs.nvidia.com/jetson/archives lists JetPack 5.1-5.1.5,
# 6.0-6.2.1 and 7.0 with Jetson Linux 35.x/36.x/38.x) and the two tables that cite that archive, where they agree:
# rbonghi/jetson_stats jtop/core/jetson_variables.py NVIDIA_JETPACK (commit f41d5ca) and
# dusty-nv/jetson-containers jetson_containers/l4t_version.py (commit dd206bf). Where they disagree (36.5: 6.2.1
# or 6.2.2; 39.1/39.2 for 7.2 GA) the entry is the common prefix.
L4T_TO_JETPACK = [
    ("35.1", "5.0.2"), ("35.2", "5.1"), ("35.3", "5.1.1"), ("35.4", "5.1.2"), ("35.5", "5.1.3"), ("35.6.0", "5.1.4"),
    ("35.6.1", "5.1.5"), ("35.6.2", "5.1.5"), ("35.6.4", "5.1.6"),
    ("36.2", "6.0 DP"), ("36.3", "6.0"), ("36.4.3", "6.2"), ("36.4.4", "6.2.1"), ("36.4.7", "6.2.1"), ("36.4", "6.1"),
    ("36.5", "6.2.x"),
    ("38.2", "7.0"), ("38.4", "7.1"), ("39", "7.2"),
]
# JetPack -> the TensorRT it ships (what engines built on it need at run time); matched on the longest prefix.
# 5.1.x: 8.5.2 and 6.0: 8.6.2 (review of this repository, "Version facts", and JetPack's own
# python3-libnvinfer); 6.1/6.2: 10.3 (NVIDIA's JetPack 6.1 notes as quoted by pytorch/TensorRT
# docs/getting_started/jetpack.rst: "CUDA 12.6, TensorRT 10.3, cuDNN 9.3"); 7.0/7.1: 10.13
# (dusty-nv/jetson-containers deprecated/cuda/tensorrt/config.py: CUDA 13.0 on Jetson -> TensorRT 10.13);
# 7.2: TensorRT 11.4.1 "supports NVIDIA JetPack 7.2.2 or later" (TensorRT 11.4.1 docs, "Migrating TensorRT
# from 10.x to 11.x on Jetson/JetPack").
JETPACK_TENSORRT = {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3", "6.2": "10.3", "7.0": "10.13", "7.1": "10.13",
                    "7.2": "11.x (TensorRT 11.4.1 needs JetPack 7.2.2+)"}


def tensorrt_for_jetpack(jetpack: str | None) -> str | None:
    """The TensorRT a JetPack release ships ("5.1.3" -> "8.5.2"), or None when unknown."""
    if not jetpack:
        return None
    version = jetpack.split()[0]
    for key in sorted(JETPACK_TENSORRT, key=len, reverse=True):
        if version == key or version.startswith(key + "."):
            return JETPACK_TENSORRT[key]
    return None


@dataclass
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper() if self.status != INFO else 'info':<8} {self.name:<14} {self.detail}"
        return text + (f"  -> {self.fix}" if self.fix else "")


def jetpack_for_l4t(l4t: str | None) -> str | None:
    if not l4t:
        return None
    for prefix, jetpack in sorted(L4T_TO_JETPACK, key=lambda kv: -len(kv[0])):
        if l4t == prefix or l4t.startswith(prefix + "."):
            return jetpack
    major = l4t.split(".")[0]
    return {"35": "5.x", "36": "6.x", "38": "7.x", "39": "7.x"}.get(major)


def check_platform() -> list[Check]:
    py = sys.version_info
    status = OK if py >= (3, 8) else WARNING
    return [Check(OK, "platform", f"{platform.platform()} ({platform.machine()})"),
            Check(status, "python", f"{platform.python_version()} at {sys.executable}",
                  "" if status == OK else "sage-edge needs Python 3.8+")]


def check_jetson(jetson: dict[str, Any] | None) -> list[Check]:
    if jetson is None:
        return [Check(INFO, "jetson", "not a Jetson (no /proc/device-tree/model or /etc/nv_tegra_release)")]
    out = [Check(OK, "jetson", str(jetson.get("module") or "unknown module"))]
    l4t = jetson.get("l4t")
    jetpack = jetpack_for_l4t(l4t)
    trt = tensorrt_for_jetpack(jetpack)
    out.append(Check(OK if l4t else WARNING, "L4T", f"R{l4t} -> JetPack {jetpack or '?'}"
                     + (f" (ships TensorRT {trt})" if trt else ""),
                     "" if l4t else "/etc/nv_tegra_release is unreadable"))
    mode = jetson.get("nvpmodel")
    out.append(Check(OK if mode else WARNING, "nvpmodel", f"power mode {mode}" if mode else "unknown",
                     "" if mode else "run `sudo nvpmodel -q` (install nvpmodel)"))
    clocks = jetson.get("jetson_clocks")
    if clocks is None:
        out.append(Check(WARNING, "jetson_clocks", "state unknown"))
    else:
        out.append(Check(OK if clocks else WARNING, "jetson_clocks", "on (clocks locked)" if clocks else "off",
                         "" if clocks else "`sudo jetson_clocks` for stable latencies"))
    return out


def check_cuda(gpu: dict[str, Any]) -> list[Check]:
    out = []
    if gpu.get("name"):
        out.append(Check(OK, "gpu", f"{gpu['name']} (driver {gpu.get('driver') or '?'})"))
    cuda = gpu.get("cuda")
    out.append(Check(OK if cuda else MISSING, "CUDA", f"toolkit {cuda}" if cuda else "no CUDA toolkit found "
                     "(/usr/local/cuda)", "" if cuda else "JetPack installs it (`sudo apt install nvidia-jetpack`); "
                     "desktop: the CUDA toolkit from developer.nvidia.com"))
    return out


def check_tensorrt(import_module: Callable[[str], Any]) -> list[Check]:
    from sage_edge.runtime.tensorrt_api import TENSORRT_HINT

    try:
        trt = import_module("tensorrt")
    except Exception:
        return [Check(MISSING, "TensorRT", "not importable", TENSORRT_HINT.split(": ", 1)[1])]
    version = str(getattr(trt, "__version__", "?"))
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if parts and parts < (8, 5):
        return [Check(WARNING, "TensorRT", f"{version} is older than 8.5", "upgrade to JetPack 5.1+")]
    typed = "; FP16/INT8 from the ONNX (strongly typed)" if parts and parts[0] >= 11 else ""
    dla = "; no DLA in this release" if parts and parts[0] == 11 and parts < (11, 4) else ""
    return [Check(OK, "TensorRT", f"{version}{typed}{dla}")]


def check_pycuda(import_module: Callable[[str], Any]) -> list[Check]:
    from sage_edge.runtime.cuda_memory import PYCUDA_HINT

    try:
        package = import_module("pycuda")
        driver = import_module("pycuda.driver")
    except Exception:
        return [Check(MISSING, "pycuda", "not importable", PYCUDA_HINT.split(": ", 1)[1])]
    version = ".".join(str(v) for v in getattr(package, "VERSION", ()))
    try:
        from sage_edge.runtime.cuda_memory import device_info

        info = device_info(0, driver)
        kind = "integrated: zero-copy buffers" if info.zero_copy else "discrete: page-locked copies"
        return [Check(OK, "pycuda", f"{version or '?'}; device 0 {info.name} sm {info.compute_capability} ({kind})")]
    except Exception as exc:
        return [Check(WARNING, "pycuda", f"{version or '?'} imports but CUDA is not usable ({exc})",
                      "check the driver (nvidia-smi) and that this user is in the 'video' group")]


def check_onnxruntime(providers: list[str]) -> list[Check]:
    if not providers:
        return [Check(MISSING, "onnxruntime", "not importable", "pip install onnxruntime "
                      "(Jetson: the onnxruntime-gpu wheel for your JetPack from the Jetson AI Lab index)")]
    import onnxruntime

    gpu = [p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    return [Check(OK, "onnxruntime", f"{onnxruntime.__version__}: {', '.join(providers)}"
                  + ("" if gpu else " (CPU only)"))]


OPENCV_WHEELS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def pip_opencv_wheels() -> list[tuple[str, str, str]]:
    """(name, version, install location) of each pip OpenCV wheel this Python can see."""
    from importlib import metadata

    found = []
    for name in OPENCV_WHEELS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append((name, dist.version, str(dist.locate_file(""))))
    return found


APT_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def apt_opencv_on_path() -> bool:
    """Whether this Python also sees apt's python3-opencv (JetPack's, Debian's), which a pip wheel would hide."""
    return APT_DIST_PACKAGES in (p.rstrip("/") for p in sys.path) and bool(glob.glob(APT_DIST_PACKAGES + "/cv2*"))


def check_opencv(on_jetson: bool, cv2: Any = None, wheels: list[tuple[str, str, str]] | None = None,
                 apt_opencv: bool | None = None) -> list[Check]:
    """cv2's location, GStreamer support and any pip OpenCV wheel: a wheel has no GStreamer and shadows
    JetPack's python3-opencv (Debian's/Ubuntu's too) when it comes first on sys.path."""
    try:
        cv2 = cv2 or __import__("cv2")
    except ImportError:
        return [Check(MISSING, "opencv", "cv2 not importable", "Jetson: sudo apt install python3-opencv; "
                      "desktop: pip install opencv-python-headless")]
    build = cv2.getBuildInformation()
    match = re.search(r"^\s*GStreamer:\s*(.+)$", build, re.MULTILINE)
    gstreamer = match.group(1).strip() if match else "NO"
    has_gst = gstreamer.upper().startswith("YES")
    path = getattr(cv2, "__file__", "?")
    wheels = pip_opencv_wheels() if wheels is None else wheels
    in_use = [name for name, _, location in wheels if location and str(path).startswith(location.rstrip("/") + "/")]
    if not wheels:
        shadow = "no pip OpenCV wheel"
    else:
        listed = ", ".join(f"{name} {version}" for name, version, _ in wheels)
        shadow = f"pip wheel {listed} ({'the cv2 imported' if in_use else 'installed, not the cv2 imported'})"
    detail = f"{cv2.__version__} at {path}; GStreamer: {gstreamer}; {shadow}"
    pip_wheel = bool(in_use) or ("site-packages" in str(path) and "dist-packages" not in str(path))
    apt_opencv = apt_opencv_on_path() if apt_opencv is None else apt_opencv
    if pip_wheel and apt_opencv and not has_gst and not on_jetson:
        return [Check(WARNING, "opencv", detail, "a pip OpenCV wheel (no GStreamer) shadows apt's python3-opencv: "
                      f"`pip uninstall {' '.join(in_use or ['opencv-python', 'opencv-python-headless'])}`")]
    if on_jetson and not has_gst:
        return [Check(WARNING, "opencv", detail,
                      "a pip OpenCV wheel (no GStreamer, no CSI cameras) shadows JetPack's python3-opencv: "
                      "`pip uninstall opencv-python opencv-python-headless`, then `sudo apt install python3-opencv` "
                      "(venv: --system-site-packages)" if pip_wheel else
                      "this OpenCV has no GStreamer: CSI cameras (nvarguscamerasrc) will not open; use JetPack's "
                      "python3-opencv")]
    return [Check(OK, "opencv", detail + ("" if has_gst else " (fine off Jetson; gst pipelines need it)"))]


def check_numpy(cv2_path: str | None = None) -> list[Check]:
    """numpy's version and location: apt's OpenCV (JetPack's, Debian's) is built against apt's numpy 1.x, and a
    pip numpy 2.x in front of it breaks ``import cv2``."""
    try:
        import numpy
    except ImportError:
        return [Check(MISSING, "numpy", "not importable", "Jetson: sudo apt install python3-numpy; desktop: pip install numpy")]
    path = str(getattr(numpy, "__file__", "?"))
    detail = f"{numpy.__version__} at {path}"
    if cv2_path is None:
        try:
            import cv2

            cv2_path = str(getattr(cv2, "__file__", ""))
        except ImportError:
            cv2_path = ""
    apt_cv2 = "/dist-packages/" in cv2_path and not cv2_path.startswith("/usr/local/")
    pip_numpy = not (path.startswith("/usr/lib/python3/dist-packages/"))
    if apt_cv2 and pip_numpy and int(numpy.__version__.split(".")[0]) >= 2:
        return [Check(WARNING, "numpy", detail, "a pip numpy 2.x shadows apt's numpy, which apt's OpenCV is built "
                      "against: `pip uninstall numpy` (keep python3-numpy)")]
    return [Check(OK, "numpy", detail + (" (apt's)" if path.startswith("/usr/lib/python3/dist-packages/") else ""))]


def check_cameras(dev_glob: str = "/dev/video*") -> list[Check]:
    devices = sorted(glob.glob(dev_glob), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    if not devices:
        return [Check(INFO, "cameras", "no /dev/video* devices")]
    out = []
    for dev in devices:
        name_file = Path("/sys/class/video4linux") / Path(dev).name / "name"
        try:
            name = name_file.read_text().strip()
        except OSError:
            name = "?"
        formats = run_command("v4l2-ctl", "--list-formats", "-d", dev)
        fourccs = re.findall(r"'(\w{3,4})'", formats or "")
        detail = f"{dev} {name}: " + (", ".join(dict.fromkeys(fourccs)) if fourccs else
                                       "formats unknown" if formats is None else "no capture formats (metadata node)")
        out.append(Check(OK, "camera", detail, "" if formats is not None else "sudo apt install v4l-utils"))
    return out


def check_resources(path: str | os.PathLike = ".") -> list[Check]:
    out = []
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is not None:
        gib = available / 2**30
        out.append(Check(OK if gib >= 1.0 else WARNING, "memory", f"{gib:.1f} GiB available",
                         "" if gib >= 1.0 else "close other programs: building an engine needs ~1 GiB"))
    usage = shutil.disk_usage(path)
    free = usage.free / 2**30
    out.append(Check(OK if free >= 2.0 else WARNING, "disk", f"{free:.1f} GiB free at {Path(path).resolve()}",
                     "" if free >= 2.0 else "free some space: engines, caches and timing caches need ~1-2 GiB"))
    return out


def _import(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


def run_checks(import_module: Callable[[str], Any] = _import) -> list[Check]:
    from sage_edge import environment
    from sage_edge.zoo import cache_dir

    jetson = environment.jetson_record()
    checks = check_platform() + check_jetson(jetson) + check_cuda(environment.gpu_record())
    checks += check_tensorrt(import_module) + check_pycuda(import_module)
    checks += check_onnxruntime(environment.ort_providers()) + check_opencv(jetson is not None) + check_numpy()
    checks += check_cameras()
    cache = cache_dir()
    checks += check_resources(cache if cache.exists() else Path.cwd())
    return checks
