"""Roofline latency floors from an ONNX graph: counted MACs and tensor bytes vs a module's peak rates.

``count_graph(model, width, height)`` fixes the graph's dynamic H x W, runs ONNX
shape inference, and counts per node:

* multiply-accumulates of Conv, ConvTranspose, MatMul and Gemm (bias adds and
  activations are not MACs);
* tensor bytes: every input and output of every data-moving node (weights
  included); shape-only ops (Shape, Constant, Reshape, Squeeze, ...) move none.

Two byte totals are kept, because what reaches DRAM depends on the compiler:

* ``bytes_unfused``: each node reads its inputs from and writes its outputs to
  DRAM (ONNX Runtime on a CPU is close to this);
* ``bytes_fused``: what an optimising engine such as TensorRT typically leaves:
  only kernel boundaries move data (Conv/ConvTranspose/MatMul/Gemm, pools,
  Resize), elementwise ops, BatchNorm and activations are fused into their
  producer, Concat is eliminated (producers write into the concatenated buffer),
  and the graph's own inputs/outputs are read/written once. This is the floor.

Floating-point activations are counted at the precision being estimated (fp32 4
bytes, fp16 2, int8 1); integer tensors (uint8 images, int64 shapes) at their
own size. ``estimate(counts, module, precision)`` is the roofline: the larger
of MACs / peak tensor rate and bytes / DRAM bandwidth. It is a FLOOR: real
engines reach perhaps 50-80% of DRAM bandwidth and less of peak math, and launch
overheads are ignored. It is printed as an estimate, never as a measurement.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sage_edge.errors import SageEdgeError

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}

# Jetson Orin modules. Peak rates are the GPU's only (the DLAs are not used by sage-edge), at the maximum
# power mode (MAXN; for Orin Nano and NX the original JetPack 5 rates, not the JetPack 6.1 "Super" modes).
# Sources:
#   [TB]  NVIDIA Jetson AGX Orin Series Technical Brief v1.2 (July 2022), "Jetson AGX Orin 64GB ... GPU: up to
#         170 Sparse INT8 TOPS"; 204.8 GB/s LPDDR5.
#   [DS-AGX] NVIDIA Jetson AGX Orin Series Data Sheet DS-10662-001 (module table: AI performance, GPU
#         cores/tensor cores, max GPU frequency, memory bandwidth).
#   [DS-NX] NVIDIA Jetson Orin NX Series Data Sheet DS-10712-001 (Orin NX 16GB: 100 TOPS = GPU 60 + 2 DLA 40;
#         Orin NX 8GB: 70 TOPS = GPU 50 + 1 DLA 20; 102.4 GB/s LPDDR5).
#   [DS-NANO] NVIDIA Jetson Orin Nano Series Data Sheet DS-11105-001 (Orin Nano 8GB: 40 TOPS, GPU only;
#         68 GB/s LPDDR5).
#   [MOD] developer.nvidia.com/embedded/jetson-modules (module comparison table), the same figures.
# The data sheets quote SPARSE INT8 TOPS. Dense INT8 is half of it (2:4 structured sparsity doubles the rate);
# dense FP16 on Ampere tensor cores is half of dense INT8. The cross-check is the tensor-core arithmetic:
# sparse INT8 ops = tensor cores x 2048 ops/clock x max GPU clock, e.g. 64 x 2048 x 1.3 GHz = 170 TOPS.
# Dense FP16 below is therefore sparse INT8 / 4 (in TFLOPS = 2 x TMAC/s).


@dataclass(frozen=True)
class Module:
    name: str
    description: str
    gpu: str
    sparse_int8_tops: float  # GPU, as published
    dram_gb_s: float  # published LPDDR5 bandwidth, GB/s (1e9 bytes/s)
    source: str

    @property
    def dense_int8_tops(self) -> float:
        return self.sparse_int8_tops / 2.0

    @property
    def dense_fp16_tflops(self) -> float:
        return self.sparse_int8_tops / 4.0

    def peak_macs_per_s(self, precision: str) -> float:
        """Peak multiply-accumulates per second (1 MAC = 2 ops) at a precision."""
        if precision == "int8":
            return self.dense_int8_tops * 1e12 / 2.0
        if precision == "fp16":
            return self.dense_fp16_tflops * 1e12 / 2.0
        if precision == "fp32":  # FP32 has no tensor-core path on Orin in TensorRT by default: CUDA cores
            return self.fp32_tflops * 1e12 / 2.0
        raise SageEdgeError(f"unknown precision '{precision}'; choose from {', '.join(PRECISION_BYTES)}")

    @property
    def fp32_tflops(self) -> float:
        # CUDA cores x 2 FLOP (FMA) x clock; parsed from the gpu string's "N-core @ F GHz".
        cores, ghz = _cores_and_clock(self.gpu)
        return cores * 2 * ghz / 1000.0


def _cores_and_clock(gpu: str) -> tuple[int, float]:
    import re

    match = re.search(r"(\d+)-core .*@ ([0-9.]+) GHz", gpu)
    if not match:
        raise SageEdgeError(f"module table entry without '<cores>-core ... @ <GHz> GHz': {gpu}")
    return int(match.group(1)), float(match.group(2))


MODULES: dict[str, Module] = {
    "orin-nano": Module(
        "orin-nano", "Jetson Orin Nano 8GB (15 W, JetPack 5 clocks)",
        "1024-core Ampere, 32 tensor cores @ 0.625 GHz", 40.0, 68.0, "DS-NANO, MOD",
    ),
    "orin-nx-8": Module(
        "orin-nx-8", "Jetson Orin NX 8GB (MAXN)",
        "1024-core Ampere, 32 tensor cores @ 0.765 GHz", 50.0, 102.4, "DS-NX, MOD",
    ),
    "orin-nx-16": Module(
        "orin-nx-16", "Jetson Orin NX 16GB (MAXN)",
        "1024-core Ampere, 32 tensor cores @ 0.918 GHz", 60.0, 102.4, "DS-NX, MOD",
    ),
    "orin-agx-32": Module(
        "orin-agx-32", "Jetson AGX Orin 32GB (MAXN)",
        "1792-core Ampere, 56 tensor cores @ 0.93 GHz", 108.0, 204.8, "DS-AGX, MOD",
    ),
    "orin-agx-64": Module(
        "orin-agx-64", "Jetson AGX Orin 64GB (MAXN)",
        "2048-core Ampere, 64 tensor cores @ 1.3 GHz", 170.0, 204.8, "TB, DS-AGX, MOD",
    ),
}

MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Ops that survive fusion as their own kernels (their inputs are read and outputs written).
KERNEL_OPS = MAC_OPS + ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize", "Upsample")
# Ops that only rearrange metadata (or are folded at build time): no tensor traffic.
SHAPE_OPS = (
    "Shape", "Constant", "ConstantOfShape", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity",
    "Size", "Range",
)

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)


@dataclass
class NodeCount:
    name: str
    op_type: str
    macs: int
    bytes: int


@dataclass
class GraphCount:
    model: str
    width: int
    height: int
    precision: str
    macs: int
    bytes_unfused: int
    bytes_fused: int
    nodes: list[NodeCount] = field(default_factory=list)

    def by_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for node in self.nodes:
            row = table.setdefault(node.op_type, {"count": 0, "macs": 0, "bytes": 0})
            row["count"] += 1
            row["macs"] += node.macs
            row["bytes"] += node.bytes
        return table

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("nodes")
        out["by_op"] = self.by_op()
        return out


def _fix_input_dims(model: Any, width: int, height: int) -> None:
    """Give every dynamic input dim a value: batch 1, H and W from the resolution (NHWC or NCHW)."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            for d in dims:
                if not d.HasField("dim_value"):
                    d.dim_value = 1
            continue
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        # NHWC when the last axis is a small static channel count, else NCHW.
        nhwc = dims[3].HasField("dim_value") and dims[3].dim_value in (1, 3, 4) and (
            not dims[1].HasField("dim_value") or dims[1].dim_value not in (1, 3, 4)
        )
        h_axis, w_axis = (1, 2) if nhwc else (2, 3)
        for i in dynamic:
            dims[i].ClearField("dim_param")
            dims[i].dim_value = height if i == h_axis else width if i == w_axis else 1
        for axis, want in ((h_axis, height), (w_axis, width)):
            if dims[axis].dim_value != want:
                raise SageEdgeError(
                    f"model input '{value.name}' has a static size {dims[w_axis].dim_value}x{dims[h_axis].dim_value}, "
                    f"not {width}x{height}"
                )


