"""Truncated attention rollout: which patches a ViT's deep blocks draw on, as transport marginals.

Attention rollout (Abnar & Zuidema, 2020): fuse each block's heads, add the identity for the
residual connection, normalise the rows, and multiply the blocks' matrices. A ViT's deep tokens
mix the whole image, so the DIML journal extension truncates the rollout to keep it local. Here
"truncated" means two things, both settings of :func:`truncated_rollout`:

- **depth**: only the last ``blocks`` (L′) blocks are rolled out, R = Â_L ⋯ Â_{L−L′+1}; the
  earlier blocks are left out of the product;
- **weakest-entry cut**: in each fused matrix, the ``discard`` fraction of smallest entries of
  every row (the CLS column and the diagonal kept) is set to zero before the identity is added.

Â = (A' + I) with rows normalised to 1, A' the head-mean attention after the cut. The marginal of
patch p is ReLU(mean over the rows of R of column p), over the patch columns only (the CLS
column dropped), normalised to sum 1. ``blocks`` = L and ``discard`` = 0 is the full rollout.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fuse_heads(attention: Tensor, discard: float = 0.0) -> Tensor:
    """(..., H, N, N) head probabilities → (..., N, N) Â: the head mean with each row's
    int(discard · N) smallest entries zeroed (never column 0, the CLS token, nor the diagonal: at
    most the other N − 2; ties with the last one dropped go too), plus the identity, rows
    normalised."""
    fused = attention.mean(dim=-3)
    n = fused.shape[-1]
    if discard > 0:
        drop = int(discard * n)
        if drop:
            # the CLS column and the diagonal, by broadcasting (no in-place writes: the exported
            # graph then has no ScatterElements, which TensorRT's parser lacks)
            index = torch.arange(n, device=fused.device)
            keep = (index[:, None] == index[None, :]) | (index[None, :] == 0)
            ranked = fused.masked_fill(keep, float("inf"))
            # the drop-th smallest entry (TopK: kthvalue has no ONNX export)
            threshold = torch.topk(ranked, drop, dim=-1, largest=False).values[..., -1:]
            fused = fused.masked_fill((fused <= threshold) & ~keep, 0.0)
    index = torch.arange(n, device=fused.device)
    fused = fused + (index[:, None] == index[None, :]).to(fused.dtype)
    return fused / fused.sum(dim=-1, keepdim=True)


def truncated_rollout(attention: Tensor, blocks: int | None = None, discard: float = 0.0) -> Tensor:
    """attention (L, B, H, N, N) → patch marginals (B, N − 1), each row summing to 1.

    ``blocks``: roll out the last L′ blocks only (None: all L); ``discard``: the weakest-entry
    cut of :func:`fuse_heads`."""
    layers = attention.shape[0]
    blocks = layers if blocks is None else blocks
    if not 1 <= blocks <= layers:
        raise ValueError(f"rollout over the last {blocks} blocks: choose 1 to {layers}")
    rollout = None
    for index in range(layers - blocks, layers):  # earliest first: R = Â_L ⋯ Â_{L−L′+1}
        a = fuse_heads(attention[index], discard)
        rollout = a if rollout is None else a @ rollout
    weights = torch.relu(rollout.mean(dim=-2)[..., 1:])
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def region_marginals(patch_weights: Tensor, grid: int, upsample: int, align_corners: bool = True) -> Tensor:
    """Patch marginals (B, P) on a √P × √P grid → region marginals (B, R = grid²) summing to 1,
    pooled exactly as the local features are (``regions.grid_regions``)."""
    from .regions import grid_regions

    b, p = patch_weights.shape
    side = int(round(p ** 0.5))
    pooled = grid_regions(patch_weights.view(b, 1, side, side), grid, upsample, align_corners)[..., 0]
    return pooled / pooled.sum(dim=-1, keepdim=True).clamp_min(1e-12)
