"""Vision Transformer backbones (timm's ViT and DeiT), run block by block so that each block's
attention probabilities are available to the rollout (:mod:`.rollout`).

No ViT weights ship in any package edgedml can install, and edgedml never downloads: the
weights come from a local timm state-dict file (``backbone_weights``), or are random when asked
for explicitly (``backbone_weights="random"``, for tests and experiments).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import MissingDependencyError, WeightsNotFoundError

RANDOM = "random"


class TokenFeatures(NamedTuple):
    """What a ViT backbone returns for images (B, 3, 224, 224), for a 14×14 patch grid:

    - ``map`` (B, C, 14, 14): the patch tokens after the final norm, as a feature map;
    - ``cls`` (B, C): the CLS token after the final norm;
    - ``attention`` (L, B, H, N, N): each block's attention probabilities (N = 1 + 196 tokens,
      the CLS token first)."""

    map: Tensor
    cls: Tensor
    attention: Tensor


def block_forward(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One timm ViT block on tokens x (B, N, C) → (tokens (B, N, C), attention (B, H, N, N)).

    The same arithmetic as timm's ``Block.forward`` with ``fused_attn=False`` (a test holds the
    two together), written out so that the attention probabilities come back and the exported
    graph has plain MatMul/Softmax."""
    attn = block.attn
    b, n, c = x.shape
    y = block.norm1(x)
    qkv = attn.qkv(y).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    y = (probs @ v).transpose(1, 2).reshape(b, n, attn.num_heads * attn.head_dim)
    y = attn.proj(attn.norm(y))
    x = x + block.drop_path1(block.ls1(y))
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return x, probs


class ViTFeatures(nn.Module):
    """A timm VisionTransformer without its classifier → :class:`TokenFeatures`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> TokenFeatures:
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))
        attentions = []
        for block in m.blocks:
            x, probs = block_forward(block, x)
            attentions.append(probs)
        x = m.norm(x)
        prefix = m.num_prefix_tokens
        side = int(round((x.shape[1] - prefix) ** 0.5))
        grid = x[:, prefix:].transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)
        return TokenFeatures(grid, x[:, 0], torch.stack(attentions))

    def stages(self) -> list[nn.Module]:
        m = self.model
        return [nn.ModuleList([m.patch_embed]), *m.blocks, nn.ModuleList([m.norm])]


def create_vit(name: str, pretrained: bool, weights: str | Path | None) -> ViTFeatures:
    """timm's ``name`` with weights from ``weights`` (a state-dict file), or random for
    ``weights="random"`` or ``pretrained=False``."""
    try:
        import timm
    except ImportError as exc:
        raise MissingDependencyError("timm", f"the {name} backbone", "train") from exc
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained and str(weights) != RANDOM:
        if weights is None:
            raise WeightsNotFoundError(
                f"no {name} weights ship with any package edgedml installs, and edgedml never downloads: "
                f"pass --backbone-weights /path/to/{name}.safetensors (a timm state dict), or "
                f"--backbone-weights random for an untrained backbone")
        from .weights_file import read_weights_file

        state = {k: v for k, v in read_weights_file(weights, name).items() if not k.startswith("head.")}
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even with strict=False
            raise WeightsNotFoundError(f"{weights} does not match timm's {name} ({str(exc).splitlines()[-1].strip()}); "
                                       f"pass a state dict saved from that timm model") from exc
        if result.missing_keys or result.unexpected_keys:
            raise WeightsNotFoundError(
                f"{weights} does not match timm's {name}: missing {result.missing_keys[:4]}, unexpected "
                f"{result.unexpected_keys[:4]}; pass a state dict saved from that timm model")
    return ViTFeatures(model)
