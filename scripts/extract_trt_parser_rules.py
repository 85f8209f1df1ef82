#!/usr/bin/env python3
"""Extract the ONNX-parser rules of each TensorRT version from the onnx-tensorrt sources, as data.

Writes ``export/trt_parser_rules/trt<VERSION>.json``, which ``sage_edge.export.trt_compat``
(``sage-edge check-trt``) reads. Every rule records the repository, branch, commit, path and
line it was read from. Run it again when a TensorRT version is added or the mirrors move:

    python scripts/extract_trt_parser_rules.py \\
        --onnx-tensorrt /work/.mirror/onnx+onnx-tensorrt/repo --tensorrt /work/.mirror/NVIDIA+TensorRT/repo

Sources (bare git mirrors of github:onnx/onnx-tensorrt and github:NVIDIA/TensorRT):
  * onnx-tensorrt ``docs/operators.md``: operator table, supported types per operator,
    restrictions, documented opset range;
  * ``README.md``: the ONNX release the parser is built against (the IR version is only logged);
  * ``convertDtype`` (``onnx2trt_utils.cpp`` on 8.x, ``importerUtils.cpp`` on 10.x): which ONNX
    data types map to which TensorRT types (8.x maps INT64 to INT32 and DOUBLE to FLOAT);
  * ``ModelImporter.cpp``: the UINT8 intermediate-tensor check (8.6-GA onward);
  * ``builtin_op_importers.cpp`` (8.5-GA): the Cast importer's UINT8 rule and the importers that
    refuse UINT8 inputs;
  * TensorRT ``include/NvInferRuntime{Common,Base}.h``: the kUINT8 contract (UINT8 only as network
    I/O, converted from/to {kFLOAT, kHALF}), which is what holds on 8.5 where the parser has no
    intermediate check of its own.

Which onnx-tensorrt branch stands for which TensorRT version is ``VERSIONS`` below; where one
version is read from several branches (10: 10.0-GA and 10.1-GA), the rules are intersected, so a
model that passes is accepted by every one of them.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "export" / "trt_parser_rules"
ONNX_TENSORRT = "onnx/onnx-tensorrt"
TENSORRT = "NVIDIA/TensorRT"

# TensorRT version -> (onnx-tensorrt branches, NVIDIA/TensorRT ref for the kUINT8 contract, note)
VERSIONS: Dict[str, Tuple[List[str], str, str]] = {
    "8.5": (["8.5-GA"], "8.5.3",
            "JetPack 5.1.x ships TensorRT 8.5.2. NVIDIA/TensorRT tag 8.5.3 pins onnx-tensorrt fd119fec, "
            "whose tree is identical to 8.5-GA's head."),
    "8.6": (["8.6-GA"], "release/8.6",
            "JetPack 6.0 ships TensorRT 8.6.2. NVIDIA/TensorRT release/8.6 pins onnx-tensorrt 6ba67d34, "
            "an ancestor of 8.6-GA's head."),
    "10": (["10.0-GA", "10.1-GA"], "release/10.3",
           "JetPack 6.1/6.2 ship TensorRT 10.3. The mirror has the 10.0-GA and 10.1-GA branches (10.3's pin, "
           "62bdde2a, is not in it); their rules are intersected, and parser support only grew within 10.x."),
    "11": (["main"], "release/11.0",
           "The mirror's newest onnx-tensorrt source is main @ 7ecb49a (2024-05-02, README: 'TensorRT 10.0'); "
           "TensorRT 11's parser (NVIDIA/TensorRT release/11.0 pins onnx-tensorrt 5ab48c5c, release/11.1 pins "
           "7c51a63a) is not in the mirror. Checked by hand against those commits' ModelImporter.cpp (11.0) and "
           "docs/operators.md (11.1) in the code index: the same UINT8 rule (11.0 adds exceptions for Constant "
           "nodes and the kENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA flag, neither used here), every operator "
           "main supports is supported by 11.1, and 11.1 documents opsets 9 to 24 where main documents 9 to 20. "
           "So main's rules are a conservative stand-in for 11 (never more lenient on these points)."),
}

# TensorRT DataType enum names -> the names docs/operators.md uses.
TRT_TYPE_NAMES = {"FLOAT": "FP32", "HALF": "FP16", "BF16": "BF16", "INT8": "INT8", "UINT8": "UINT8",
                  "INT32": "INT32", "INT64": "INT64", "BOOL": "BOOL", "FP8": "FP8", "INT4": "INT4", "FP4": "FP4"}


class Source:
    """One branch of a bare git mirror: file text and citations."""

    def __init__(self, git_dir: Path, repository: str, ref: str) -> None:
        self.git_dir, self.repository, self.ref = git_dir, repository, ref
        self.commit = self._git("rev-parse", f"{ref}^{{commit}}").strip()
        self.date = self._git("log", "-1", "--format=%cs", self.commit).strip()
        self._texts: Dict[str, str] = {}

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(self.git_dir), *args], check=True, capture_output=True,
                              text=True).stdout

    def text(self, path: str) -> str:
        if path not in self._texts:
            self._texts[path] = self._git("show", f"{self.commit}:{path}")
        return self._texts[path]

    def lines(self, path: str) -> List[str]:
        return self.text(path).splitlines()

    def grep_files(self, pattern: str, pathspec: str) -> List[str]:
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "grep", "-l", "-F", pattern, self.commit,
                              "--", pathspec], capture_output=True, text=True).stdout
        return sorted(line.split(":", 1)[1] for line in out.splitlines() if line)

    def cite(self, path: str, first: int, last: Optional[int] = None) -> str:
        span = f"{first}" if last is None or last == first else f"{first}-{last}"
        return f"{self.repository} {self.ref}@{self.commit[:8]}:{path}:{span}"

    def describe(self) -> Dict[str, str]:
        return {"repository": self.repository, "branch": self.ref, "commit": self.commit, "date": self.date}


def find_line(lines: List[str], pattern: str, start: int = 0) -> int:
    """1-based number of the first line at or after ``start`` (0-based) matching ``pattern``; 0 if none."""
    rx = re.compile(pattern)
    for i in range(start, len(lines)):
        if rx.search(lines[i]):
            return i + 1
    return 0


def parse_operators(src: Source) -> dict:
    path = "docs/operators.md"
    lines = src.lines(path)
    rules: dict = {"operators": {}, "unsupported_operators": [], "attribute_values": {}, "zero_point_must_be_zero": {}}
    header = find_line(lines, r"(?i)supports operators")
    text = lines[header - 1]
    both = re.search(r"(?i)opset (\d+) to opset (\d+)", text)
    up_to = re.search(r"(?i)up to opset (\d+)", text)
    if both:
        rules["opset"] = {"min": int(both.group(1)), "max": int(both.group(2)), "source": src.cite(path, header),
                          "quote": text.split(". ")[0].strip()}
    elif up_to:
        rules["opset"] = {"min": None, "max": int(up_to.group(1)), "source": src.cite(path, header),
                          "quote": text.split(". ")[0].strip()}
    else:
        raise SystemExit(f"{src.cite(path, header)}: no opset range in {text!r}")
    uint8_note = find_line(lines, r"UINT8 is only supported as network input or output")
    if uint8_note:
        rules["uint8_note"] = {"quote": lines[uint8_note - 1].lstrip("> ").strip(), "source": src.cite(path, uint8_note)}
    for number, line in enumerate(lines, 1):
        if not line.startswith("|") or set(line.replace("|", "").strip()) <= set("-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0]
        if name in ("Operator", "") or len(cells) < 2:
            continue
        supported = cells[1].upper().startswith("Y")
        if not supported:
            rules["unsupported_operators"].append(name)
            continue
        types = [t.strip() for t in (cells[2] if len(cells) > 2 else "").split(",") if t.strip()]
        restriction = cells[3].strip() if len(cells) > 3 else ""
        entry = {"types": types, "source": src.cite(path, number)}
        if "EXPERIMENTAL" in cells[1].upper():
            entry["experimental"] = True
        if restriction:
            entry["restrictions"] = restriction
        rules["operators"][name] = entry
        if name == "Resize" and restriction:
            rules["attribute_values"]["Resize"] = parse_resize_modes(restriction, src.cite(path, number))
        if re.search(r"zero_point` must be (zero|0)", restriction):
            rules["zero_point_must_be_zero"][name] = src.cite(path, number)
    return rules


def parse_resize_modes(restriction: str, source: str) -> dict:
    """Resize's documented attribute values: transformation, interpolation and nearest modes."""
    wanted = {"coordinate_transformation_mode": r"transformation modes:(.*?)(?:<br|$)",
              "mode": r"resize modes:(.*?)(?:<br|$)",
              "nearest_mode": r"nearest modes:(.*?)(?:<br|$)"}
    values: dict = {"source": source}
    for attribute, pattern in wanted.items():
        match = re.search(pattern, restriction, flags=re.IGNORECASE)
        if match:
            values[attribute] = re.findall(r"`([a-z_]+)`", match.group(1))
    return values


