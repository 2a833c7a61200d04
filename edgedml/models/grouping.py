"""Attentive grouping head (Xu et al., "Towards improved and interpretable deep metric learning
via attentive grouping"): k learnable queries attend over the positions of the feature map."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .head_output import HeadOutput
from .matching import l2_normalize
from .regions import grid_regions


class AttentiveGroupingHead(nn.Module):
    """Keys: 1×1 conv C → C/8; values: 1×1 conv C → D/k; k learnable queries of size C/8.

    a_g = softmax over positions p of q_g·k_p; e_g = Σ_p a_g(p) v_p, L2-normalised per group.
    There is no positional encoding, so the group embeddings are invariant to any permutation
    of the spatial positions. Local features for structural matching are the values pooled to
    the g×g grid (they live in the same space as the group embeddings).
    """

    def __init__(self, in_channels: int, dim: int = 384, groups: int = 3, grid: int = 4,
                 upsample: int = 16, align_corners: bool = True):
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim ({dim}) must be divisible by groups ({groups})")
        key_dim = max(in_channels // 8, 1)
        self.groups, self.grid, self.upsample, self.align_corners = groups, grid, upsample, align_corners
        self.keys = nn.Conv2d(in_channels, key_dim, kernel_size=1)
        self.values = nn.Conv2d(in_channels, dim // groups, kernel_size=1)
        # std 1/sqrt(key_dim) keeps the initial attention logits of order one
        self.queries = nn.Parameter(torch.randn(groups, key_dim) / math.sqrt(key_dim))

    def forward(self, features: Tensor) -> HeadOutput:
        """features (B, C, h, w) →
        embedding (B, D): concatenated group embeddings / √k (unit norm);
        local (B, R, D/k): L2-normalised grid-pooled values;
        attention (B, k, h, w): a_g, each summing to 1 over positions;
        parts (B, k, D/k): the L2-normalised group embeddings e_g.
        """
        b, _, h, w = features.shape
        keys = self.keys(features).flatten(2)  # (B, C/8, P)
        value_map = self.values(features)  # (B, D/k, h, w)
        values = value_map.flatten(2)  # (B, D/k, P)
        logits = self.queries @ keys  # (k, C/8) @ (B, C/8, P) → (B, k, P)
        attention = torch.softmax(logits, dim=-1)
        parts = l2_normalize(attention @ values.transpose(1, 2))  # (B, k, D/k)
        embedding = parts.flatten(1) / math.sqrt(self.groups)
        local = l2_normalize(grid_regions(value_map, self.grid, self.upsample, self.align_corners))
        return HeadOutput(embedding, local, attention.view(b, self.groups, h, w), parts)
