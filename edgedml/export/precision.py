"""Precision lives in the graph: fp16 and INT8 (QDQ) versions of the fp32 ONNX graphs.

One graph set per precision, each executed by ONNX Runtime at export and built by TensorRT as a
strongly typed network (no builder precision flags, no calibrators: TensorRT 11 removed them):

- ``fp32``: the traced graphs; the matcher in its scaling form (fewest nodes).
- ``fp16``: converted by ONNX Runtime's own float16 converter (``onnxruntime.transformers.
  float16``), fp32 inputs and outputs kept. What stays fp32, and why (``FP32_OPS``):
  * normalisation: ReduceL2 and the clamp and division that follow it, ReduceMean, Softmax —
    a norm rounded to fp16 moves every cosine by up to 5e-4;
  * the Sinkhorn reductions: ReduceSum and Log (the sum inside each log-sum-exp, and the log of
    the marginals); the max-shift, Exp and the potentials run in fp16;
  * the matcher is the log form (its scaling-form kernel exp(−(1−s)/ε) underflows in fp16).
- ``int8``: for TensorRT. ONNX Runtime's ``quantize_static`` in QDQ format, calibrated on real
  images through the deployment preprocessing: int8 activations and weights, both symmetric
  (every zero-point 0), per-channel Conv weights, a dedicated Q/DQ pair per consumer, no bias
  quantization. The matcher stays the fp32 graph.
- ``int8-cpu``: for ONNX Runtime on CPUs without TensorRT. The graph is first optimised by
  ``quant_pre_process`` (which folds any explicit Pad into the next Conv, so that ORT can fuse
  each Conv with its Q/DQ; the dynamo exporter's graphs already have none), then quantized with
  uint8 activations and symmetric per-channel int8 weights (U8S8). Measured on this project's
  CPU for a trained Lite0 embedder at batch 8 (``benchmarks/precision.py``, three runs):
  0.43–0.47× (1 thread) and 0.47–0.53× (2 threads) the fp32 time per image; with unfolded Pads
  it was 0.63×. The TensorRT layout (S8S8, symmetric, dedicated pairs) ran 1.08–1.14× and
  1.38–1.82× the fp32 time there: each layout serves its own target.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
QUANTIZED = ("int8", "int8-cpu")
FP32_OPS = ("ReduceL2", "ReduceMean", "ReduceSum", "Log", "Softmax")  # plus each norm's clamp and division
CALIBRATION_BATCH = 8


def parse_precisions(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """"fp32,fp16" → ("fp32", "fp16"): known names, fp32 always first (the reference)."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown:
        raise ConfigError(f"unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)} "
                          f"(comma-separated, e.g. --precision fp32,fp16,int8-cpu)")
    return tuple(p for p in PRECISIONS if p == "fp32" or p in names)


def graph_file(graph: str, precision: str) -> str:
    """File name of a graph at a precision: embedder.onnx, embedder.fp16.onnx, ..."""
    return f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"