def parse_onnx_release(src: Source) -> dict:
    path = "README.md"
    lines = src.lines(path)
    number = find_line(lines, r"supports ONNX release")
    release = re.search(r"ONNX release ([0-9.]+\d)", lines[number - 1]).group(1) if number else None
    importer = src.lines("ModelImporter.cpp")
    logged = find_line(importer, r"LOG_INFO\(\"ONNX IR version")
    out = {"release": release, "source": src.cite(path, number) if number else None,
           "ir_version_enforced": False,
           "ir_version_note": "the parser only logs the model's IR version (" + src.cite("ModelImporter.cpp", logged)
           + "); protobuf skips fields it does not know"}
    if release:
        import onnx.helper

        ir = [entry[1] for entry in onnx.helper.VERSION_TABLE if entry[0] == release]
        out["ir_version"] = ir[0] if ir else None
    return out


def parse_convert_dtype(src: Source) -> dict:
    files = src.grep_files("bool convertDtype(", "*.cpp")
    if len(files) != 1:
        raise SystemExit(f"{src.ref}: convertDtype defined in {files}")
    path = files[0]
    lines = src.lines(path)
    start = find_line(lines, r"^bool convertDtype\(")
    end = find_line(lines, r"^}", start)
    mapping = {}
    for line in lines[start - 1:end]:
        match = re.search(r"TensorProto::(\w+):\s*\*trt_dtype = nvinfer1::DataType::k(\w+)", line)
        if match:
            mapping[match.group(1)] = TRT_TYPE_NAMES[match.group(2)]
    return {"map": mapping, "source": src.cite(path, start, end)}


