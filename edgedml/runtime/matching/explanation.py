"""The picture of why two images match: :class:`Explanation`, made by
:meth:`~.matcher.Matcher.explain`.

It holds the :class:`~.results.MatchResult` and what drawing needs that the result leaves out:
both frames (RGB), the evidence (and attention, unmatched shares) carried onto each frame's
pixels (:mod:`.explain`), and the network inputs the faithfulness check perturbs; ``render()``
draws it (:mod:`.picture`). No reference to the matcher: ``matcher.faithfulness(explanation)``
measures it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import picture
from .results import MatchResult


@dataclass(frozen=True, eq=False)
class Explanation:
    """A comparison with its pictures. The result's fields read through (``score``,
    ``is_match``, ``matches``, ``face_a``, ``outline_a``, ...)."""

    result: MatchResult
    image_a: np.ndarray = field(repr=False)  # RGB uint8, the whole frame
    image_b: np.ndarray = field(repr=False)
    evidence_a: np.ndarray = field(repr=False)  # (H_a, W_a) per-pixel share of the structural score
    evidence_b: np.ndarray = field(repr=False)
    attention_a: np.ndarray | None = field(default=None, repr=False)  # (P, H_a, W_a) group / learner attention
    attention_b: np.ndarray | None = field(default=None, repr=False)
    unmatched_a: np.ndarray | None = field(default=None, repr=False)  # (H_a, W_a) unmatched share (partial)
    unmatched_b: np.ndarray | None = field(default=None, repr=False)
    inputs: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # network inputs (3, S, S)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "result":
            raise AttributeError(name)
        return getattr(self.result, name)  # score, structural, threshold, is_match, reason, matches, faces...

    def render(self, height: int = 360) -> np.ndarray:
        """Side-by-side picture (BGR uint8): heatmaps, match lines, faces, score and decision."""
        return picture.side_by_side(self, height)

    def to_dict(self) -> dict:
        return self.result.to_dict()
