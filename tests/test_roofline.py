"""MAC / tensor-byte counting on a small known graph (exact counts) and the roofline arithmetic."""
from __future__ import annotations

import numpy as np
import pytest

from sage_edge import roofline
from sage_edge.errors import SageEdgeError


def _small_graph():
    """X(1x3xHxW) -Conv3x3(8)-Relu-MaxPool2-ConvT2x2/2(4)-GlobalAvgPool-Flatten-Gemm(4->5)-MatMul(5->6)-> Y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name, shape):
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["X", "W1", "B1"], ["c1"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ConvTranspose", ["p1", "W2"], ["u1"], name="up", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["u1"], ["g1"], name="gap"),
        helper.make_node("Flatten", ["g1"], ["f1"], name="flat"),
        helper.make_node("Gemm", ["f1", "W3"], ["m1"], name="gemm"),
        helper.make_node("MatMul", ["m1", "W4"], ["Y"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 6])],
        [init("W1", (8, 3, 3, 3)), init("B1", (8,)), init("W2", (8, 4, 2, 2)), init("W3", (4, 5)),
         init("W4", (5, 6))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_exact_counts_on_a_small_graph() -> None:
    count = roofline.count_graph(_small_graph(), width=16, height=8, precision="fp32")
    conv = 1 * 8 * 8 * 16 * (3 * 3 * 3)  # N Cout Hout Wout x Cin k k = 27648
    convt = (1 * 8 * 4 * 8) * (4 * 2 * 2)  # input elements x Cout k k = 4096
    gemm = 1 * 5 * 4
    matmul = 1 * 6 * 5
    assert count.macs == conv + convt + gemm + matmul == 31794
    ops = count.by_op()
    assert ops["Conv"]["macs"] == conv and ops["ConvTranspose"]["macs"] == convt
    assert ops["Gemm"]["macs"] == gemm and ops["MatMul"]["macs"] == matmul
    f = 4  # bytes per float at fp32
    conv_b = (3 * 8 * 16 + 8 * 3 * 3 * 3 + 8 + 8 * 8 * 16) * f  # X + W1 + B1 + c1 = 6528
    relu_b = 2 * 8 * 8 * 16 * f  # 8192
    pool_b = (8 * 8 * 16 + 8 * 4 * 8) * f  # 5120
    convt_b = (8 * 4 * 8 + 8 * 4 * 2 * 2 + 4 * 8 * 16) * f  # 3584
    gap_b = (4 * 8 * 16 + 4) * f  # 2064
    gemm_b = (4 + 4 * 5 + 5) * f  # 116
    matmul_b = (5 + 5 * 6 + 6) * f  # 164
    assert ops["Conv"]["bytes"] == conv_b and ops["Relu"]["bytes"] == relu_b and ops["MaxPool"]["bytes"] == pool_b
    assert "Flatten" not in ops  # a view: no traffic
    assert count.bytes_unfused == conv_b + relu_b + pool_b + convt_b + gap_b + gemm_b + matmul_b == 25768
    graph_io = (3 * 8 * 16 + 6) * f
    # Fused: Relu folds into the Conv; the graph's input and output cross DRAM once more.
    assert count.bytes_fused == conv_b + pool_b + convt_b + gap_b + gemm_b + matmul_b + graph_io == 19136


def test_precision_scales_float_bytes_and_not_macs() -> None:
    fp32 = roofline.count_graph(_small_graph(), 16, 8, "fp32")
    fp16 = roofline.count_graph(_small_graph(), 16, 8, "fp16")
    int8 = roofline.count_graph(_small_graph(), 16, 8, "int8")
    assert fp32.macs == fp16.macs == int8.macs
    assert fp16.bytes_unfused * 2 == fp32.bytes_unfused == int8.bytes_unfused * 4


def test_roofline_arithmetic() -> None:
    count = roofline.count_graph(_small_graph(), 16, 8, "fp16")
    est = roofline.estimate(count, "orin-agx-64")
    module = roofline.MODULES["orin-agx-64"]
    assert module.dense_fp16_tflops == pytest.approx(42.5)  # 170 sparse INT8 TOPS / 4
    assert est.compute_ms == pytest.approx(count.macs / (42.5e12 / 2) * 1e3)
    assert est.memory_ms == pytest.approx(count.bytes_fused / 204.8e9 * 1e3)
    assert est.floor_ms == max(est.compute_ms, est.memory_ms)
    # Every module cites its source and is self-consistent: tensor cores x 2048 ops/clock x clock = sparse TOPS.
    for mod in roofline.MODULES.values():
        assert mod.source
        import re

        tc, ghz = re.search(r"(\d+) tensor cores @ ([0-9.]+) GHz", mod.gpu).groups()
        assert int(tc) * 2048 * float(ghz) / 1000 == pytest.approx(mod.sparse_int8_tops, rel=0.03)


def test_student_counts_match_the_architecture(official_onnx) -> None:
    """The published student at 640x512: MACs from its layer list by hand; DRAM traffic near the issue's 0.45 GB.

    The network runs on the frame grown by the graph's border padding on every side."""
    import onnx

    from sage_edge.export.border_pad_graph import border_pad_amount

    pad = border_pad_amount(onnx.load(str(official_onnx))) or 0
    h, w = 512 + 2 * pad, 640 + 2 * pad
    c, k = 32, 9
    full = k * (2 * c + c * c + c * c) + 2 * c * c + 3 * k * c * c + k * c  # module1, adjust5, module5, final
    half = 3 * k * c * c + 2 * c * c + 3 * k * c * c  # module2, adjust4, module4
    quarter = 3 * k * c * c  # module3
    expected = full * h * w + half * (h // 2) * (w // 2) + quarter * (h // 4) * (w // 4)
    count = roofline.count_graph(official_onnx, 640, 512, "fp16")
    assert count.macs == expected
    assert 20e9 < count.macs < (22e9 if pad == 0 else 25e9)
    area = (h * w) / (512 * 640)  # the padded frame's share of the figures
    assert 0.40e9 * area < count.bytes_fused < 0.50e9 * area
    agx = roofline.estimate(count, "orin-agx-64")
    nx = roofline.estimate(count, "orin-nx-16")
    assert agx.bound == nx.bound == "memory"
    assert 2.0 * area < agx.floor_ms < 2.5 * area and 4.0 * area < nx.floor_ms < 5.0 * area
    text = roofline.format_estimate(roofline.estimate_model(official_onnx, 640, 512, "orin-nx-16"))
    assert "ESTIMATE" in text and "int8" in text and "fp16" in text


def test_bad_inputs() -> None:
    with pytest.raises(SageEdgeError):
        roofline.get_module("orin-mega")
    with pytest.raises(SageEdgeError):
        roofline.count_graph(_small_graph(), 16, 8, "fp8")