def parse_uint8_intermediate(src: Source) -> Optional[dict]:
    path = "ModelImporter.cpp"
    lines = src.lines(path)
    message = find_line(lines, r"does not support UINT8 types for intermediate tensors")
    if not message:
        return None
    first = message
    while first > 1 and 'getType() == "UINT8"' not in lines[first - 1]:
        first -= 1
    return {"enforced_by": "onnx-tensorrt ModelImporter (parse fails with kUNSUPPORTED_NODE)",
            "quote": "TensorRT does not support UINT8 types for intermediate tensors",
            "source": src.cite(path, first, message)}


def parse_cast_uint8(src: Source) -> Optional[dict]:
    """8.5-GA: the Cast importer's own UINT8 rule (IIdentityLayer casts, from/to FP types only)."""
    files = src.grep_files("UINT8 type casting is only supported from FP types", "*.cpp")
    if not files:
        return None
    path = files[0]
    lines = src.lines(path)
    first = find_line(lines, r"UINT8 type casting is only supported from FP types")
    last = find_line(lines, r"newType == DataType::kUINT8", first)
    block = "\n".join(lines[first - 1:last + 2])
    partners = sorted({TRT_TYPE_NAMES[t] for t in re.findall(r"== DataType::k(\w+)", block)} - {"UINT8"})
    return {"partner_types": partners, "source": src.cite(path, first, last + 2)}


