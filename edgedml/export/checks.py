"""Static TensorRT-readiness checks of an ONNX graph (TensorRT itself cannot run everywhere).

What is checked, and why:
- every node is an operator that TensorRT 10's ONNX parser supports (``TENSORRT_OPS``, taken
  from onnx-tensorrt's docs/operators.md for TensorRT 10.x, restricted to what these graphs may
  plausibly contain);
- no ReduceLogSumExp: TensorRT's implementation overflows in fp16 (NVIDIA/TensorRT#4772); the
  matcher writes the log-sum-exp out with an explicit max-shift instead;
- opset 18 or newer (what the exporter writes) and at most 20, the newest TensorRT 10.0 parses;
- ``onnx.checker`` full check (with shape inference);
- only the named dynamic axes are dynamic (the batch axis, or K), every other dimension fixed;
- no Shape → ConstantOfShape/Expand chains (int64 shape tensors that TensorRT must compute at
  run time) and no Loop/If/Scan nodes (data-dependent control flow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TENSORRT_OPS = frozenset("""
Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant
ConstantOfShape Conv ConvTranspose Cos CumSum Div Einsum Elu Equal Erf Exp Expand Flatten Floor
Gather GatherElements GatherND Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax MatMul Max MaxPool Mean Min Mod Mul Neg Not Or Pad Pow PRelu
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize Round Shape Sigmoid Sign Sin Slice Softmax Softplus Split
QuantizeLinear DequantizeLinear
Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Unsqueeze Where
""".split())
FORBIDDEN = {"ReduceLogSumExp": "overflows in fp16 in TensorRT (NVIDIA/TensorRT#4772); write the "
                                "log-sum-exp with an explicit max-shift",
             "Loop": "data-dependent control flow; unroll it", "If": "data-dependent control flow",
             "Scan": "data-dependent control flow; unroll it"}
MIN_OPSET, MAX_OPSET = 18, 20


def tensorrt_readiness(path: str | Path, dynamic_axes: dict[str, set[int]]) -> list[str]:
    """Problems that would stop or slow TensorRT on the graph at ``path``; [] when ready.

    ``dynamic_axes`` maps each input/output name to the axes allowed to be symbolic.
    """
    import onnx
    from onnx import checker

    model = onnx.load(str(path))
    problems: list[str] = []
    try:
        checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises several checker error types
        problems.append(f"onnx.checker: {exc}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        problems.append(f"opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}")
    producers: dict[str, str] = {}
    for node in model.graph.node:
        for out in node.output:
            producers[out] = node.op_type
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"node {node.name} uses the custom domain {node.domain!r}")
        elif node.op_type in FORBIDDEN:
            problems.append(f"{node.op_type} ({node.name}): {FORBIDDEN[node.op_type]}")
        elif node.op_type not in TENSORRT_OPS:
            problems.append(f"{node.op_type} ({node.name}) is not in the TensorRT ONNX parser's operator list")
    for node in model.graph.node:
        if node.op_type in ("ConstantOfShape", "Expand") and any(
                producers.get(i) == "Shape" for i in node.input):
            problems.append(f"{node.op_type} ({node.name}) takes a run-time Shape: a shape tensor TensorRT "
                            f"must compute at run time; use broadcasting instead")
    for value in list(model.graph.input) + list(model.graph.output):
        allowed = dynamic_axes.get(value.name, set())
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            symbolic = not dim.HasField("dim_value")
            if symbolic and axis not in allowed:
                problems.append(f"{value.name} axis {axis} is dynamic ({dim.dim_param or '?'}); only "
                                f"{sorted(allowed) or 'no'} axes may be")
            if not symbolic and axis in allowed:
                problems.append(f"{value.name} axis {axis} should be dynamic but is fixed to {dim.dim_value}")
    return problems


def node_counts(path: str | Path) -> dict[str, int]:
    """Operator histogram of a graph, for the manifest and the benchmarks."""
    import collections

    import onnx

    model = onnx.load(str(path))
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def qdq_rules(path: str | Path) -> list[str]:
    """Where a QDQ graph breaks TensorRT's explicit-quantization rules; [] when it follows them:
    int8 zero-points that are all 0 (symmetric), per-channel weights for every quantized Conv
    (Convs left fp32 on purpose are allowed), a dedicated
    QuantizeLinear → DequantizeLinear pair per consumer, and no quantized bias."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    consumers: dict[str, list] = {}
    producers: dict[str, object] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    problems: list[str] = []
    quantizers = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not quantizers:
        return ["no QuantizeLinear/DequantizeLinear nodes: the graph is not quantized"]
    for node in quantizers:
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is None and node.op_type == "QuantizeLinear":
            problems.append(f"{node.name}: no zero-point, so the output type is uint8; TensorRT needs int8")
        elif zero is not None and (zero.dtype.name != "int8" or (zero != 0).any()):
            problems.append(f"{node.name}: zero-point {zero.dtype.name} {zero.ravel()[:3].tolist()}...; TensorRT "
                            f"needs int8 zero-points of 0 (symmetric)")
        users = consumers.get(node.output[0], [])
        if node.op_type == "QuantizeLinear" and (len(users) != 1 or users[0].op_type != "DequantizeLinear"):
            problems.append(f"{node.name}: feeds {len(users)} nodes; each consumer needs its own Q/DQ pair")
        if node.op_type == "DequantizeLinear" and len(users) > 1:
            problems.append(f"{node.name}: a DequantizeLinear shared by {len(users)} consumers; use dedicated pairs")
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        weight = producers.get(node.input[1])
        if weight is None or weight.op_type != "DequantizeLinear":
            continue  # an fp32 Conv, left out of quantization on purpose (TensorRT runs it in fp32)
        if constants.get(weight.input[1], np.zeros(1)).size < 2:
            problems.append(f"{node.name}: weights quantized per tensor; TensorRT's rule here is per-channel")
        if len(node.input) > 2 and node.input[2] and getattr(producers.get(node.input[2]), "op_type", "") == \
                "DequantizeLinear":
            problems.append(f"{node.name}: the bias is quantized; leave it fp32 (QuantizeBias=False)")
    return problems
