"""sage_edge.export: student -> ONNX (-> quantized ONNX / TensorRT engines). Needs torch and onnx.

Except ``trt_compat`` (``sage-edge check-trt``, TensorRT's ONNX-parser rules), which needs only onnx.
"""
