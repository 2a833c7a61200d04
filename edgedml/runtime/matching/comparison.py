"""Comparing two images. Each input becomes a :class:`PairSide` (its frame, the view the embedder
sees, the features a :class:`~.face_result.FaceResult` already holds); :func:`score_pair` embeds
what is left, runs the matcher graph and makes the :class:`~.results.MatchResult` (scores,
decision, the strongest region-to-region flows placed on the frames, evidence and unmatched shares
per region; no score, and why, where a side has no face); :func:`explanation_of` carries its region
maps onto both frames for :meth:`~.matcher.Matcher.explain`. The functions take the
:class:`~.matcher.Matcher` that compares.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..faces.roi import View
from ..inference.image import ImageInput
from ..inference.preprocess import to_network_input
from .explain import region_centre, seen_outline, to_image
from .explanation import Explanation
from .face_result import FaceResult
from .features import Features
from .results import MatchResult, RegionMatch
from .structural import flow as region_flow


class PairSide(NamedTuple):
    """One input of a comparison (:func:`side_of`)."""

    frame: np.ndarray | None  # RGB, None for a FaceResult
    shape: tuple[int, int]  # (H, W) of the frame
    view: View | None  # what the embedder sees; None: no face found
    features: Features | None  # already embedded (a FaceResult), else None


def side_of(matcher, image: ImageInput | FaceResult) -> PairSide:
    """One input of a comparison by ``matcher``: its frame (None for a FaceResult), the frame's
    shape, the view the embedder sees (None: no face) and its features when already embedded."""
    if isinstance(image, FaceResult):
        return PairSide(None, tuple(image.frame_shape), image.view, matcher._face_features(image))
    rgb, views = matcher.views(image)
    return PairSide(rgb, tuple(rgb.shape[:2]), views[0] if views else None, None)


def score_pair(matcher, side_a: PairSide, side_b: PairSide, threshold: float | None, top_matches: int
               ) -> tuple[MatchResult, Features | None]:
    """The comparison of two sides by ``matcher`` → the result (with the ``top_matches`` strongest
    region flows; no score where a side has no face) and the two rows of features (None then)."""
    if side_a.view is None or side_b.view is None:
        missing = " and ".join(name for name, side in (("image a", side_a), ("image b", side_b))
                               if side.view is None)
        return MatchResult(score=None, structural=None, global_similarity=None, threshold=threshold,
                           is_match=False, reason=f"no face found in {missing}",
                           face_a=side_a.view.face if side_a.view else None,
                           face_b=side_b.view.face if side_b.view else None,
                           frame_shape_a=side_a.shape, frame_shape_b=side_b.shape), None
    va, vb = side_a.view, side_b.view
    pending = [side.view for side in (side_a, side_b) if side.features is None]
    embedded = matcher._embed_views(pending) if pending else None
    rows, k = [], 0
    for side in (side_a, side_b):
        if side.features is None:
            rows.append(embedded[k])
            k += 1
        else:
            rows.append(side.features)
    features = Features.concat(rows)
    out = matcher.match(features[0], features[1])
    plan = out["plan"][0]
    structural, score = float(out["structural"][0]), float(out["multiscale"][0])
    g = matcher.grid
    flow = region_flow(plan, features.local[0], features.local[1])  # T ⊙ s, (R, R)
    order = np.argsort(-flow, axis=None)[:top_matches]
    matches = tuple(RegionMatch(int(i), int(j), float(flow[i, j]), region_centre(int(i), g, va, matcher.spec),
                                region_centre(int(j), g, vb, matcher.spec))
                    for i, j in (divmod(int(k), flow.shape[1]) for k in order) if flow[i, j] > 0)
    shares = (None, None)
    if "query_unmatched" in out:  # partial transport: what each region sent to the dummy
        left = (out["query_unmatched"][0], out["candidate_unmatched"][0])
        shares = tuple(rest / np.maximum(rest + kept, 1e-12)
                       for rest, kept in zip(left, (plan.sum(1), plan.sum(0))))
    result = MatchResult(
        score=score, structural=structural, global_similarity=score - structural, threshold=threshold,
        is_match=None if threshold is None else bool(score >= threshold), matches=matches, plan=plan,
        evidence_regions_a=out["query_evidence"][0], evidence_regions_b=out["candidate_evidence"][0],
        unmatched_regions_a=shares[0], unmatched_regions_b=shares[1], face_a=va.face, face_b=vb.face,
        outline_a=seen_outline(va, matcher.spec), outline_b=seen_outline(vb, matcher.spec),
        frame_shape_a=side_a.shape, frame_shape_b=side_b.shape)
    return result, features


def explanation_of(matcher, side_a: PairSide, side_b: PairSide, result: MatchResult,
                   features: Features | None) -> Explanation:
    """The :class:`~.explanation.Explanation` of a comparison by ``matcher`` (:func:`score_pair`'s
    result and features): its region maps (evidence, attention, unmatched shares) carried onto both
    frames, and the network inputs the faithfulness check perturbs."""
    rgb_a, rgb_b = side_a.frame, side_b.frame
    if result.score is None:
        return Explanation(result, rgb_a, rgb_b, np.zeros(rgb_a.shape[:2], np.float32),
                           np.zeros(rgb_b.shape[:2], np.float32))
    g, va, vb = matcher.grid, side_a.view, side_b.view

    def on_frame(region_map, view, rgb):
        return to_image(region_map, view, rgb.shape, matcher.spec)

    attention = features.attention
    shares = (result.unmatched_regions_a, result.unmatched_regions_b)
    return Explanation(
        result, rgb_a, rgb_b,
        evidence_a=on_frame(result.evidence_regions_a.reshape(g, g), va, rgb_a),
        evidence_b=on_frame(result.evidence_regions_b.reshape(g, g), vb, rgb_b),
        attention_a=None if attention is None else np.stack([on_frame(m, va, rgb_a) for m in attention[0]]),
        attention_b=None if attention is None else np.stack([on_frame(m, vb, rgb_b) for m in attention[1]]),
        unmatched_a=None if shares[0] is None else on_frame(shares[0].reshape(g, g), va, rgb_a),
        unmatched_b=None if shares[1] is None else on_frame(shares[1].reshape(g, g), vb, rgb_b),
        inputs=(to_network_input(va.pixels, matcher.spec), to_network_input(vb.pixels, matcher.spec)))
