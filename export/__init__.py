"""sage_edge.export: student -> ONNX (-> quantized ONNX / TensorRT engines). Needs torch and onnx."""