def _tensor_info(model: Any) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, onnx elem_type) for every tensor with a fully known shape."""
    info: dict[str, tuple[tuple[int, ...], int]] = {}
    for value in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        t = value.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = t.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            info[value.name] = (tuple(int(d.dim_value) for d in dims), int(t.elem_type))
    for init in model.graph.initializer:
        info[init.name] = (tuple(int(d) for d in init.dims), int(init.data_type))
    return info


def _elem_bytes(elem_type: int, precision: str) -> int:
    import onnx

    if elem_type in _FLOAT_TYPES:
        return PRECISION_BYTES[precision]
    return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_macs(node: Any, info: dict[str, tuple[tuple[int, ...], int]]) -> int:
    def shape(name: str) -> tuple[int, ...]:
        if name not in info:
            raise SageEdgeError(f"shape inference left '{name}' (input/output of {node.op_type}) unknown")
        return info[name][0]

    op = node.op_type
    if op == "Conv":
        w, out = shape(node.input[1]), shape(node.output[0])
        # out: N x Cout x spatial...; w: Cout x Cin/group x k...
        return int(np.prod(out, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if op == "ConvTranspose":
        x, w = shape(node.input[0]), shape(node.input[1])
        group = int(_attr(node, "group", 1))
        # each input element is multiplied into Cout/group x k... outputs; w: Cin x Cout/group x k...
        return int(np.prod(x, dtype=np.int64) * np.prod(w[1:], dtype=np.int64)) if group >= 1 else 0
    if op == "MatMul":
        a, b = shape(node.input[0]), shape(node.input[1])
        out = shape(node.output[0])
        k = a[-1]
        return int(np.prod(out, dtype=np.int64) * k) if len(b) >= 1 else 0
    if op == "Gemm":
        a = shape(node.input[0])
        out = shape(node.output[0])
        k = a[0] if int(_attr(node, "transA", 0)) else a[-1]
        return int(np.prod(out, dtype=np.int64) * k)
    return 0


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, os.PathLike)):
        try:
            return onnx.load(os.fspath(model))
        except Exception as exc:
            raise SageEdgeError(f"{model}: not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None
    return model


def _folded(proto: Any) -> Any:
    """``proto`` with its constant subgraphs folded by ONNX Runtime's basic (standard-ONNX) optimizations.

    The border padding's Pad and Slice take amounts computed in the graph (a Concat of the amount), which
    ONNX's shape inference does not evaluate, so every shape after them would stay unknown.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="sage-edge-roofline-") as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(scratch) / "folded.onnx")
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def count_graph(model: Any, width: int, height: int, precision: str = "fp16", name: str | None = None) -> GraphCount:
    """Count MACs and tensor bytes of an ONNX model (path or ModelProto) at ``width`` x ``height``."""
    import onnx

    if precision not in PRECISION_BYTES:
        raise SageEdgeError(f"unknown precision '{precision}'; choose from {', '.join(PRECISION_BYTES)}")
    from sage_edge.export.border_pad_graph import border_pad_amount, with_fixed_border_pad

    proto = with_fixed_border_pad(_load(model))
    _fix_input_dims(proto, width, height)
    if border_pad_amount(proto):
        proto = _folded(proto)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise SageEdgeError(f"ONNX shape inference failed: {str(exc).splitlines()[0][:200]}") from None
    info = _tensor_info(proto)
    graph_io = {v.name for v in proto.graph.input} | {v.name for v in proto.graph.output}

    def nbytes(tensor: str) -> int:
        if not tensor or tensor not in info:
            return 0
        dims, elem = info[tensor]
        return int(np.prod(dims, dtype=np.int64)) * _elem_bytes(elem, precision)

    nodes: list[NodeCount] = []
    unfused = fused = macs = 0
    for node in proto.graph.node:
        if node.op_type in SHAPE_OPS:
            continue
        node_bytes = sum(nbytes(t) for t in node.input) + sum(nbytes(t) for t in node.output)
        node_macs = _node_macs(node, info) if node.op_type in MAC_OPS else 0
        if node.op_type in MAC_OPS and any(t and t not in info for t in (*node.input[:2], *node.output)):
            raise SageEdgeError(f"shape inference left the shapes of {node.op_type} '{node.name}' unknown")
        nodes.append(NodeCount(node.name, node.op_type, node_macs, node_bytes))
        macs += node_macs
        unfused += node_bytes
        if node.op_type in KERNEL_OPS:
            fused += node_bytes
    # The graph's own inputs are read and outputs written once, by whatever kernel touches them.
    fused += sum(nbytes(t) for t in graph_io)
    label = name or (os.path.basename(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else "model")
    return GraphCount(label, width, height, precision, macs, unfused, fused, nodes)


@dataclass(frozen=True)
class Estimate:
    module: str
    precision: str
    macs: int
    bytes: int
    compute_ms: float
    memory_ms: float

    @property
    def floor_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def bound(self) -> str:
        return "memory" if self.memory_ms >= self.compute_ms else "compute"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "floor_ms": self.floor_ms, "bound": self.bound, "kind": "estimate"}


