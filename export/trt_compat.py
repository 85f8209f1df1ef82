"""Will TensorRT's ONNX parser take this model? A check that needs only ``onnx`` (no TensorRT, no torch).

The rules of each TensorRT version are data, extracted from that version's onnx-tensorrt sources
by ``scripts/extract_trt_parser_rules.py`` into ``trt_parser_rules/trt<VERSION>.json`` (each rule
records its repository, branch, commit, path and line). What is checked, per version:

* opset: the default-domain opset lies in the documented range (``docs/operators.md``);
* operators: every node's op type is in the version's operator table and marked supported;
* data types: every tensor type maps to a TensorRT type (``convertDtype``; 8.x maps INT64 to INT32),
  and each node's data tensor has a type the table lists for that operator;
* uint8: uint8 only on graph inputs whose every consumer is a Cast to FP32/FP16, and on graph
  outputs made by a Cast from FP32/FP16; no other uint8 tensor (``ModelImporter.cpp`` from 8.6-GA
  on; on 8.5 TensorRT's own kUINT8 contract, ``NvInferRuntimeCommon.h``);
* the machine-checkable restrictions of the table: Resize's modes, Q/DQ zero points equal to 0.

The IR version is not a rule: every parser only logs it. Nested graphs (If/Loop bodies) are
checked for operator support only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sage_edge.errors import SageEdgeError

RULES_DIR = Path(__file__).resolve().parent / "trt_parser_rules"
# Every TensorRT release sage-edge supports, oldest first (JetPack 5.1: 8.5, 6.0: 8.6, 6.1/6.2: 10.3, 7: 11).
TRT_VERSIONS = ("8.5", "8.6", "10", "11")
# The highest opset that every version above parses (8.5-GA and 8.6-GA docs/operators.md: "up to Opset 17").
PORTABLE_OPSET = 17
ONNX_HINT = "checking a model against TensorRT's parser rules needs the onnx package: pip install onnx"

# Ops whose table types describe their output (they have no data input, or only a shape input).
_OUTPUT_TYPED = {"Constant", "ConstantOfShape", "RandomNormal", "RandomUniform"}
# TensorRT type names in the order docs/operators.md lists them.
_TYPE_ORDER = ["FP32", "FP16", "BF16", "FP8", "FP4", "INT64", "INT32", "INT8", "INT4", "UINT8", "BOOL"]
# ONNX defaults of Resize's checked attributes (ONNX Operators.md, Resize).
_RESIZE_DEFAULTS = {"coordinate_transformation_mode": "half_pixel", "mode": "nearest",
                    "nearest_mode": "round_prefer_floor"}


@dataclass(frozen=True)
class Violation:
    """One reason the parser of one or more TensorRT versions would refuse the model."""

    versions: Tuple[str, ...]
    node: str  # node name ("" for the model as a whole)
    op_type: str
    rule: str  # opset | operator | dtype | uint8 | attribute | zero-point
    message: str

    def where(self) -> str:
        if not self.op_type:
            return "model"
        return f"node '{self.node}' ({self.op_type})"

    def __str__(self) -> str:
        return f"TensorRT {', '.join(self.versions)}: {self.where()}: {self.message} [{self.rule} rule]"


@dataclass
class TrtReport:
    versions: Tuple[str, ...]
    violations: List[Violation] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def failing(self, version: str) -> List[Violation]:
        return [v for v in self.violations if version in v.versions]


@lru_cache(maxsize=None)
def load_rules(version: str) -> Dict[str, Any]:
    path = RULES_DIR / f"trt{version}.json"
    if version not in TRT_VERSIONS or not path.is_file():
        raise SageEdgeError(f"no TensorRT parser rules for '{version}'; choose from {', '.join(TRT_VERSIONS)}")
    return json.loads(path.read_text())


def describe_rules(version: str) -> str:
    """'onnx-tensorrt 8.5-GA@fdeeaca8, opsets 7-17' for the OK/summary lines."""
    rules = load_rules(version)
    branches = ", ".join(f"{s['branch']}@{s['commit'][:8]}" for s in rules["onnx_tensorrt"])
    return f"onnx-tensorrt {branches}; opsets {rules['opset']['min']}-{rules['opset']['max']}"


def version_key(version: str) -> Optional[str]:
    """The rules key for a TensorRT version string ('8.6.2.3' -> '8.6', '10.3.0' -> '10'); None if unsupported."""
    parts = [p for p in str(version).strip().split(".") if p]
    digits = ["".join(ch for ch in p if ch.isdigit()) for p in parts[:2]]
    if not digits or not digits[0]:
        return None
    major = int(digits[0])
    if major == 8 and len(digits) > 1 and digits[1]:
        key = f"8.{int(digits[1])}"
        return key if key in TRT_VERSIONS else None
    return str(major) if str(major) in TRT_VERSIONS else None


def parse_versions(values: Sequence[str]) -> Tuple[str, ...]:
    """--trt values ('8.5', '8.6', '10', '11', '10.3', 'all'; repeatable or comma-separated) -> rules keys."""
    keys: List[str] = []
    for value in values:
        for piece in str(value).split(","):
            piece = piece.strip()
            if not piece:
                continue
            if piece.lower() == "all":
                keys.extend(TRT_VERSIONS)
                continue
            key = version_key(piece)
            if key is None:
                raise SageEdgeError(f"--trt {piece}: sage-edge knows the parser rules of TensorRT "
                                    f"{', '.join(TRT_VERSIONS)}")
            keys.append(key)
    ordered = tuple(v for v in TRT_VERSIONS if v in keys)
    return ordered or TRT_VERSIONS


def versions_for_opset(opset: int) -> Tuple[str, ...]:
    """The TensorRT versions whose parser supports ``opset`` (17: all; 18-20: 10 and 11)."""
    return tuple(v for v in TRT_VERSIONS if load_rules(v)["opset"]["min"] <= opset <= load_rules(v)["opset"]["max"])


def require_opset_supported(opset: int) -> Tuple[str, ...]:
    """``versions_for_opset``, or a one-line error when no supported TensorRT parses ``opset``."""
    versions = versions_for_opset(opset)
    if not versions:
        ranges = ", ".join(f"{v}: {load_rules(v)['opset']['min']}-{load_rules(v)['opset']['max']}" for v in TRT_VERSIONS)
        raise SageEdgeError(f"opset {opset}: no supported TensorRT parses it (opsets {ranges}); "
                            f"use --opset {PORTABLE_OPSET}, which every one of them parses")
    return versions


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise SageEdgeError(ONNX_HINT) from None
    return onnx


def load_model(model_or_path: Any) -> Any:
    """An onnx.ModelProto from a ModelProto or a path (weights are not needed, so not loaded)."""
    onnx = _onnx()
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    path = Path(os.fspath(model_or_path))
    if not path.is_file():
        raise SageEdgeError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise SageEdgeError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


class _Graph:
    """The top-level graph with every tensor's element type (after ONNX type inference) and its edges."""

    def __init__(self, model: Any) -> None:
        onnx = _onnx()
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # an odd model: check what its own value_info says
            inferred = model
        graph = inferred.graph
        self.model = inferred
        self.nodes = list(graph.node)
        self.inputs = [i.name for i in graph.input]
        self.outputs = [o.name for o in graph.output]
        self.initializers = {t.name: t for t in graph.initializer}
        self.types: Dict[str, int] = {}
        for info in list(graph.input) + list(graph.output) + list(graph.value_info):
            elem = info.type.tensor_type.elem_type
            if elem:
                self.types[info.name] = elem
        for name, tensor in self.initializers.items():
            self.types[name] = tensor.data_type
        self.constants: Dict[str, Any] = dict(self.initializers)
        for node in self.nodes:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = attr.t
                        self.types.setdefault(node.output[0], attr.t.data_type)
        self.graph_inputs = [n for n in self.inputs if n not in self.initializers]
        self.producer = {out: node for node in self.nodes for out in node.output if out}
        self.consumers: Dict[str, List[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)

    @staticmethod
    def type_name(elem: int) -> str:
        return _onnx().TensorProto.DataType.Name(elem)

    def opset(self) -> Optional[int]:
        versions = [o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        return versions[0] if versions else None


def node_label(node: Any) -> str:
    return node.name or f"<unnamed {node.op_type} -> {node.output[0] if node.output else '?'}>"


def _attribute(node: Any, name: str, default: Any = None) -> Any:
    onnx = _onnx()
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _nested_nodes(nodes: Sequence[Any]) -> List[Any]:
    """Nodes of every subgraph (If/Loop/Scan bodies), recursively."""
    found: List[Any] = []
    for node in nodes:
        for attr in node.attribute:
            graphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for sub in graphs:
                found.extend(sub.node)
                found.extend(_nested_nodes(sub.node))
    return found


class _VersionCheck:
    """The violations of one TensorRT version, as (node, op_type, rule, message) tuples."""

    def __init__(self, graph: _Graph, version: str) -> None:
        self.graph, self.version, self.rules = graph, version, load_rules(version)
        self.found: List[Tuple[str, str, str, str]] = []

    def add(self, node: Any, rule: str, message: str) -> None:
        if node is None:
            self.found.append(("", "", rule, message))
        else:
            self.found.append((node_label(node), node.op_type, rule, message))

    def run(self) -> List[Tuple[str, str, str, str]]:
        self.check_opset()
        self.check_uint8()
        for node in self.graph.nodes:
            self.check_operator(node)
        for node in _nested_nodes(self.graph.nodes):
            self.check_operator(node, nested=True)
        return self.found

    def check_opset(self) -> None:
        opset, bounds = self.graph.opset(), self.rules["opset"]
        if opset is None:
            self.add(None, "opset", "no default-domain (ai.onnx) opset import")
        elif not bounds["min"] <= opset <= bounds["max"]:
            self.add(None, "opset", f"opset {opset}: the parser supports opsets {bounds['min']} to {bounds['max']}")

    def check_operator(self, node: Any, nested: bool = False) -> None:
        entry = self.rules["operators"].get(node.op_type)
        if entry is None:
            listed = "marked unsupported in" if node.op_type in self.rules["unsupported_operators"] else "absent from"
            where = " (inside a subgraph)" if nested else ""
            self.add(node, "operator", f"{node.op_type}{where} is {listed} the parser's operator table "
                                       f"(onnx-tensorrt docs/operators.md)")
            return
        if nested:
            return
        self.check_types(node, entry)
        self.check_attributes(node)
        self.check_zero_point(node)

    def check_types(self, node: Any, entry: Dict[str, Any]) -> None:
        if node.op_type == "Cast":
            tensors = [t for t in (node.input[:1] + node.output[:1]) if t]
        elif node.op_type in _OUTPUT_TYPED:
            tensors = [t for t in node.output[:1] if t]
        else:
            tensors = [t for t in node.input if t][:1]
        uint8 = _onnx().TensorProto.UINT8
        for tensor in tensors:
            elem = self.graph.types.get(tensor)
            if not elem or elem == uint8:  # unknown, or owned by the uint8 rule
                continue
            onnx_name = self.graph.type_name(elem)
            trt_name = self.rules["dtypes"]["map"].get(onnx_name)
            if trt_name is None:
                self.add(node, "dtype", f"tensor '{tensor}' is {onnx_name}, a type the parser cannot import "
                                        f"(convertDtype)")
            elif entry["types"] and trt_name not in entry["types"]:
                self.add(node, "dtype", f"{node.op_type} on {onnx_name} ('{tensor}'): the parser supports "
                                        f"{node.op_type} on {', '.join(entry['types'])} only")

    def check_attributes(self, node: Any) -> None:
        allowed = self.rules["attribute_values"].get(node.op_type)
        if not allowed:
            return
        for name, values in allowed.items():
            if name == "source":
                continue
            value = _attribute(node, name, _RESIZE_DEFAULTS.get(name))
            if value is not None and value not in values:
                self.add(node, "attribute", f"{name}='{value}': the parser supports {', '.join(values)}")

    def check_zero_point(self, node: Any) -> None:
        if node.op_type not in self.rules["zero_point_must_be_zero"] or len(node.input) < 3 or not node.input[2]:
            return
        tensor = self.graph.constants.get(node.input[2])
        if tensor is None:
            return
        from onnx import numpy_helper

        if numpy_helper.to_array(tensor).any():
            self.add(node, "zero-point", f"zero point '{node.input[2]}' is not 0; the parser needs symmetric "
                                         "quantization (zero point 0)")

    def check_uint8(self) -> None:
        """uint8 only at graph inputs that feed Casts alone and at graph outputs made by a Cast."""
        graph = self.graph
        uint8 = _onnx().TensorProto.UINT8
        partners = self.rules["uint8"]["cast_partner_types"]
        partner_text = "/".join(sorted(partners, key=_TYPE_ORDER.index))
        reasons: Dict[int, List[str]] = {}
        node_of: Dict[int, Any] = {}

        def reason(node: Any, text: str) -> None:
            reasons.setdefault(id(node), []).append(text)
            node_of[id(node)] = node

        def trt_type(tensor: str) -> Optional[str]:
            elem = graph.types.get(tensor)
            return self.rules["dtypes"]["map"].get(graph.type_name(elem)) if elem else None

        for name in graph.graph_inputs:
            if graph.types.get(name) != uint8:
                continue
            for consumer in graph.consumers.get(name, []):
                cast_to = None
                if consumer.op_type == "Cast":
                    to = _attribute(consumer, "to")
                    cast_to = self.rules["dtypes"]["map"].get(graph.type_name(to)) if to else None
                if cast_to not in partners:
                    reason(consumer, f"reads uint8 graph input '{name}'")
            if name in graph.outputs:
                self.add(None, "uint8", f"uint8 graph input '{name}' is also a graph output: pass it through a "
                                        f"Cast to {partner_text} and back")
        for name, tensor in graph.initializers.items():
            if tensor.data_type == uint8:
                for consumer in graph.consumers.get(name, []):
                    reason(consumer, f"reads uint8 initializer '{name}'")
        for node in graph.nodes:
            for out in node.output:
                if not out or graph.types.get(out) != uint8:
                    continue
                if out not in graph.outputs:
                    reason(node, f"makes uint8 intermediate tensor '{out}'")
                elif node.op_type != "Cast" or trt_type(node.input[0]) not in partners:
                    reason(node, f"makes uint8 graph output '{out}' without a Cast from {partner_text}")
        rule = (f"uint8 is allowed only on graph inputs that feed Casts to {partner_text} alone and on graph "
                f"outputs made by a Cast from {partner_text}")
        for key, texts in reasons.items():
            self.add(node_of[key], "uint8", f"{' and '.join(texts)}; {rule}")


def check_trt(model_or_path: Any, versions: Optional[Sequence[str]] = None) -> TrtReport:
    """Every violation of the parser rules of ``versions`` (default: all), merged across versions."""
    model = load_model(model_or_path)
    versions = tuple(versions) if versions else TRT_VERSIONS
    graph = _Graph(model)
    merged: Dict[Tuple[str, str, str, str], List[str]] = {}
    for version in versions:
        for key in _VersionCheck(graph, version).run():
            merged.setdefault(key, [])
            if version not in merged[key]:
                merged[key].append(version)
    report = TrtReport(versions=versions)
    report.violations = [Violation(tuple(vs), *key) for key, vs in merged.items()]
    for version in versions:
        release = load_rules(version)["onnx_release"]
        if release.get("ir_version") and model.ir_version > release["ir_version"]:
            report.notes.append(f"TensorRT {version}: IR version {model.ir_version} is newer than ONNX "
                                f"{release['release']}'s (IR {release['ir_version']}) that the parser is built "
                                f"against; the parser only logs it")
    return report


def check_trt_compatible(model_or_path: Any, versions: Optional[Sequence[str]] = None) -> List[Violation]:
    """The violations (empty when every version in ``versions``, default all, would parse the model)."""
    return check_trt(model_or_path, versions).violations


def require_trt_compatible(model_or_path: Any, versions: Optional[Sequence[str]] = None,
                           what: str = "model") -> None:
    """Raise SageEdgeError with the first violation (one line) when the model breaks a parser rule."""
    violations = check_trt_compatible(model_or_path, versions)
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise SageEdgeError(f"{what} refused, TensorRT's ONNX parser would reject it: {violations[0]}{more}")


__all__ = ["PORTABLE_OPSET", "TRT_VERSIONS", "TrtReport", "Violation", "check_trt", "check_trt_compatible",
           "describe_rules", "load_rules", "parse_versions", "require_opset_supported", "require_trt_compatible",
           "version_key", "versions_for_opset"]
