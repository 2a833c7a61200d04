"""Regions: a feature map resized to a g×g grid of local features (the DIML recipe)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def grid_regions(features: Tensor, grid: int = 4, upsample: int = 16, align_corners: bool = True) -> Tensor:
    """Bilinear upsample to ``upsample``² then average-pool to ``grid``², flattened row-major.

    The official code (wl-zhao/DIML, ``architectures/resnet50_diml.py``) goes 7×7 → 16×16 → 4×4
    with ``align_corners=True``: the corner cells of the map land exactly on the corners of the
    upsampled map. ``align_corners=False`` (half-pixel centres) is kept for models trained before
    edgedml followed it (the two give different region features, see tests/models/test_models.py).
    Upsampling first keeps every cell of a 7×7 map represented when pooling to a grid that does
    not divide 7. ``upsample`` must be a multiple of ``grid`` (an exact AveragePool, which exports
    cleanly to ONNX and TensorRT).

    features (B, D, h, w) → regions (B, R, D) with R = grid², not normalised.
    """
    if upsample % grid:
        raise ValueError(f"upsample ({upsample}) must be a multiple of grid ({grid})")
    same = tuple(features.shape[-2:]) == (upsample, upsample)  # a map already of that size is its own resize
    resized = features if same else F.interpolate(features, size=(upsample, upsample), mode="bilinear",
                                                  align_corners=align_corners)
    pooled = resized if upsample == grid else F.avg_pool2d(resized, kernel_size=upsample // grid)
    return pooled.flatten(2).transpose(1, 2)
