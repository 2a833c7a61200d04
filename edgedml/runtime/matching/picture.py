"""The picture a guard reads, drawn: :func:`side_by_side` of a comparison, :func:`door_picture`
of a door's decision.

Each image with its evidence heatmap (:func:`overlay`), the area outside what the model sees
dimmed, the regions left unmatched hatched, the face's box, landmarks and crop outline, then the
score bar, the region flows and the legend, all where :func:`~.picture_layout.layout` placed them
(:func:`paint`).
"""

from __future__ import annotations

import numpy as np

from .picture_layout import GREEN, RED, Layout, Scores, Side, Verdict, layout, verdict
from .picture_text import draw as draw_text


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 image with a JET heatmap of ``heat`` (scaled to its own max) blended on → BGR."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    peak = float(heat.max())
    scaled = np.clip(heat / peak, 0, 1) if peak > 0 else np.zeros_like(heat)
    colour = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(bgr, 1 - alpha, colour, alpha, 0)


def _inside(shape: tuple[int, int], outline: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixels whose centres lie inside ``outline`` ((4, 2) corners in pixel-edge
    coordinates: a pixel i spans [i, i + 1))."""
    import cv2

    centre = outline.mean(0)
    shrunk = outline + np.sign(centre - outline) * 0.5 - 0.5  # to OpenCV's pixel-centre coordinates
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(shrunk * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _dim_outside(panel: np.ndarray, outline: np.ndarray | None, scale: float) -> np.ndarray:
    """Darken what lies outside ``outline`` ((4, 2) frame pixels; what the model saw)."""
    if outline is None:
        return panel
    inside = _inside(panel.shape[:2], np.asarray(outline, np.float64) * scale)
    dimmed = (panel * 0.35).astype(np.uint8)
    dimmed[inside] = panel[inside]
    return dimmed


def _hatch_unmatched(panel: np.ndarray, share: np.ndarray | None, scale: float) -> None:
    """Grey diagonal hatching over the regions that left most of their mass unmatched (partial
    transport sent it to the dummy: an occluder, a part the other image does not show)."""
    import cv2

    if share is None:
        return
    h, w = panel.shape[:2]
    mask = cv2.resize(share.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST) > 0.5
    rows, cols = np.indices((h, w))
    mask &= (rows + cols) % 10 < 3
    panel[mask] = (160, 160, 160)


FACE_GREEN = (0, 220, 0)  # BGR: the detector's box and landmarks


def _draw_face(panel: np.ndarray, face, outline: np.ndarray | None, scale: float) -> None:
    """The detector's box (green), its five landmarks (green dots) and the crop the model saw
    (white, edged in black so it shows on a light photo)."""
    import cv2

    if outline is not None and face is not None:
        corners = np.round(np.asarray(outline) * scale).astype(np.int32)
        cv2.polylines(panel, [corners], True, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.polylines(panel, [corners], True, (255, 255, 255), 1, cv2.LINE_AA)
    if face is None:
        return
    x, y, w, h = (v * scale for v in face.box)
    cv2.rectangle(panel, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), FACE_GREEN, 2)
    for px, py in face.landmarks:
        centre = (int(round(px * scale)), int(round(py * scale)))
        cv2.circle(panel, centre, 4, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(panel, centre, 3, FACE_GREEN, -1, cv2.LINE_AA)


def _swatch(canvas: np.ndarray, kind: str, box: tuple[int, int, int, int]) -> None:
    import cv2

    x0, y0, x1, y1 = box
    if kind == "heat":
        canvas[y0:y1, x0:x1] = cv2.applyColorMap(np.tile(np.linspace(0, 255, x1 - x0).astype(np.uint8),
                                                         (y1 - y0, 1)), cv2.COLORMAP_JET)
    elif kind == "flow":
        colour = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[255]]), cv2.COLORMAP_SPRING)[0, 0])
        cv2.line(canvas, (x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2), (0, 0, 0), 5, cv2.LINE_AA)
        cv2.line(canvas, (x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2), colour, 3, cv2.LINE_AA)
    elif kind == "dim":
        canvas[y0:y1, x0:x1] = (70, 70, 70)
    elif kind == "hatch":
        patch = canvas[y0:y1, x0:x1]
        rows, cols = np.indices(patch.shape[:2])
        patch[(rows + cols) % 10 < 3] = (160, 160, 160)
    elif kind == "box":
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), FACE_GREEN, 2)
    elif kind == "landmarks":
        for cx in np.linspace(x0 + 4, x1 - 4, 3):
            cv2.circle(canvas, (int(cx), (y0 + y1) // 2), 3, FACE_GREEN, -1, cv2.LINE_AA)
    elif kind == "crop":
        canvas[y0:y1, x0:x1] = (110, 110, 110)
        cv2.rectangle(canvas, (x0 + 3, y0 + 3), (x1 - 4, y1 - 4), (255, 255, 255), 1)


def paint(plan: Layout, sides: list[Side]) -> np.ndarray:
    """Draw a :func:`layout` → BGR uint8 (plan.height, plan.width, 3)."""
    import cv2

    canvas = np.full((plan.height, plan.width, 3), 255, np.uint8)
    for side, (px, py, k, w, h) in zip(sides, plan.panels):
        bgr = (overlay(side.frame, np.clip(side.evidence, 0, None)) if side.evidence is not None
               else cv2.cvtColor(side.frame, cv2.COLOR_RGB2BGR))
        panel = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        if side.evidence is not None:  # what the model saw, and what it left unmatched, only where it scored
            panel = _dim_outside(panel, side.outline, k)
            _hatch_unmatched(panel, side.unmatched, k)
        _draw_face(panel, side.face, side.outline if side.evidence is not None else None, k)
        canvas[py:py + h, px:px + w] = panel
    x0, y0, x1, y1 = plan.bar
    if plan.context is not None:  # the whole range, the window on it, and lines down to the main bar
        cx0, cy0, cx1, cy1 = plan.context
        canvas[cy0:cy1, cx0:cx1] = (225, 225, 225)
        cv2.rectangle(canvas, (cx0, cy0), (cx1, cy1), (150, 150, 150), 1)
        wx0, wx1 = plan.window
        cv2.rectangle(canvas, (wx0, cy0 - 2), (max(wx1, wx0 + 2), cy1 + 2), (60, 60, 60), 2)
        for a, b in ((wx0, x0), (wx1, x1)):
            cv2.line(canvas, (a, cy1 + 18), (b, y0 - 26), (170, 170, 170), 1, cv2.LINE_AA)
        sx, tx = plan.context_marks
        cv2.line(canvas, (tx, cy0 - 2), (tx, cy1 + 2), (0, 0, 0), 2)
        cv2.fillPoly(canvas, [np.array([[sx - 4, cy0 - 6], [sx + 4, cy0 - 6], [sx, cy0]], np.int32)], (0, 0, 0))
    if plan.threshold_x is None:
        canvas[y0:y1, x0:x1] = (225, 225, 225)
    else:
        canvas[y0:y1, x0:plan.threshold_x] = (190, 190, 245)  # no match
        canvas[y0:y1, plan.threshold_x:x1] = (190, 235, 190)  # match
    cv2.rectangle(canvas, (x0, y0), (x1, y1), (120, 120, 120), 1)
    for item in plan.texts:
        if item.role == "tick":
            tx = (item.box[0] + item.box[2]) // 2
            cv2.line(canvas, (tx, y1), (tx, y1 + 4), (120, 120, 120), 1)
    if plan.threshold_x is not None:
        cv2.line(canvas, (plan.threshold_x, y0 - 4), (plan.threshold_x, y1 + 4), (0, 0, 0), 3)
    if plan.score_x is not None:
        sx = plan.score_x
        cv2.fillPoly(canvas, [np.array([[sx - 7, y0 - 8], [sx + 7, y0 - 8], [sx, y0 + 2]], np.int32)], (0, 0, 0),
                     cv2.LINE_AA)
        cv2.line(canvas, (sx, y0), (sx, y1), (0, 0, 0), 1)
    for _rank, pa, pb, strength in reversed(plan.flows):  # the strongest drawn last, on top
        colour = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[40 + 215 * strength]]), cv2.COLORMAP_SPRING)[0, 0])
        thickness = 1 + int(round(4 * strength))
        cv2.line(canvas, pa, pb, (0, 0, 0), thickness + 2, cv2.LINE_AA)  # outline
        cv2.line(canvas, pa, pb, colour, thickness, cv2.LINE_AA)
        for point in (pa, pb):
            cv2.circle(canvas, point, 5, (0, 0, 0), -1)
            cv2.circle(canvas, point, 3, colour, -1)
    for kind, box in plan.legend:
        _swatch(canvas, kind, box)
    draw_text(canvas, plan.texts)
    return canvas


def sides_of(result, frame_a: np.ndarray, frame_b: np.ndarray, names: tuple[str, str] = ("A", "B")) -> list[Side]:
    """The two :class:`Side` s of a compare result. Where nothing was scored (a face missing),
    no side gets a heatmap: the one without a face says "no face found", the other "not compared"."""
    scored = result.score is not None
    sides = []
    for frame, name, letter in ((frame_a, names[0], "a"), (frame_b, names[1], "b")):
        face = getattr(result, f"face_{letter}")
        note = None
        if not scored:
            note = "no face found" if face is None else "face found; not compared"
        sides.append(Side(frame, name, getattr(result, f"evidence_{letter}") if scored else None,
                          getattr(result, f"outline_{letter}", None), face,
                          getattr(result, f"unmatched_{letter}", None) if scored else None, note))
    return sides


def side_by_side(result, height: int = 360, *, frame_a: np.ndarray | None = None, frame_b: np.ndarray | None = None,
                 names: tuple[str, str] = ("A", "B"), claimed: str | None = None,
                 accepted: bool | None = None) -> np.ndarray:
    """The picture a guard looks at (BGR uint8), for a comparison ``result`` (an
    :class:`~.explanation.Explanation`: scores, decision, maps in frame pixels) of the RGB frames
    ``frame_a`` and ``frame_b`` (default: the explanation's ``image_a``, ``image_b``): the decision
    in words at the top (a door passes ``accepted`` and the ``claimed`` identity), the score on
    its scale with the threshold marked, each frame with its evidence heatmap (red: the regions
    that made the match), numbered lines for the strongest region-to-region flows, the area
    outside what the model sees dimmed, the face box, landmarks and crop outline, and a legend.
    An image that was not scored (no face) gets no heatmap and no flows, and says why."""
    frame_a = result.image_a if frame_a is None else frame_a
    frame_b = result.image_b if frame_b is None else frame_b
    sides = sides_of(result, frame_a, frame_b, names)
    scores = Scores(result.score, result.structural, result.global_similarity, result.threshold)
    return paint(layout(sides, result.matches, verdict(result, claimed, accepted), scores, height), sides)


def door_picture(claimed: str, accepted: bool, threshold: float | None, explanation=None,
                 frame: np.ndarray | None = None, reason: str | None = None, height: int = 360) -> np.ndarray:
    """A door's evidence picture (BGR uint8) of its decision (``accepted`` or not, for the
    ``claimed`` identity, at ``threshold``): the ``explanation`` of the camera's frame against the
    enrolled photo that matched best (its frames: camera, enrolled), or, where nothing was
    compared (no face in the camera's RGB ``frame``), that frame alone, saying why (``reason``)."""
    if explanation is not None:
        return side_by_side(explanation, height, names=("camera", f"enrolled: {claimed}"), claimed=claimed,
                            accepted=accepted)
    if frame is None:
        raise ValueError("door_picture needs an explanation or the camera's frame")
    why = reason or "nothing was compared"
    sides = [Side(frame, "camera", note="no face found" if "no face" in why else "not compared")]
    detail = why + ("" if threshold is None else f"; threshold {threshold:.3f}")
    words = Verdict(f"MATCH: {claimed}" if accepted else f"NO MATCH (claimed {claimed})", GREEN if accepted else RED,
                    detail)
    return paint(layout(sides, [], words, Scores(None, threshold=threshold), height), sides)
