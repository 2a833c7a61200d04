"""Export (torch + onnx): a checkpoint → a validated bundle (``edgedml export``).

- :mod:`.graphs`: the fp32 ONNX graphs, ``embedder.onnx`` and ``matcher.onnx``;
- :mod:`.precision` and :mod:`.precision_report`: their fp16 and INT8 versions, each run by
  ONNX Runtime and held to bounds;
- :mod:`.checks`: static TensorRT-readiness checks of a graph;
- :mod:`.validate`: ONNX Runtime against PyTorch, the report stored in the manifest;
- :mod:`.exporter`: the export itself, which writes the bundle.

TensorRT engines are not built here but on the device that runs them (:mod:`edgedml.runtime.inference.tensorrt`).
"""
