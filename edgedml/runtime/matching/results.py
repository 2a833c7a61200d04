"""What :meth:`~.matcher.Matcher.compare` returns: :class:`MatchResult`, a small typed record of
one comparison (scores, decision, the region-level evidence and where it lies in each frame).

It holds no pixels and no reference to the matcher: it can be kept, logged or sent anywhere.
The picture of why (frames, heatmaps in frame pixels) is an :class:`~.explanation.Explanation`,
made by :meth:`~.matcher.Matcher.explain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..faces.detection import Face


class RegionMatch(NamedTuple):
    """One strong region-to-region correspondence: flow T_ij·s_ij and pixel centres (x, y)."""

    region_a: int
    region_b: int
    flow: float
    point_a: tuple[int, int]
    point_b: tuple[int, int]


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Why two images match: scores, decision and region-level evidence (R = g² regions).

    With a detector and no face in an image: ``score`` is None, ``is_match`` False and
    ``reason`` says which image had none; the evidence is None and ``matches`` empty."""

    score: float | None  # multi-scale: structural + global
    structural: float | None  # Σ T ⊙ s
    global_similarity: float | None  # cosine of the global embeddings
    threshold: float | None
    is_match: bool | None  # None when no threshold is calibrated or given
    reason: str | None = None  # why there is no score ("no face found in image b")
    matches: tuple[RegionMatch, ...] = ()  # strongest flows first, centres in frame pixels
    plan: np.ndarray | None = field(default=None, repr=False)  # (R, R) transport plan, rows: regions of a
    # (R,) each region's share of the structural score (row-major on the g×g grid)
    evidence_regions_a: np.ndarray | None = field(default=None, repr=False)
    evidence_regions_b: np.ndarray | None = field(default=None, repr=False)
    # (R,) the share of each region's mass left unmatched (partial transport only)
    unmatched_regions_a: np.ndarray | None = field(default=None, repr=False)
    unmatched_regions_b: np.ndarray | None = field(default=None, repr=False)
    face_a: Face | None = None  # the detected face the model saw (with a detector)
    face_b: Face | None = None
    # (4, 2) frame pixels: the corners of what the model sees of image a
    outline_a: np.ndarray | None = field(default=None, repr=False)
    outline_b: np.ndarray | None = field(default=None, repr=False)
    frame_shape_a: tuple[int, int] | None = None  # (H, W) of the frames compared
    frame_shape_b: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary (no maps)."""
        def regions(values):
            return None if values is None else np.asarray(values).round(4).tolist()

        return {"score": self.score, "structural": self.structural, "global": self.global_similarity,
                "threshold": self.threshold, "is_match": self.is_match, "reason": self.reason,
                "face_a": self.face_a and self.face_a.to_dict(), "face_b": self.face_b and self.face_b.to_dict(),
                "unmatched_a": regions(self.unmatched_regions_a), "unmatched_b": regions(self.unmatched_regions_b),
                "matches": [{"region_a": m.region_a, "region_b": m.region_b, "flow": m.flow,
                             "point_a": list(m.point_a), "point_b": list(m.point_b)} for m in self.matches]}

    def render(self, *args, **kwargs):
        """A MatchResult holds no pixels: the picture comes from :meth:`~.matcher.Matcher.explain`."""
        raise AttributeError("a MatchResult holds no pixels; draw the explanation with "
                             "matcher.explain(image_a, image_b).render()")

    def faithfulness(self, *args, **kwargs):
        """Moved: :meth:`~.matcher.Matcher.faithfulness` of an :class:`~.explanation.Explanation`."""
        raise AttributeError("a MatchResult holds no network inputs; measure with "
                             "matcher.faithfulness(matcher.explain(image_a, image_b))")
