"""The matcher graph's outputs checked before anything is decided: scores no honest graph produces
(inf, NaN, a score outside its range beyond float rounding: :data:`SCORE_RANGE_TOL`) are refused
(:func:`check_scores`), so a tampered or broken graph never decides."""

from __future__ import annotations

import numpy as np

from ...errors import BundleError
from ..inference.agreement import SCORE_TOL

# how far past its range a score may lie: float32 rounding, and the fp16 graphs' agreement bound
SCORE_RANGE_TOL = {"fp32": 1e-3, "fp16": SCORE_TOL}


def check_scores(out: dict[str, np.ndarray], tolerance: float = SCORE_RANGE_TOL["fp32"]) -> None:
    """Refuse matcher outputs no honest graph produces, so a tampered or broken graph never
    decides: any inf or NaN, a structural similarity outside [-1, 1] (a transport plan of mass
    ≤ 1 over cosines), a global cosine (multiscale − structural) outside [-1, 1], so a
    multi-scale score outside [-2, 2]. Raises a one-line :class:`BundleError`."""
    for name, value in out.items():
        if not np.isfinite(value).all():
            raise BundleError(f"the matcher graph returned inf or NaN in '{name}': the graph is broken or was "
                              f"tampered with, so nothing is decided; re-export the bundle")
    structural = np.asarray(out["structural"], np.float64)
    multiscale = np.asarray(out["multiscale"], np.float64)
    for what, values, bound in (("structural similarity", structural, 1.0), ("multi-scale score", multiscale, 2.0),
                                ("global cosine", multiscale - structural, 1.0)):
        worst = float(values.flat[np.abs(values).argmax()]) if values.size else 0.0
        if abs(worst) > bound + tolerance:
            raise BundleError(f"the matcher graph returned a {what} of {worst:.4g}, outside [-{bound:g}, {bound:g}]: "
                              f"the graph is broken or was tampered with, so nothing is decided; re-export the bundle")
