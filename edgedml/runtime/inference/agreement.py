"""How closely a graph must agree with its reference (numpy only).

One set of bounds for both places that hold graphs to them: the export, which runs every
precision's graphs against fp32 with ONNX Runtime, and the engine check, which runs TensorRT
engines against ONNX Runtime's stored outputs at the same precision (on a device without torch).
"""

from __future__ import annotations

import numpy as np

EMBEDDING_COSINE = {"fp32": 0.999, "fp16": 0.999, "int8": 0.98, "int8-cpu": 0.98}  # bound on the mean
MAP_AT_R_DROP = {"fp16": 0.01, "int8": 0.02, "int8-cpu": 0.01}  # multi-scale, on a labelled folder
SCORE_TOL = 1e-2  # max |Δ| of the matcher's structural and multi-scale scores


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair, in float64: a, b (N, ...) → (N,)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
