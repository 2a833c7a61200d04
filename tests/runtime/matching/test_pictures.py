"""The pictures a guard and an installer read, checked on their layouts (every label is a box
laid out before drawing) and on the pixels drawn: the decision in words comes first, the score
sits on its scale with the threshold where it belongs, no label covers another, an image that
was not scored gets no heatmap and no flows, and the calibration pictures mark the default
operating point. Synthetic inputs only: no bundle, fast."""

from __future__ import annotations

from itertools import combinations
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgedml.runtime.assurance import calibration_picture as chart
from edgedml.runtime.assurance import error_rates
from edgedml.runtime.assurance.thresholds import SCORE_BOUNDS
from edgedml.runtime.faces.detection import Face
from edgedml.runtime.matching.picture import door_picture, paint, sides_of
from edgedml.runtime.matching.picture_layout import GREEN, GREY, RED, Scores, Side, Verdict, layout, value_x, verdict
from edgedml.runtime.matching.picture_text import Text, overlaps


def frame(h=240, w=200, seed=0) -> np.ndarray:
    """A textured RGB frame (so a heatmap or a dimmed area changes its pixels)."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(60, 200, (12, 10, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


def match(a, b, flow, i=0, j=0):
    return SimpleNamespace(region_a=i, region_b=j, flow=flow, point_a=a, point_b=b)


FACE = Face((40.0, 50.0, 120.0, 140.0), ((80.0, 100.0), (130.0, 100.0), (105.0, 130.0), (85.0, 160.0),
                                          (125.0, 160.0)), 0.93)
OUTLINE = np.array([[30.0, 40.0], [170.0, 40.0], [170.0, 200.0], [30.0, 200.0]])


def explanation(score=1.9, threshold=1.85, reason=None, matches=None, face_a=FACE, face_b=FACE, h=240, w=200):
    """An Explanation-like record: the fields :func:`~edgedml.runtime.matching.picture.side_by_side` reads."""
    scored = score is not None
    heat = np.zeros((h, w), np.float32)
    heat[60:180, 50:150] = np.linspace(0, 1, 100, dtype=np.float32)
    return SimpleNamespace(
        score=score, structural=None if not scored else score - 0.95, global_similarity=None if not scored else 0.95,
        threshold=threshold, is_match=None if threshold is None or not scored else score >= threshold,
        reason=reason, matches=tuple(matches if matches is not None else
                                     [match((100, 100), (90, 110), 0.3), match((60, 150), (120, 160), 0.2)]),
        face_a=face_a, face_b=face_b, outline_a=OUTLINE if face_a is not None and scored else None,
        outline_b=OUTLINE if face_b is not None and scored else None,
        evidence_a=heat if scored else np.zeros((h, w), np.float32),
        evidence_b=heat if scored else np.zeros((h, w), np.float32),
        unmatched_a=None, unmatched_b=None, image_a=frame(h, w, 1), image_b=frame(h, w, 2))


def plan_of(result, claimed=None, accepted=None, height=300):
    sides = sides_of(result, result.image_a, result.image_b)
    scores = Scores(result.score, result.structural, result.global_similarity, result.threshold)
    return layout(sides, result.matches, verdict(result, claimed, accepted), scores, height), sides


def assert_apart(texts: list[Text]) -> None:
    for a, b in combinations(texts, 2):
        assert not overlaps(a.box, b.box), (a.role, a.text, a.box, b.role, b.text, b.box)


@pytest.mark.parametrize("result, claimed, accepted, words, colour", [
    (explanation(1.9, 1.85), None, None, "MATCH", GREEN),
    (explanation(1.7, 1.85), None, None, "NO MATCH", RED),
    (explanation(1.9, None), None, None, "NO DECISION (no threshold)", GREY),
    (explanation(None, 1.85, "no face found in image b", face_b=None), None, None, "NO MATCH", RED),
    (explanation(1.9, 1.85), "alice", True, "MATCH: alice", GREEN),
    (explanation(1.7, 1.85), "alice", False, "NO MATCH (claimed alice)", RED),
])
def test_the_decision_in_words_comes_first_large_and_at_the_top(result, claimed, accepted, words, colour):
    plan, _ = plan_of(result, claimed, accepted)
    first = plan.texts[0]
    assert first.role == "decision" and first.text == words and first.colour == colour
    assert first.box[1] == min(t.box[1] for t in plan.texts)  # nothing above it
    assert first.scale > max(t.scale for t in plan.texts[1:])  # and nothing larger
    assert_apart(plan.texts)
    assert plan.height > 300  # the panels, and around them the words


def test_the_threshold_mark_sits_at_its_value_on_the_scores_range():
    x0, x1 = 20, 420
    assert value_x(SCORE_BOUNDS[0], x0, x1) == x0 and value_x(SCORE_BOUNDS[1], x0, x1) == x1
    assert value_x(0.0, x0, x1) == 220 and value_x(1.0, x0, x1) == 320
    assert value_x(5.0, x0, x1) == x1 and value_x(-9.0, x0, x1) == x0  # beyond the range: at an end
    # far apart: the whole range −2 … 2 on one bar
    result = explanation(score=-0.5, threshold=1.0)
    plan, sides = plan_of(result)
    bx0, by0, bx1, by1 = plan.bar
    assert plan.bar_range == SCORE_BOUNDS and plan.context is None
    assert plan.threshold_x == bx0 + round((1.0 + 2) / 4 * (bx1 - bx0))
    assert plan.score_x == bx0 + round((-0.5 + 2) / 4 * (bx1 - bx0))
    picture = paint(plan, sides)
    assert (picture[(by0 + by1) // 2, plan.threshold_x] < 40).all()  # a black mark across the bar, there
    label = next(t for t in plan.texts if t.role == "threshold")
    assert label.text == "threshold 1.000" and label.box[0] < plan.threshold_x < label.box[2]


def test_a_score_close_to_its_threshold_is_shown_on_a_window_of_the_range():
    plan, sides = plan_of(explanation(score=1.957, threshold=1.881))
    low, high = plan.bar_range
    assert SCORE_BOUNDS[0] <= low < 1.881 < 1.957 < high <= SCORE_BOUNDS[1] and high - low <= 1.0
    bx0, _, bx1, _ = plan.bar
    assert plan.threshold_x == value_x(1.881, bx0, bx1, plan.bar_range)
    assert plan.score_x - plan.threshold_x > (bx1 - bx0) / 10  # their distance shows
    cx0, _, cx1, _ = plan.context  # and the whole range above it, the window marked
    assert plan.window == (value_x(low, cx0, cx1), value_x(high, cx0, cx1))
    assert plan.context_marks[1] == value_x(1.881, cx0, cx1)
    assert_apart(plan.texts)
    paint(plan, sides)


def test_flow_labels_never_overlap_on_crowded_flows():
    rng = np.random.default_rng(0)
    crowded = [match((int(x), int(y)), (int(u), int(v)), float(f), k, k) for k, (x, y, u, v, f) in enumerate(
        zip(rng.integers(90, 110, 25), rng.integers(90, 110, 25), rng.integers(90, 110, 25), rng.integers(90, 110, 25),
            np.linspace(1, 0.1, 25)))]
    crowded += [match((100, 100), (100, 100), 0.05)] * 5  # the same points again and again
    plan, sides = plan_of(explanation(matches=crowded))
    assert len(plan.flows) == 30 and len(plan.flow_labels) + plan.dropped == 30
    assert len(plan.flow_labels) >= 10  # moved, not all given up
    assert plan.flow_labels[0].text == "1"  # the strongest gets its label first
    assert_apart(plan.texts)  # flow labels, side names, scale, legend: no two boxes share a pixel
    panels_top = plan.panels[0][1]
    for label in plan.flow_labels:  # inside the pictures, and off every flow's end point
        assert label.box[1] >= panels_top and label.box[3] <= panels_top + 300
        for _, pa, pb, _ in plan.flows:
            for p in (pa, pb):
                assert not overlaps(label.box, (p[0] - 6, p[1] - 6, p[0] + 7, p[1] + 7)), (label.text, p)
    paint(plan, sides)


def test_an_image_that_was_not_scored_gets_no_heatmap_and_no_flows_and_says_why():
    result = explanation(None, 1.85, "no face found in image b", face_b=None, matches=[match((100, 100), (90, 90), 1)])
    plan, sides = plan_of(result)
    assert [s.evidence for s in sides] == [None, None]
    assert plan.flows == [] and plan.flow_labels == [] and plan.score_x is None
    notes = [t.text for t in plan.texts if t.role == "note"]
    assert notes == ["face found; not compared", "no face found"]
    kinds = [kind for kind, _ in plan.legend]
    assert "heat" not in kinds and "flow" not in kinds and "box" in kinds and "crop" not in kinds
    picture = paint(plan, sides)
    px, py, k, w, h = plan.panels[1]  # side B as the camera took it, except where it says so
    plain = cv2.resize(cv2.cvtColor(result.image_b, cv2.COLOR_RGB2BGR), (w, h), interpolation=cv2.INTER_AREA)
    drawn = picture[py:py + h, px:px + w].copy()
    keep = np.ones((h, w), bool)
    for t in plan.texts:
        if t.role in ("note", "side"):
            x0, y0, x1, y1 = t.box
            keep[max(0, y0 - py):max(0, y1 - py), max(0, x0 - px):max(0, x1 - px)] = False
    assert np.array_equal(drawn[keep], plain[keep])


def test_the_face_legend_appears_only_where_a_detector_found_a_face():
    with_faces, _ = plan_of(explanation())
    whole, _ = plan_of(explanation(face_a=None, face_b=None))
    assert {"box", "landmarks", "crop"} <= {k for k, _ in with_faces.legend}
    assert not {"box", "landmarks", "crop"} & {k for k, _ in whole.legend}
    assert {"heat", "flow"} <= {k for k, _ in whole.legend}


def test_the_door_picture_of_a_frame_without_a_face_shows_the_frame_alone_and_the_decision():
    picture = door_picture("alice", False, 1.88, frame=frame(), reason="no face found in the frame")
    assert picture.ndim == 3 and picture.dtype == np.uint8
    sides = [Side(frame(), "camera", note="no face found")]
    plan = layout(sides, [], Verdict("NO MATCH (claimed alice)", RED, "no face"),
                          Scores(None, threshold=1.88))
    assert plan.decision.text == "NO MATCH (claimed alice)" and len(plan.panels) == 1 and plan.flows == []
    assert plan.threshold_x is not None and plan.score_x is None
    explained = door_picture("alice", True, 1.85, explanation=explanation())
    assert explained.shape[1] > picture.shape[1] // 2


def test_the_roc_marks_the_default_operating_point_and_keeps_its_labels_apart():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(1.9, 0.03, 800), rng.normal(1.7, 0.05, 12000)
    t = error_rates.threshold_at_far(impostor, 1e-3)
    far, tar = error_rates.far_tar(genuine, impostor, t)
    point = (f"default (FAR 1e-3): threshold {t:.3f}, TAR {tar:.3f}", far, tar)
    curves = {"fp32": (genuine, impostor), "int8-cpu": (genuine + 0.01, impostor)}
    floor = chart.tar_floor_of(curves, point)  # the TAR axis starts at the lowest TAR drawn, a tenth below
    lowest = min(tars[fars >= 1e-4].min() for fars, tars in (error_rates.roc_points(*c) for c in curves.values()))
    assert floor == pytest.approx(np.floor(min(lowest, tar) * 10) / 10) and 0 < floor < tar
    plan = chart.roc_layout(list(curves), 480, point, floor)
    assert plan.marks["default"] == chart.roc_xy(far, tar, 480, floor)
    assert chart.roc_xy(1e-4, floor, 480, floor) == (chart.ROC_MARGIN, 480 - chart.ROC_MARGIN)
    assert [t.text for t in plan.texts if t.role == "default"] == [point[0]]
    assert [t.text for t in plan.texts if t.role == "tick"][-3:] == [f"{floor:.2f}", f"{(floor + 1) / 2:.2f}", "1.00"]
    assert_apart(plan.texts)
    picture = chart.draw_roc(curves, point=point)
    x, y = plan.marks["default"]
    assert tuple(picture[y, x]) == chart.DEFAULT_COLOUR
    for corner in ((1e-4, 1.0), (1e-4, 0.0), (1.0, 0.0)):  # a point in any corner still finds a place
        crowded = chart.roc_layout(["a"], 480, ("default: a long label for a point in the corner", *corner))
        assert_apart(crowded.texts)
        assert [t.role for t in crowded.texts].count("default") == 1  # placed, not left out


def test_the_histograms_mark_the_default_threshold_and_keep_their_labels_apart():
    rng = np.random.default_rng(1)
    genuine, impostor = rng.normal(1.9, 0.03, 800), rng.normal(1.7, 0.05, 12000)
    thresholds = {"eer": 1.8623, "far_0.01": 1.8593, "far_0.001": 1.8809, "far_0.0001": 1.8962}  # crowded
    low, high = min(genuine.min(), impostor.min()), max(genuine.max(), impostor.max())
    plan = chart.histogram_layout(thresholds, low, high, default="far_0.001")
    assert_apart(plan.texts)
    named = [t for t in plan.texts if t.role == "default"]
    assert len(named) == 1 and named[0].text == "FAR 1e-3 (default) 1.881"
    assert named[0].colour == chart.DEFAULT_COLOUR
    picture = chart.draw_histograms(genuine, impostor, thresholds, default="far_0.001")
    x, _ = plan.marks["far_0.001"]
    assert tuple(picture[360 - chart.HIST_MARGIN - 5, x]) == chart.DEFAULT_COLOUR
    assert chart.threshold_label("far_0.0001") == "FAR 1e-4" and chart.threshold_label("eer") == "EER"
