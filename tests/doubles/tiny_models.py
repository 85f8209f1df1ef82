"""Tiny ONNX models with sage-edge's I/O contract, built with onnx.helper (for the TensorRT doubles' tests).

Node names follow the exporter: the network under ``/student/``, colour maths and casts outside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(model, path: Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def uint8_model(path: Path, static: tuple[int, int] | None = None, opset: int = 17) -> Path:
    """ir 1xHxWx1 u8, vis 1xHxWx3 u8 -> fused 1xHxWx3 u8, fused_y 1xHxWx1 u8, legal for every TensorRT parser.

    As the exporter does (sage_edge/models/end_to_end.py): each uint8 input feeds only a Cast, and each
    uint8 output is made by a Cast; no uint8 tensor in between (onnx-tensorrt 8.6-GA ModelImporter.cpp).
    """
    from onnx import TensorProto, helper, numpy_helper

    h, w = static if static else ("height", "width")
    inputs = [helper.make_tensor_value_info("ir", TensorProto.UINT8, [1, h, w, 1]),
              helper.make_tensor_value_info("vis", TensorProto.UINT8, [1, h, w, 3])]
    outputs = [helper.make_tensor_value_info("fused", TensorProto.UINT8, [1, h, w, 3]),
               helper.make_tensor_value_info("fused_y", TensorProto.UINT8, [1, h, w, 1])]
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "student.w"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
             numpy_helper.from_array(np.array(255, np.float32), "levels")]
    nodes = [
        helper.make_node("Cast", ["ir"], ["ir_f"], name="/Cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["ir_f"], ["ir_nchw"], name="/Transpose", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["ir_nchw", "scale"], ["ir_unit"], name="/Mul"),
        helper.make_node("Conv", ["ir_unit", "student.w"], ["conv"], name="/student/module1/Conv"),
        helper.make_node("Tanh", ["conv"], ["t"], name="/student/Tanh"),
        helper.make_node("Mul", ["t", "levels"], ["y_levels"], name="/Mul_1"),
        helper.make_node("Transpose", ["y_levels"], ["y_nhwc"], name="/Transpose_1", perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["y_nhwc"], ["fused_y"], name="/Cast_1", to=TensorProto.UINT8),
        helper.make_node("Cast", ["vis"], ["vis_f"], name="/Cast_2", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["vis_f"], ["fused"], name="/Cast_3", to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(nodes, "tiny_uint8", inputs, outputs, inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)


def uint8_transpose_model(path: Path) -> Path:
    """PLANTED BAD MODEL: a uint8 input -> Transpose -> Cast (a uint8 intermediate), as the default graph had
    before the cast-first fix. TensorRT 8.6+ refuses it at parse (onnx-tensorrt 8.6-GA ModelImporter.cpp)."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("ir", TensorProto.UINT8, [1, 8, 8, 1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])]
    nodes = [helper.make_node("Transpose", ["ir"], ["ir_nchw"], name="/Transpose", perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["ir_nchw"], ["y"], name="/Cast", to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "uint8_transpose", inputs, outputs)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def float_model(path: Path, static: tuple[int, int] | None = None, qdq: bool = False, opset: int = 17,
                fp16: bool = False) -> Path:
    """vis_y, ir 1x1xHxW f32 -> fused_y 1x1xHxW f32 (optionally with a Q/DQ pair before the Conv, or the network in
    FP16 between two Casts, as ModelOpt AutoCast leaves it with the I/O types kept)."""
    from onnx import TensorProto, helper, numpy_helper

    h, w = static if static else ("height", "width")
    inputs = [helper.make_tensor_value_info("vis_y", TensorProto.FLOAT, [1, 1, h, w]),
              helper.make_tensor_value_info("ir", TensorProto.FLOAT, [1, 1, h, w])]
    outputs = [helper.make_tensor_value_info("fused_y", TensorProto.FLOAT, [1, 1, h, w])]
    inits = [numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "student.w"),
             numpy_helper.from_array(np.array(0.01, np.float32), "q_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "q_zero")]
    nodes = [helper.make_node("Concat", ["vis_y", "ir"], ["cat"], name="/student/Concat", axis=1)]
    conv_in = "cat"
    if qdq:
        nodes += [helper.make_node("QuantizeLinear", ["cat", "q_scale", "q_zero"], ["cat_q"], name="/student/Q"),
                  helper.make_node("DequantizeLinear", ["cat_q", "q_scale", "q_zero"], ["cat_dq"], name="/student/DQ")]
        conv_in = "cat_dq"
    if fp16:
        inits[0] = numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float16), "student.w")
        nodes.append(helper.make_node("Cast", [conv_in], ["cat_h"], name="/student/Cast_to_fp16", to=TensorProto.FLOAT16))
        conv_in = "cat_h"
    conv_out = "tanh_h" if fp16 else "fused_y"
    nodes += [helper.make_node("Conv", [conv_in, "student.w"], ["conv"], name="/student/module1/Conv"),
              helper.make_node("Tanh", ["conv"], [conv_out], name="/student/Tanh")]
    if fp16:
        nodes.append(helper.make_node("Cast", ["tanh_h"], ["fused_y"], name="/student/Cast_to_fp32",
                                      to=TensorProto.FLOAT))
    graph = helper.make_graph(nodes, "tiny_float", inputs, outputs, inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)


def overflow_model(path: Path) -> Path:
    """x 1x1xHxW f32 -> y: an intermediate reaches ~1e6 (beyond FP16's 65504) and is scaled back down."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("vis_y", TensorProto.FLOAT, [1, 1, "h", "w"]),
              helper.make_tensor_value_info("ir", TensorProto.FLOAT, [1, 1, "h", "w"])]
    outputs = [helper.make_tensor_value_info("fused_y", TensorProto.FLOAT, [1, 1, "h", "w"])]
    inits = [numpy_helper.from_array(np.array(1e6, np.float32), "big"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "small")]
    nodes = [helper.make_node("Add", ["vis_y", "ir"], ["sum"], name="/student/Add"),
             helper.make_node("Mul", ["sum", "big"], ["huge"], name="/student/planted_overflow"),
             helper.make_node("Mul", ["huge", "small"], ["fused_y"], name="/student/scale_back")]
    graph = helper.make_graph(nodes, "planted_overflow", inputs, outputs, inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