def parse_uint8_refusing_importers(src: Source) -> Optional[dict]:
    """Importers that call notInvalidType(..., {"UINT8"}) on their inputs (8.x builtin_op_importers.cpp)."""
    path = "builtin_op_importers.cpp"
    try:
        lines = src.lines(path)
    except subprocess.CalledProcessError:
        return None
    ops: List[str] = []
    current = None
    for line in lines:
        match = re.search(r"DEFINE_BUILTIN_OP_IMPORTER\((\w+)\)", line)
        if match:
            current = match.group(1)
        else:
            helper = re.search(r"^\w.*?(\w+Helper)\(", line)
            if helper:
                current = helper.group(1)  # shared by several importers, e.g. QuantDequantLinearHelper
        if current and "notInvalidType" in line and '"UINT8"' in line and current not in ops:
            ops.append(current)
    return {"operators": ops, "source": f"{src.repository} {src.ref}@{src.commit[:8]}:{path} (notInvalidType)"}


def parse_tensorrt_uint8_contract(src: Source) -> dict:
    headers = src.grep_files("kUINT8 = 5", "include/*.h")
    path = headers[0]
    lines = src.lines(path)
    enum_line = find_line(lines, r"kUINT8 = 5")
    first = enum_line
    while first > 1 and lines[first - 2].strip().startswith("//!"):
        first -= 1
    comment = " ".join(l.strip().lstrip("/!").strip() for l in lines[first - 1:enum_line - 1])
    supported = re.search(r"kUINT8 conversions are only supported for \{([^}]*)\}", comment)
    partners = sorted(TRT_TYPE_NAMES[t.strip()[1:]] for t in supported.group(1).split(",")) if supported else []
    return {"partner_types": partners, "quote": comment, "source": src.cite(path, first, enum_line)}


def extract_branch(onnx_trt: Path, branch: str) -> Tuple[Source, dict]:
    src = Source(onnx_trt, ONNX_TENSORRT, branch)
    rules = parse_operators(src)
    rules["onnx_release"] = parse_onnx_release(src)
    rules["dtypes"] = parse_convert_dtype(src)
    rules["uint8_intermediate"] = parse_uint8_intermediate(src)
    rules["cast_uint8"] = parse_cast_uint8(src)
    rules["uint8_refusing_importers"] = parse_uint8_refusing_importers(src)
    return src, rules


def intersect(a: dict, b: dict) -> dict:
    """Rules that hold on both branches: the stricter of each."""
    out = dict(a)
    out["operators"] = {}
    for name in sorted(set(a["operators"]) & set(b["operators"])):
        ea, eb = a["operators"][name], b["operators"][name]
        merged = {"types": [t for t in ea["types"] if t in eb["types"]], "source": ea["source"] + "; " + eb["source"]}
        restrictions = [r for r in (ea.get("restrictions"), eb.get("restrictions")) if r]
        if restrictions:
            merged["restrictions"] = " / ".join(dict.fromkeys(restrictions))
        if ea.get("experimental") or eb.get("experimental"):
            merged["experimental"] = True
        out["operators"][name] = merged
    out["unsupported_operators"] = sorted(set(a["unsupported_operators"]) | set(b["unsupported_operators"])
                                          | (set(a["operators"]) ^ set(b["operators"])))
    out["opset"] = {"min": max(a["opset"]["min"] or 0, b["opset"]["min"] or 0) or None,
                    "max": min(a["opset"]["max"], b["opset"]["max"]),
                    "source": a["opset"]["source"] + "; " + b["opset"]["source"], "quote": a["opset"]["quote"]}
    out["dtypes"] = {"map": {k: v for k, v in a["dtypes"]["map"].items() if b["dtypes"]["map"].get(k) == v},
                     "source": a["dtypes"]["source"] + "; " + b["dtypes"]["source"]}
    resize_a, resize_b = a["attribute_values"].get("Resize", {}), b["attribute_values"].get("Resize", {})
    if resize_a and resize_b:
        out["attribute_values"] = {"Resize": {
            key: ([v for v in resize_a[key] if v in resize_b.get(key, [])] if key != "source"
                  else resize_a[key] + "; " + resize_b[key]) for key in resize_a}}
    out["zero_point_must_be_zero"] = {**b["zero_point_must_be_zero"], **a["zero_point_must_be_zero"]}
    if not out.get("uint8_intermediate"):
        out["uint8_intermediate"] = b.get("uint8_intermediate")
    return out


