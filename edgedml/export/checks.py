"""Static TensorRT-readiness checks of an ONNX graph (TensorRT itself cannot run everywhere).

What is checked, and why:
- every node is an operator that TensorRT 10's ONNX parser supports (``TENSORRT_OPS``, taken
  from onnx-tensorrt's docs/operators.md for TensorRT 10.x, restricted to what these graphs may
  plausibly contain);
- no ReduceLogSumExp: TensorRT's implementation overflows in fp16 (NVIDIA/TensorRT#4772); the
  matcher writes the log-sum-exp out with an explicit max-shift instead;
- opset 17 or newer (and at most 20, the newest TensorRT 10.0 parses);
- ``onnx.checker`` full check (with shape inference);
- only the named dynamic axes are dynamic (the batch axis, or K), every other dimension fixed;
- no Shape → ConstantOfShape/Expand chains (int64 shape tensors that TensorRT must compute at
  run time) and no Loop/If/Scan nodes (data-dependent control flow).
"""

from __future__ import annotations

from pathlib import Path

TENSORRT_OPS = frozenset("""
Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant
ConstantOfShape Conv ConvTranspose Cos CumSum Div Einsum Elu Equal Erf Exp Expand Flatten Floor
Gather GatherElements GatherND Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax MatMul Max MaxPool Mean Min Mod Mul Neg Not Or Pad Pow PRelu
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize Round Shape Sigmoid Sign Sin Slice Softmax Softplus Split
Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Unsqueeze Where
""".split())
FORBIDDEN = {"ReduceLogSumExp": "overflows in fp16 in TensorRT (NVIDIA/TensorRT#4772); write the "
                                "log-sum-exp with an explicit max-shift",
             "Loop": "data-dependent control flow; unroll it", "If": "data-dependent control flow",
             "Scan": "data-dependent control flow; unroll it"}
MIN_OPSET, MAX_OPSET = 17, 20


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
