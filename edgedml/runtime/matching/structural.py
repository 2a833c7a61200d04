"""The numpy mirror of the structural-similarity core (:mod:`edgedml.models.matching`) for the
runtime, which never imports torch.

The matcher graph returns the transport plan T and the per-region evidence; the explanation also
needs the flow T ⊙ s between individual regions, and s is not a graph output. These functions
recompute it with the same formulas as the core, on the same normalised features the graph
matched (the graph normalises its own inputs). ``tests/models/test_matching.py`` holds the two together.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """x / max(‖x‖, eps) along the last axis: (..., D) → (..., D)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def region_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """s_ij = x̂_i · ŷ_j of the normalised local features: x (..., R, D), y (..., R', D) → (..., R, R')."""
    return l2_normalize(x) @ np.swapaxes(l2_normalize(y), -1, -2)


def flow(plan: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """T ⊙ s, each region pair's share of the structural score Σ T ⊙ s:
    plan (..., R, R'), x (..., R, D), y (..., R', D) → (..., R, R')."""
    return plan * region_similarity(x, y)
