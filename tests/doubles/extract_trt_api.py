"""Extract the per-release TensorRT Python API facts the TEST DOUBLE needs (tests/doubles/trt_api.json).

Reads a bare clone of github:NVIDIA/TensorRT (default: the project's mirror) with ``git show``:
  * enums: the members each release's Python bindings expose (``py::enum_<X>(m, "X" ...)
    .value("NAME", X::kNAME ...)`` in python/src/infer/pyCore.cpp, pyGraph.cpp,
    pyFoundationalTypes.cpp, python/src/parsers/pyOnnx.cpp), with the integer value of
    each member taken from the C++ enum in include/NvInfer*.h of the same release;
  * classes: the attribute and method names each bound class has (``py::class_<...>(m,
    "Name" ...)`` followed by ``.def("x"``, ``.def_property("x"``, ``.def_readwrite("x"``...).

Run: ``python tests/doubles/extract_trt_api.py [/path/to/TensorRT.git]``. The output records,
per release, the git ref, its commit id and every path read, so each rule the double enforces
from this table traces back to a file of a release.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

MIRROR = Path("/work/.mirror/NVIDIA+TensorRT/repo")
PARSER_MIRROR = Path("/work/.mirror/onnx+onnx-tensorrt/repo")
# The double's release -> the ref of github:NVIDIA/TensorRT whose bindings it follows.
RELEASES = {"8.5": "8.5.3", "8.6": "release/8.6", "10.3": "release/10.3", "10.12": "release/10.12",
            "11.0": "release/11.0"}
# Before 11.0 the ONNX parser's header lives in the parsers/onnx submodule (not stored in the TensorRT
# repository): read NvOnnxParser.h (its ErrorCode enum) from github:onnx/onnx-tensorrt instead. 10.x: the
# newest 10.x GA branch of the mirror.
PARSER_BRANCHES = {"8.5": "8.5-GA", "8.6": "8.6-GA", "10.3": "10.1-GA", "10.12": "10.1-GA"}
BINDINGS = ["python/src/infer/pyCore.cpp", "python/src/infer/pyGraph.cpp",
            "python/src/infer/pyFoundationalTypes.cpp", "python/src/parsers/pyOnnx.cpp"]
ENUMS = ["DataType", "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "ProfilingVerbosity",
         "DeviceType", "TensorIOMode", "LayerType", "ErrorCode", "TacticSource", "HardwareCompatibilityLevel",
         "OnnxParserFlag"]
CLASSES = ["ILayer", "IBuilderConfig", "Builder", "Runtime", "ICudaEngine", "IExecutionContext", "INetworkDefinition",
           "ITensor", "IOptimizationProfile", "OnnxParser", "ParserError", "IHostMemory", "ITimingCache"]


def git_show(repo: Path, ref: str, path: str) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def cpp_enums(headers: list[str]) -> dict[str, dict[str, int]]:
    """``enum class X : int32_t { kA = 0, kB, ... };`` -> {"X": {"kA": 0, "kB": 1}} (last definition wins)."""
    out: dict[str, dict[str, int]] = {}
    for text in headers:
        text = _strip_comments(text)
        for match in re.finditer(r"enum\s+class\s+(\w+)\s*:\s*\w+\s*\{(.*?)\}\s*;", text, re.S):
            name, body = match.group(1), match.group(2)
            values: dict[str, int] = {}
            nxt = 0
            for entry in body.split(","):
                entry = entry.strip()
                if not entry or entry.startswith("#"):
                    continue
                entry = re.sub(r"TRT_DEPRECATED_ENUM|TRT_DEPRECATED", "", entry).strip()
                m = re.match(r"(k\w+)\s*(?:=\s*(.+))?$", entry, re.S)
                if not m:
                    continue
                if m.group(2) is not None:
                    expr = m.group(2).strip()
                    try:
                        value = int(expr, 0)
                    except ValueError:
                        ref = re.match(r"(?:\w+::)?(k\w+)$", expr)
                        if not ref or ref.group(1) not in values:
                            continue
                        value = values[ref.group(1)]
                else:
                    value = nxt
                values[m.group(1)] = value
                nxt = value + 1
            out[name] = values
    return out


def py_enums(bindings: list[str], cpp: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for text in bindings:
        text = _strip_comments(text)
        for match in re.finditer(r"py::enum_<\s*([\w:]+)\s*>\s*\(\s*\w+\s*,\s*\"(\w+)\"(.*?);", text, re.S):
            cpp_name, py_name, body = match.group(1).split("::")[-1], match.group(2), match.group(3)
            if py_name not in ENUMS:
                continue
            members = {}
            for value in re.finditer(r"\.value\(\s*\"(\w+)\"\s*,\s*([\w:]+)", body):
                member = value.group(2).split("::")[-1]
                if member in cpp.get(cpp_name, {}):
                    members[value.group(1)] = cpp[cpp_name][member]
            out[py_name] = members
    return out


def py_classes(bindings: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for text in bindings:
        text = _strip_comments(text)
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"py::class_<[^;]*?>\s*\(\s*\w+\s*,\s*\"(\w+)\"", text)]
        for start, name in starts:
            # The class's chain of .def calls ends where the next binding starts (lambdas hold ';').
            following = [m.start() for m in re.finditer(r"py::(?:class_|enum_)<", text[start + 1:])]
            body = text[start:start + 1 + following[0]] if following else text[start:]
            names = re.findall(r"\.def(?:_property|_property_readonly|_readwrite|_readonly|_static)?\(\s*\"(\w+)\"", body)
            if name in CLASSES:
                out.setdefault(name, [])
                out[name] = sorted(set(out[name]) | set(names))
    return out


def extract(repo: Path) -> dict:
    releases = {}
    for release, ref in RELEASES.items():
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True,
                                check=True).stdout.strip()
        listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", ref, "include/"],
                                 capture_output=True, text=True, check=True).stdout.split()
        headers = [p for p in listing if re.match(r"include/NvInfer(Runtime\w*)?\.h$", p) or p == "include/NvOnnxParser.h"]
        infer_headers = [p for p in headers if p != "include/NvOnnxParser.h"]
        header_text = [t for t in (git_show(repo, ref, p) for p in infer_headers) if t]
        bindings = [p for p in BINDINGS if git_show(repo, ref, p) is not None]
        infer_bindings = [git_show(repo, ref, p) or "" for p in bindings if "parsers" not in p]
        onnx_bindings = [git_show(repo, ref, p) or "" for p in bindings if "parsers" in p]
        if "include/NvOnnxParser.h" in headers:
            parser_source = {"repository": "github:NVIDIA/TensorRT", "ref": ref, "commit": commit,
                             "path": "include/NvOnnxParser.h"}
            parser_header = git_show(repo, ref, "include/NvOnnxParser.h") or ""
        else:
            branch = PARSER_BRANCHES[release]
            parser_commit = subprocess.run(["git", "-C", str(PARSER_MIRROR), "rev-parse", branch], capture_output=True,
                                           text=True, check=True).stdout.strip()
            parser_source = {"repository": "github:onnx/onnx-tensorrt", "ref": branch, "commit": parser_commit,
                             "path": "NvOnnxParser.h"}
            parser_header = git_show(PARSER_MIRROR, branch, "NvOnnxParser.h") or ""
        enums = py_enums(infer_bindings, cpp_enums(header_text))
        enums.update(py_enums(onnx_bindings, cpp_enums([parser_header])))
        releases[release] = {
            "source": {"repository": "github:NVIDIA/TensorRT", "ref": ref, "commit": commit,
                       "paths": infer_headers + bindings},
            "parser_enums_source": parser_source,
            "enums": enums,
            "classes": py_classes(infer_bindings + onnx_bindings),
        }
    return {"generated_by": "tests/doubles/extract_trt_api.py", "releases": releases}


def main() -> None:
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else MIRROR
    out = Path(__file__).with_name("trt_api.json")
    out.write_text(json.dumps(extract(repo), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
