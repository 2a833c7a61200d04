"""Export (torch + onnx): ONNX graphs, TensorRT engines and validated bundles. Not built yet."""
