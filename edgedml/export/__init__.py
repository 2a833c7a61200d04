"""Export (torch + onnx): a checkpoint → a validated bundle (``edgedml export``).

- :mod:`.graphs`: the fp32 ONNX graphs, ``embedder.onnx`` and ``matcher.onnx``;
- :mod:`.precision` and :mod:`.precision_report`: their fp16 and INT8 versions, each run by
  ONNX Runtime and held to bounds;
- :mod:`.checks`: static TensorRT-readiness checks of a graph;
- :mod:`.validate`: ONNX Runtime against PyTorch, the report stored in the manifest;
- :mod:`.options`: what an export was asked for (:class:`~.options.ExportOptions`);
- :mod:`.destination`: which ``--out`` folders a bundle may be written to, or replace;
- :mod:`.job`: one export's inputs, checked and read before the slow work;
- :mod:`.precision_sets`: the fp16 and INT8 graph sets written and held to fp32;
- :mod:`.validation_data`: the inputs and outputs a bundle keeps for checking engines;
- :mod:`.exporter`: :func:`~.exporter.export_bundle`, the export's steps in order.

TensorRT engines are not built here but on the device that runs them (:mod:`edgedml.runtime.inference.tensorrt`).
"""