def _normalisation_nodes(model) -> list[str]:
    """Names of the nodes that finish an L2 normalisation: the clamp (Clip/Max) of each ReduceL2
    output and the division by it. They stay fp32 with the norm itself."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep = []
    for node in model.graph.node:
        if node.op_type != "ReduceL2":
            continue
        frontier = list(consumers.get(node.output[0], []))
        while frontier:
            nxt = frontier.pop()
            if nxt.op_type in ("Clip", "Max"):
                keep.append(nxt.name)
                frontier += consumers.get(nxt.output[0], [])
            elif nxt.op_type == "Div":
                keep.append(nxt.name)
    return keep


def to_fp16(src: str | Path, dst: str | Path) -> dict:
    """Convert an fp32 graph to fp16 with fp32 inputs and outputs; returns what stayed fp32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    nodes = _normalisation_nodes(model)
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS),
                                         node_block_list=nodes)
    topological_sort(converted.graph)  # the converter appends the input Casts after their consumers
    # the dynamo exporter annotates every intermediate value; the converter marks some outputs of
    # the nodes it keeps in fp32 as fp16, which onnx.checker rejects. The annotations are optional
    # (shape inference derives them), so drop them rather than keep wrong ones.
    del converted.graph.value_info[:]
    onnx.save(converted, str(dst))
    kept = [n.op_type for n in model.graph.node if n.op_type in FP32_OPS or n.name in nodes]
    return {"converter": "onnxruntime.transformers.float16", "fp32_ops": sorted(set(kept)), "fp32_nodes": len(kept)}


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so that every node follows the producers of its inputs (ONNX
    requires it; TensorRT's parser and onnx.checker reject other orders)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producer = {out: k for k, node in enumerate(graph.node) for out in node.output}
    waiting = [sum(1 for i in set(node.input) if i not in available and i in producer) for node in graph.node]
    users: dict[int, list[int]] = {}
    for k, node in enumerate(graph.node):
        for i in set(node.input):
            if i not in available and i in producer:
                users.setdefault(producer[i], []).append(k)
    queue = [k for k, count in enumerate(waiting) if count == 0]
    ordered = []
    while queue:
        k = queue.pop(0)
        ordered.append(graph.node[k])
        for user in users.get(k, []):
            waiting[user] -= 1
            if waiting[user] == 0:
                queue.append(user)
    if len(ordered) != len(graph.node):
        raise ValueError("graph has a cycle or an input that no node produces; it cannot be ordered")
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


@dataclass(frozen=True)
class QuantLayout:
    """How ``quantize_static`` lays out one INT8 graph (see the module doc)."""

    name: str
    activation: str  # "int8" or "uint8"
    symmetric_activations: bool
    dedicated_pairs: bool
    pre_process: bool  # fold Pads into Convs first (quant_pre_process)
    target: str

    def to_dict(self) -> dict:
        return {"activation": self.activation, "weights": "int8, symmetric, per-channel",
                "symmetric_activations": self.symmetric_activations, "dedicated_qdq_pairs": self.dedicated_pairs,
                "bias_quantized": False, "pre_processed": self.pre_process, "target": self.target,
                "fp32": "the head from its projection Conv on (pooling to the grid, normalisation)"}


LAYOUTS = {
    "int8": QuantLayout("int8", "int8", True, True, True, "TensorRT (strongly typed, explicit quantization)"),
    "int8-cpu": QuantLayout("int8-cpu", "uint8", False, False, True, "ONNX Runtime CPU (U8S8)"),
}
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def _tail_nodes(path: Path) -> list[str]:
    """Names of the last Conv (the head's projection) and every node after it: resizing, pooling
    to the grid and L2 normalisation stay fp32 (cheap, and where int8 would cost the most)."""
    import onnx

    nodes = list(onnx.load(str(path)).graph.node)
    last = max((k for k, n in enumerate(nodes) if n.op_type == "Conv"), default=len(nodes))
    return [n.name for n in nodes[last:]]


def quantize(src: str | Path, dst: str | Path, layout: QuantLayout, images: np.ndarray,
             method: str = "minmax", progress: bool = False) -> dict:
    """Quantize the fp32 embedder at ``src`` to a QDQ graph at ``dst``, calibrated on ``images``
    (N, 3, S, S) float32 already through the deployment preprocessing. Returns the layout facts.
    ``progress``: a bar over the calibration images on stderr (when it is a terminal)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..progress import progress_bar

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {list(CALIBRATION_METHODS)}")
    if len(images) == 0:
        raise ConfigError("INT8 calibration needs images: pass --calib DIR with at least one image")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": images[i:i + CALIBRATION_BATCH]}
                                 for i in range(0, len(images), CALIBRATION_BATCH)])
            self.bar = progress_bar(total=len(images), desc="INT8 calibration", unit="image", enabled=progress)

        def get_next(self):
            batch = next(self.batches, None)
            if batch is None:
                self.bar.close()
            else:
                self.bar.update(len(batch["images"]))
            return batch

    act = QuantType.QInt8 if layout.activation == "int8" else QuantType.QUInt8
    extra = {"WeightSymmetric": True, "ActivationSymmetric": layout.symmetric_activations,
             "DedicatedQDQPair": layout.dedicated_pairs, "QuantizeBias": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    work = Path(tempfile.mkdtemp(prefix="edgedml-quant-"))
    try:
        source = Path(src)
        if layout.pre_process:
            source = work / "pre.onnx"
            quant_pre_process(str(src), str(source), skip_symbolic_shape=True)
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        quantize_static(str(source), str(dst), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=act, weight_type=QuantType.QInt8, calibrate_method=methods[method],
                        nodes_to_exclude=_tail_nodes(source),
                        extra_options=extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**layout.to_dict(), "calibration": {"method": method, "images": int(len(images))}}
