"""ONNX graphs: ``embedder.onnx`` (images → embedding, local features, attention maps) and
``matcher.onnx`` (one query against K candidates → scores, plans, evidence).

Both are traced with the TorchScript exporter at opset 17 (TensorRT 10 parses opsets 9–20).
Only the batch axis of the embedder and the candidate axis K of the matcher are dynamic;
every other dimension is fixed, which lets TensorRT fold all shape arithmetic at build time.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.embedder import EmbeddingModel
from ..models.matcher import MATCHER_INPUTS, MATCHER_OUTPUTS, StructuralMatcher

OPSET = 17
EMBEDDER_INPUT = "images"


class EmbedderGraph(nn.Module):
    """The exported embedder: images (B, 3, S, S) → embedding (B, E), local (B, R, D)
    [, attention (B, P, h, w) for the grouping and ABE heads]."""

    def __init__(self, model: EmbeddingModel):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor):
        out = self.model(images)
        if out.attention is None:
            return out.embedding, out.local
        return out.embedding, out.local, out.attention


class _StaticSameConv(nn.Module):
    """TF-style 'same' convolution with the padding fixed for one input size."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]):
        super().__init__()
        self.pad = nn.ZeroPad2d(pads)
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def static_same_padding(model: EmbeddingModel) -> EmbeddingModel:
    """A copy of ``model`` whose TF-'same' convolutions (timm's Conv2dSame, in the Lite family's
    stride-2 layers) pad by constants computed for the config's input size.

    timm computes those pads from the input's shape at run time, which becomes Shape/Ceil/Cast/Pad
    arithmetic in ONNX; with the input size fixed by the bundle, the pads are constants and the
    graph has no shape computation left. Numerically identical (validation checks it).
    """
    model = copy.deepcopy(model).eval()
    same = {name: m for name, m in model.named_modules() if type(m).__name__ == "Conv2dSame"}
    if not same:
        return model
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: sizes.__setitem__(name, args[0].shape[-2:]))
             for name, m in same.items()]
    size = model.config.preprocessing().size
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    for name, m in same.items():
        (h, w), (kh, kw) = sizes[name], m.kernel_size
        top, bottom = _same_pads(h, kh, m.stride[0], m.dilation[0])
        left, right = _same_pads(w, kw, m.stride[1], m.dilation[1])
        conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, 0, m.dilation, m.groups,
                         bias=m.bias is not None)
        conv.load_state_dict(m.state_dict())
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child,
                _StaticSameConv(conv, (left, right, top, bottom)))
    return model


def embedder_output_names(model: EmbeddingModel) -> list[str]:
    return ["embedding", "local"] + (["attention"] if model.config.parts else [])


def fold_constants(model):
    """Evaluate every node whose inputs are all constants (initializers or Constant nodes) and
    store its outputs as initializers. The TorchScript exporter leaves padding arithmetic
    (ConstantOfShape/Concat/Slice with step −1) unfolded; after this pass the graph only computes
    on data. Returns the number of nodes removed."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept, removed = [], 0
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type not in ("Shape", "Size") and all(i in known for i in inputs):
            values = ReferenceEvaluator(node).run(None, {i: known[i] for i in inputs})
            for name, value in zip(node.output, values):
                known[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
            removed += 1
        else:
            kept.append(node)
    used = {i for node in kept for i in node.input} | {o.name for o in graph.output}
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return removed


def set_static_dims(model, shapes: dict[str, list]) -> None:
    """Declare the graph outputs' shapes (ints, or a name for a dynamic axis); ONNX shape
    inference cannot follow every reshape, but the exporter measured them."""
    for value in model.graph.output:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name]):
                if isinstance(size, int):
                    dim.Clear()
                    dim.dim_value = size
                else:
                    dim.Clear()
                    dim.dim_param = size


def _finish(path: Path, shapes: dict[str, list]) -> None:
    import onnx

    model = onnx.load(str(path))
    fold_constants(model)
    set_static_dims(model, shapes)
    onnx.save(model, str(path))


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of torch.export, which needs onnxscript;
        # it is still the one that unrolls a fixed loop into a plain graph with no extra packages
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", message=".*Converting a tensor to a Python.*")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, do_constant_folding=True)


def export_embedder(model: EmbeddingModel, path: str | Path, batch: int = 2, fixed_batch: int | None = None) -> dict:
    """Write ``embedder.onnx``; returns its I/O description for the manifest.

    The batch axis is dynamic, or fixed to ``fixed_batch`` (for targets that want static shapes;
    the runtime then splits and pads requests to exactly that batch)."""
    path = Path(path)
    model = static_same_padding(model)
    size = model.config.preprocessing().size
    example = torch.randn(fixed_batch or batch, 3, size, size)
    outputs = embedder_output_names(model)
    axes = None if fixed_batch else {EMBEDDER_INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    with torch.no_grad():
        _export(EmbedderGraph(model), (example,), path, [EMBEDDER_INPUT], outputs, axes)
        shapes = [tuple(t.shape[1:]) for t in EmbedderGraph(model)(example)]
    first = fixed_batch or "batch"
    io = {"inputs": {EMBEDDER_INPUT: [first, 3, size, size]},
          "outputs": {name: [first, *shape] for name, shape in zip(outputs, shapes)}}
    _finish(path, io["outputs"])
    return io


def export_matcher(matcher: StructuralMatcher, path: str | Path, regions: int, local_dim: int,
                   embed_dim: int, candidates: int = 3) -> dict:
    """Write ``matcher.onnx`` for R regions of D-dim local features and E-dim embeddings."""
    path = Path(path)
    example = (torch.randn(1, regions, local_dim), torch.randn(1, embed_dim),
               torch.randn(candidates, regions, local_dim), torch.randn(candidates, embed_dim))
    example = tuple(nn.functional.normalize(t, dim=-1) for t in example)
    axes = {"candidate_local": {0: "K"}, "candidate_embedding": {0: "K"},
            **{name: {0: "K"} for name in MATCHER_OUTPUTS}}
    with torch.no_grad():
        _export(matcher.eval(), example, path, MATCHER_INPUTS, MATCHER_OUTPUTS, axes)
    io = {"inputs": {"query_local": [1, regions, local_dim], "query_embedding": [1, embed_dim],
                       "candidate_local": ["K", regions, local_dim], "candidate_embedding": ["K", embed_dim]},
            "outputs": {"structural": ["K"], "multiscale": ["K"], "plan": ["K", regions, regions],
                        "query_evidence": ["K", regions], "candidate_evidence": ["K", regions]}}
    _finish(path, io["outputs"])
    return io
