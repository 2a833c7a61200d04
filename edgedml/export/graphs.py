"""ONNX graphs: ``embedder.onnx`` (images → embedding, local features, attention maps) and
``matcher.onnx`` (one query against K candidates → scores, plans, evidence).

Both come from torch's dynamo exporter (``torch.export`` → onnxscript) at opset 18, within what
TensorRT 10's parser reads; onnxscript's optimizer then folds constants (it evaluates nodes at
the graph's own opset, and never folds non-deterministic ops such as Random*). Only the batch
axis of the embedder and the candidate axis K of the matcher are dynamic (``dynamic_shapes``);
every other dimension is fixed, so the only shape arithmetic left is the region pooling's
Resize, whose output size TensorRT computes from the batch.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.embedder import EmbeddingModel
from ..models.matcher import StructuralMatcher

OPSET = 18
EMBEDDER_INPUT = "images"


class EmbedderGraph(nn.Module):
    """The exported embedder: images (B, 3, S, S) → embedding (B, E), local (B, R, D)
    [, attention (B, P, h, w) for the grouping and ABE heads]."""

    def __init__(self, model: EmbeddingModel):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor):
        out = self.model(images)
        extra = tuple(t for t in (out.attention, out.marginal) if t is not None)
        return (out.embedding, out.local) + extra


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
    return (["embedding", "local"] + (["attention"] if model.config.parts else [])
            + (["marginal"] if model.config.marginals == "rollout" else []))


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes: dict) -> None:
    """torch.export the module and write the ONNX graph (weights inside the file) to ``path``."""
    program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, optimize=True,
                                input_names=list(input_names), output_names=list(output_names),
                                dynamic_shapes=dynamic_shapes, verbose=False)
    # drop the per-node metadata the exporter records for debugging (the exporting machine's
    # source paths and stack traces, the FX node text): it would ship in every bundle, and it is
    # most of the matcher file (173 KB → 25 KB)
    for node in program.model.graph:
        node.metadata_props.clear()
    program.save(str(path), external_data=False)


def export_embedder(model: EmbeddingModel, path: str | Path, batch: int = 2, fixed_batch: int | None = None) -> dict:
    """Write ``embedder.onnx``; returns its I/O description for the manifest.

    The batch axis is dynamic, or fixed to ``fixed_batch`` (for targets that want static shapes;
    the runtime then splits and pads requests to exactly that batch)."""
    path = Path(path)
    model = static_same_padding(model)
    size = model.config.preprocessing().size
    example = torch.randn(fixed_batch or batch, 3, size, size)
    outputs = embedder_output_names(model)
    shapes = {EMBEDDER_INPUT: None if fixed_batch else {0: torch.export.Dim("batch", min=1)}}
    with torch.no_grad():
        _export(EmbedderGraph(model), (example,), path, [EMBEDDER_INPUT], outputs, shapes)
        dims = [tuple(t.shape[1:]) for t in EmbedderGraph(model)(example)]
    first = fixed_batch or "batch"
    return {"inputs": {EMBEDDER_INPUT: [first, 3, size, size]},
            "outputs": {name: [first, *shape] for name, shape in zip(outputs, dims)}}


def export_matcher(matcher: StructuralMatcher, path: str | Path, regions: int, local_dim: int,
                   embed_dim: int, candidates: int = 3) -> dict:
    """Write ``matcher.onnx`` for R regions of D-dim local features and E-dim embeddings."""
    path = Path(path)
    example = (torch.randn(1, regions, local_dim), torch.randn(1, embed_dim),
               torch.randn(candidates, regions, local_dim), torch.randn(candidates, embed_dim))
    example = tuple(nn.functional.normalize(t, dim=-1) for t in example)
    if matcher.marginals_kind == "rollout":
        example += tuple(w / w.sum(-1, keepdim=True) for w in (torch.rand(1, regions), torch.rand(candidates, regions)))
    # one named Dim for the candidates; the second input's K is the same symbol to torch.export,
    # so it gets an unnamed hint (naming it too only makes the exporter warn that the name is unused)
    shapes = {"query_local": None, "query_embedding": None,
              "candidate_local": {0: torch.export.Dim("K", min=1)},
              "candidate_embedding": {0: torch.export.Dim.DYNAMIC}}
    if matcher.marginals_kind == "rollout":
        shapes.update(query_marginal=None, candidate_marginal={0: torch.export.Dim.DYNAMIC})
    with torch.no_grad():
        _export(matcher, example, path, matcher.input_names, matcher.output_names, shapes)
    outputs = {"structural": ["K"], "multiscale": ["K"], "plan": ["K", regions, regions],
               "query_evidence": ["K", regions], "candidate_evidence": ["K", regions],
               "query_unmatched": ["K", regions], "candidate_unmatched": ["K", regions]}
    inputs = {"query_local": [1, regions, local_dim], "query_embedding": [1, embed_dim],
              "candidate_local": ["K", regions, local_dim], "candidate_embedding": ["K", embed_dim],
              "query_marginal": [1, regions], "candidate_marginal": ["K", regions]}
    return {"inputs": {name: inputs[name] for name in matcher.input_names},
            "outputs": {name: outputs[name] for name in matcher.output_names}}