def get_module(name: str) -> Module:
    if name not in MODULES:
        raise SageEdgeError(f"unknown module '{name}'; choose from {', '.join(MODULES)}")
    return MODULES[name]


def estimate(count: GraphCount, module: str | Module, precision: str | None = None) -> Estimate:
    """Roofline floor of ``count`` (counted at its precision) on ``module``."""
    mod = get_module(module) if isinstance(module, str) else module
    precision = precision or count.precision
    if precision != count.precision:
        raise SageEdgeError(f"count was made at {count.precision}, estimate asked for {precision}")
    compute_ms = count.macs / mod.peak_macs_per_s(precision) * 1e3
    memory_ms = count.bytes_fused / (mod.dram_gb_s * 1e9) * 1e3
    return Estimate(mod.name, precision, count.macs, count.bytes_fused, compute_ms, memory_ms)


def estimate_model(model: Any, width: int, height: int, module: str,
                   precisions: tuple[str, ...] = ("fp16", "int8")) -> list[tuple[GraphCount, Estimate]]:
    """Count once per precision and estimate on ``module``: [(count, estimate), ...]."""
    proto = _load(model)
    name = os.path.basename(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else None
    return [(c, estimate(c, module)) for c in
            (count_graph(proto, width, height, p, name=name) for p in precisions)]


def format_estimate(results: list[tuple[GraphCount, Estimate]]) -> str:
    """The text block `sage-edge bench --estimate` prints (clearly labelled an ESTIMATE)."""
    if not results:
        return ""
    count0, est0 = results[0]
    mod = get_module(est0.module)
    lines = [
        f"ROOFLINE ESTIMATE (not a measurement) - {mod.description}",
        f"  model {count0.model} at {count0.width}x{count0.height}: {count0.macs / 1e9:.2f} GMAC",
        f"  peaks: {mod.dense_fp16_tflops:.1f} TFLOPS dense FP16, {mod.dense_int8_tops:.1f} TOPS dense INT8 "
        f"(GPU, from {mod.sparse_int8_tops:g} sparse INT8 TOPS), DRAM {mod.dram_gb_s:g} GB/s  [source: {mod.source}]",
    ]
    for count, est in results:
        lines.append(
            f"  {est.precision:>5}: {count.bytes_fused / 1e9:.3f} GB DRAM traffic if fused "
            f"({count.bytes_unfused / 1e9:.3f} GB unfused); compute {est.compute_ms:.2f} ms, "
            f"memory {est.memory_ms:.2f} ms -> floor {est.floor_ms:.2f} ms ({est.bound}-bound, "
            f"<= {1000.0 / est.floor_ms:.0f} FPS)"
        )
    lines.append("  A floor: real engines reach a fraction of peak bandwidth; measure with `sage-edge bench`.")
    return "\n".join(lines)
