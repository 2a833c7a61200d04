"""ABE head: attention-based ensemble (Kim et al., ECCV 2018)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .head_output import HeadOutput
from .matching import l2_normalize
from .regions import grid_regions


class ABEHead(nn.Module):
    """M attention modules, each a 1×1 conv giving a sigmoid mask m_i (B, 1, h, w) that gates the
    shared feature map; learner i embeds the gated map: f_i = W_i · GAP(m_i ⊙ F) + b_i (D/M).

    The paper places the masks on an intermediate GoogLeNet map and runs the remaining inception
    blocks per learner; here the masks gate the backbone's last map, so the M learners cost one
    backbone pass (what an edge device can afford). Local features for structural matching are
    W F_p for all learners stacked (one 1×1 conv C → D, the space the learners embed into),
    pooled to the g×g grid.
    """

    def __init__(self, in_channels: int, dim: int = 512, learners: int = 8, grid: int = 4,
                 upsample: int = 16, align_corners: bool = True):
        super().__init__()
        if dim % learners:
            raise ValueError(f"dim ({dim}) must be divisible by learners ({learners})")
        self.learners, self.grid, self.upsample, self.align_corners = learners, grid, upsample, align_corners
        self.attention = nn.Conv2d(in_channels, learners, kernel_size=1)
        self.embedding = nn.Conv2d(in_channels, dim, kernel_size=1)  # W_1..W_M stacked

    def forward(self, features: Tensor) -> HeadOutput:
        """features (B, C, h, w) →
        embedding (B, D): concatenated learner embeddings / √M (unit norm);
        local (B, R, D): L2-normalised grid-pooled W F_p;
        attention (B, M, h, w): the sigmoid masks m_i;
        parts (B, M, D/M): the L2-normalised learner embeddings f_i.
        """
        b, c, h, w = features.shape
        masks = torch.sigmoid(self.attention(features))  # (B, M, h, w)
        gated = masks.flatten(2) @ features.flatten(2).transpose(1, 2) / (h * w)  # (B, M, C): GAP(m_i ⊙ F)
        weight = self.embedding.weight.view(self.learners, -1, c).transpose(1, 2)  # (M, C, D/M)
        bias = self.embedding.bias.view(self.learners, -1)  # (M, D/M)
        learned = (gated.unsqueeze(2) @ weight).squeeze(2)  # (B, M, 1, C) @ (M, C, D/M) → (B, M, D/M)
        parts = l2_normalize(learned + bias)
        embedding = parts.flatten(1) / math.sqrt(self.learners)
        local = l2_normalize(grid_regions(self.embedding(features), self.grid, self.upsample, self.align_corners))
        return HeadOutput(embedding, local, masks, parts)