def rules_for(version: str, onnx_trt: Path, tensorrt: Path) -> dict:
    branches, trt_ref, note = VERSIONS[version]
    sources, merged = [], None
    for branch in branches:
        src, rules = extract_branch(onnx_trt, branch)
        sources.append(src.describe())
        merged = rules if merged is None else intersect(merged, rules)
    assert merged is not None
    contract = parse_tensorrt_uint8_contract(Source(tensorrt, TENSORRT, trt_ref))
    cast = merged.pop("cast_uint8")
    partners = cast["partner_types"] if cast else contract["partner_types"]
    opset = merged.pop("opset")
    if opset["min"] is None:
        # 8.x documents no lower bound; ModelImporter only warns below opset 7.
        opset["min"] = 7
        opset["min_note"] = "not documented; ModelImporter.cpp warns below opset 7"
    intermediate = merged.pop("uint8_intermediate")
    uint8 = {
        "rule": "uint8 only on graph inputs whose every consumer is a Cast to a partner type, and on graph "
                "outputs made by a Cast from a partner type; no other uint8 tensor",
        "cast_partner_types": partners,
        "cast_source": cast["source"] if cast else contract["source"],
        "intermediate_check": intermediate or {
            "enforced_by": "TensorRT itself (this parser has no intermediate check of its own; several "
                           "importers refuse UINT8 inputs, see refusing_importers)",
            "source": contract["source"]},
        "tensorrt_contract": contract,
        "note": merged.pop("uint8_note", None),
    }
    refusing = merged.pop("uint8_refusing_importers")
    if refusing and refusing["operators"]:
        uint8["refusing_importers"] = refusing
    return {
        "tensorrt": version,
        "generated_by": "scripts/extract_trt_parser_rules.py",
        "onnx_tensorrt": sources,
        "tensorrt_headers": Source(tensorrt, TENSORRT, trt_ref).describe(),
        "note": note,
        "opset": opset,
        "onnx_release": merged.pop("onnx_release"),
        "dtypes": merged.pop("dtypes"),
        "uint8": uint8,
        "attribute_values": merged.pop("attribute_values"),
        "zero_point_must_be_zero": merged.pop("zero_point_must_be_zero"),
        "unsupported_operators": merged.pop("unsupported_operators"),
        "operators": merged.pop("operators"),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-tensorrt", type=Path, default=Path("/work/.mirror/onnx+onnx-tensorrt/repo"),
                        help="bare git mirror of github:onnx/onnx-tensorrt")
    parser.add_argument("--tensorrt", type=Path, default=Path("/work/.mirror/NVIDIA+TensorRT/repo"),
                        help="bare git mirror of github:NVIDIA/TensorRT")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for version in VERSIONS:
        rules = rules_for(version, args.onnx_tensorrt, args.tensorrt)
        target = args.out / f"trt{version}.json"
        target.write_text(json.dumps(rules, indent=1, sort_keys=False) + "\n")
        print(f"{target}: "
              f"{len(rules['operators'])} operators, opset {rules['opset']['min']}-{rules['opset']['max']}, "
              f"from {', '.join(s['branch'] + '@' + s['commit'][:8] for s in rules['onnx_tensorrt'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
