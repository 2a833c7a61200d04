"""Explanations in pixels: region maps back onto the original frame, and the side-by-side picture.

The network sees the crop the preprocessing spec takes (a centred square for ``center_crop``) of
a view (:mod:`.roi`: the whole frame, or a face crop). A g×g region map covers that crop, so it
is resized onto the crop's box in the view, then carried onto the frame by the view's affine map;
it is zero outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...preprocessing import PreprocessSpec
from ..assurance.thresholds import SCORE_BOUNDS
from ..faces.roi import View
from ..inference.preprocess import crop_box
from .picture_text import Text, clamp_x, first_free, overlaps, text_size
from .picture_text import draw as draw_text


def network_to_frame(view: View, spec: PreprocessSpec) -> tuple[np.ndarray, int, int]:
    """(2, 3) affine map from the pixels of the network's crop of ``view`` (resized to its box
    size) to frame pixels, and that box's (height, width)."""
    top, left, ch, cw = crop_box(view.pixels.shape[0], view.pixels.shape[1], spec)
    linear = view.to_frame[:, :2]
    return np.hstack([linear, (linear @ np.array([left, top], np.float64) + view.to_frame[:, 2])[:, None]]), ch, cw


def to_image(region_map: np.ndarray, view: View, frame_shape: tuple[int, ...], spec: PreprocessSpec) -> np.ndarray:
    """A (g, g) or (h, w) map over the network's crop of ``view`` → float32 (H, W) over the
    frame of shape ``frame_shape`` (H, W[, 3]); zero where the network did not look."""
    import cv2

    height, width = frame_shape[:2]
    affine, ch, cw = network_to_frame(view, spec)
    resized = cv2.resize(region_map.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
    if view.is_whole_frame:  # a plain crop box: placed, not resampled twice
        top, left = int(affine[1, 2]), int(affine[0, 2])
        out = np.zeros((height, width), np.float32)
        out[top:top + ch, left:left + cw] = resized
        return out
    return cv2.warpAffine(resized, affine, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def region_centre(index: int, grid: int, view: View, spec: PreprocessSpec) -> tuple[int, int]:
    """Frame pixel (x, y) of the centre of region ``index`` (row-major on the g×g grid)."""
    affine, ch, cw = network_to_frame(view, spec)
    row, col = divmod(index, grid)
    x, y = affine @ np.array([(col + 0.5) * cw / grid, (row + 0.5) * ch / grid, 1.0])
    return int(round(x)), int(round(y))


def seen_outline(view: View, spec: PreprocessSpec) -> np.ndarray:
    """(4, 2) frame-pixel corners of what the network sees of ``view`` (its crop box)."""
    affine, ch, cw = network_to_frame(view, spec)
    corners = np.array([[0, 0, 1], [cw, 0, 1], [cw, ch, 1], [0, ch, 1]], np.float64)
    return corners @ affine.T


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


# ---- the picture a guard reads -------------------------------------------------------------

GREEN, RED, GREY = (0, 140, 0), (0, 0, 200), (90, 90, 90)  # BGR: MATCH, NO MATCH, no decision
NO_THRESHOLD = "NO DECISION (no threshold)"


@dataclass(frozen=True)
class Verdict:
    """The decision in words (``words``: "MATCH", "NO MATCH (claimed alice)", "NO DECISION (no
    threshold)"), its colour (BGR) and a smaller line saying why (``detail``)."""

    words: str
    colour: tuple[int, int, int]
    detail: str = ""


@dataclass(frozen=True)
class Scores:
    """What the score bar shows: the multi-scale score (None: nothing was scored), its two
    terms and the threshold it was decided at (None: no threshold)."""

    score: float | None
    structural: float | None = None
    global_similarity: float | None = None
    threshold: float | None = None


@dataclass
class Side:
    """One image of the picture: its RGB frame and what to draw on it. ``evidence`` (H, W) is
    None for an image that was not scored (no heatmap, no flows); ``note`` is said on it
    ("no face found")."""

    frame: np.ndarray
    name: str
    evidence: np.ndarray | None = None
    outline: np.ndarray | None = None
    face: object = None
    unmatched: np.ndarray | None = None
    note: str | None = None


@dataclass
class Layout:
    """Where everything goes, before anything is drawn (pure geometry). ``texts``: every label,
    the decision first; ``panels``: (x, y, scale, width, height) of each side; ``bar``: (x0, y0,
    x1, y1) of the score bar, with ``score_x`` and ``threshold_x`` its marks (None: not drawn);
    ``flows``: (rank, point a, point b, strength 0–1) on the canvas; ``flow_labels``: the rank
    labels placed (a label that found no free place is left out: ``dropped`` counts them);
    ``legend``: (kind, swatch box)."""

    width: int
    height: int
    texts: list[Text] = field(default_factory=list)
    panels: list[tuple[int, int, float, int, int]] = field(default_factory=list)
    bar: tuple[int, int, int, int] = (0, 0, 0, 0)
    bar_range: tuple[float, float] = SCORE_BOUNDS
    context: tuple[int, int, int, int] | None = None
    window: tuple[int, int] | None = None
    context_marks: tuple[int, int] | None = None  # (score x, threshold x) on the context bar
    score_x: int | None = None
    threshold_x: int | None = None
    flows: list[tuple[int, tuple[int, int], tuple[int, int], float]] = field(default_factory=list)
    flow_labels: list[Text] = field(default_factory=list)
    dropped: int = 0
    legend: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)

    @property
    def decision(self) -> Text:
        return self.texts[0]


def verdict(result, claimed: str | None = None, accepted: bool | None = None) -> Verdict:
    """The decision of a :class:`~.matcher.MatchResult` in words; a door passes its own
    ``accepted`` and the ``claimed`` identity (the gallery decided, the result explains)."""
    decided = result.is_match if accepted is None else accepted
    who = f" (claimed {claimed})" if claimed else ""
    if result.reason:
        threshold = "" if result.threshold is None else f"; threshold {result.threshold:.3f}"
        return Verdict("NO MATCH" + who, RED, result.reason + threshold)
    terms = (f"score {result.score:.3f} = structural {result.structural:.3f} + global "
             f"{result.global_similarity:.3f}")
    if decided is None or result.threshold is None:
        return Verdict(NO_THRESHOLD, GREY, f"{terms}; no threshold: calibrate the bundle (edgedml calibrate) or "
                                           f"pass --threshold")
    if decided:
        return Verdict("MATCH" + (f": {claimed}" if claimed else ""), GREEN,
                       f"{terms}, at or above the threshold {result.threshold:.3f}")
    return Verdict("NO MATCH" + who, RED, f"{terms}, below the threshold {result.threshold:.3f}")


def value_x(value: float, x0: int, x1: int, bounds: tuple[float, float] = SCORE_BOUNDS) -> int:
    """Canvas x of ``value`` on a bar from ``x0`` (bounds[0]) to ``x1`` (bounds[1]); values
    beyond the bounds sit at its ends."""
    low, high = bounds
    share = min(max((value - low) / (high - low), 0.0), 1.0)
    return int(round(x0 + share * (x1 - x0)))


def _wrap(text: str, scale: float, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels (broken at spaces)."""
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and text_size(trial, scale)[0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5)


def _ticks(low: float, high: float) -> np.ndarray:
    """Round values from ``low`` to ``high`` (both included when round), at most 9 of them."""
    step = next((s for s in TICK_STEPS if (high - low) / s <= 8 + 1e-9), TICK_STEPS[-1])
    first = np.ceil(low / step - 1e-9) * step
    return np.round(np.arange(first, high + step * 1e-6, step), 6)


def zoom_window(scores: Scores) -> tuple[float, float] | None:
    """The stretch of the score range the main bar shows where the score and the threshold lie
    within a quarter of the whole range (−2 … 2) of each other: both, with room on either side,
    on round values; None (the whole range) otherwise or where either is missing."""
    if scores.score is None or scores.threshold is None:
        return None
    low, high = SCORE_BOUNDS
    near, far = sorted((scores.score, scores.threshold))
    pad = max(0.05, 0.6 * (far - near))
    if far - near + 2 * pad > (high - low) / 4:
        return None
    step = next(s for s in TICK_STEPS if (far - near + 2 * pad) / s <= 8)
    start = max(low, np.floor((near - pad) / step) * step)
    return float(start), float(min(high, np.ceil((far + pad) / step) * step))


def _centred(label: Text, x: int) -> Text:
    """``label`` moved so that its glyphs are centred on canvas column ``x``."""
    return label.moved(x - text_size(label.text, label.scale, label.thickness)[0] // 2, label.y)


def _legend_items(sides: list[Side], flows: bool) -> list[tuple[str, str]]:
    """(kind, words) of what the picture shows, only what is drawn: the face's box, landmarks
    and crop outline only where a detector found a face."""
    scored = any(s.evidence is not None for s in sides)
    faces = any(s.face is not None for s in sides)
    items = []
    if scored:
        items.append(("heat", "heatmap: red regions added most to the score, blue least"))
    if flows:
        items.append(("flow", "lines: strongest region matches, 1 = strongest"))
    if scored and any(s.outline is not None for s in sides):
        items.append(("dim", "dimmed: outside what the model sees"))
    if any(s.unmatched is not None for s in sides):
        items.append(("hatch", "hatched: regions left mostly unmatched"))
    if faces:
        items += [("box", "face box (detector)"), ("landmarks", "5 landmarks: eyes, nose, mouth corners")]
        if any(s.face is not None and s.outline is not None for s in sides):
            items.append(("crop", "crop the model saw"))
    return items


def layout(sides: list[Side], matches, verdict_: Verdict, scores: Scores, height: int = 360,
           min_width: int = 640) -> Layout:
    """Lay the picture out (see :class:`Layout`): the decision in large words at the top, the
    reason under it, the score bar on the score's range (:data:`~.thresholds.SCORE_BOUNDS`)
    with the threshold marked, the sides with their flows (between the two sides, only where
    both were scored) and numbered labels that never overlap, and a legend of what is drawn."""
    gap, margin = 12, 12
    scales = [height / s.frame.shape[0] for s in sides]
    widths = [max(1, int(round(s.frame.shape[1] * k))) for s, k in zip(sides, scales)]
    width = max(sum(widths) + gap * (len(sides) - 1), min_width)
    out = Layout(width, 0)
    # the decision, then why
    words = Text(verdict_.words, margin, 42, 1.2, 3, verdict_.colour, role="decision")
    out.texts.append(words)
    y = 42 + 12
    for line in _wrap(verdict_.detail, 0.5, width - 2 * margin):
        y += 23
        out.texts.append(Text(line, margin, y, 0.5, 1, (0, 0, 0), role="detail"))
    # the score bar: the whole range (−2 … 2), and below it, where score and threshold lie close
    # together, the window around them drawn wide (the main bar) so that their distance shows
    x0, x1 = margin + 8, width - margin - 8
    window = zoom_window(scores)
    if window is not None:
        context_top = y + 20
        out.context = (x0, context_top, x1, context_top + 8)
        out.window = (value_x(window[0], x0, x1), value_x(window[1], x0, x1))
        out.context_marks = (value_x(scores.score, x0, x1), value_x(scores.threshold, x0, x1))
        low, high = SCORE_BOUNDS
        for value in np.linspace(low, high, 9):
            tick = Text(f"{value:g}", 0, context_top + 22, 0.38, 1, GREY, role="context tick")
            out.texts.append(clamp_x(_centred(tick, value_x(value, x0, x1)), margin, width - margin))
        y = context_top + 34
    bar_top = y + 34
    out.bar = (x0, bar_top, x1, bar_top + 12)
    out.bar_range = window or SCORE_BOUNDS
    taken = []
    if scores.score is not None:
        out.score_x = value_x(scores.score, x0, x1, out.bar_range)
        label = Text(f"score {scores.score:.3f}", 0, bar_top - 10, 0.5, 1, (0, 0, 0), (255, 255, 255), role="score")
        label = clamp_x(_centred(label, out.score_x), margin, width - margin)
    else:
        label = Text("no score: nothing was compared", 0, bar_top - 10, 0.5, 1, GREY, role="score")
        label = clamp_x(_centred(label, (x0 + x1) // 2), margin, width - margin)
    out.texts.append(label)
    if scores.threshold is not None:
        out.threshold_x = value_x(scores.threshold, x0, x1, out.bar_range)
        mark = Text(f"threshold {scores.threshold:.3f}", 0, bar_top + 28, 0.45, 1, (0, 0, 0), role="threshold")
        mark = clamp_x(_centred(mark, out.threshold_x), margin, width - margin)
        out.texts.append(mark)
        taken.append(mark.box)
    if out.threshold_x is not None:  # the two sides of the threshold, named inside the bar where they fit
        zones = (("NO MATCH", x0, out.threshold_x, RED), ("MATCH", out.threshold_x, x1, GREEN))
        sx = -100 if out.score_x is None else out.score_x
        marker = (sx - 8, bar_top, sx + 8, bar_top + 12)
        for words, left, right, colour in zones:  # at the zone's middle, else a quarter from either end
            word = Text(words, 0, bar_top + 10, 0.35, 1, colour, pad=1, role="zone")
            for place in (left + right) // 2, (3 * left + right) // 4, (left + 3 * right) // 4:
                zone = _centred(word, place)
                if zone.box[0] > left + 2 and zone.box[2] < right - 2 and not overlaps(zone.box, marker, 2):
                    out.texts.append(zone)
                    break
    for value in _ticks(*out.bar_range):  # a tick label under the threshold's is left out
        tick = Text(f"{value:g}", 0, bar_top + 28, 0.4, 1, GREY, role="tick")
        tick = clamp_x(_centred(tick, value_x(value, x0, x1, out.bar_range)), margin, width - margin)
        if not any(overlaps(tick.box, other, 2) for other in taken):
            out.texts.append(tick)
            taken.append(tick.box)
    # the sides
    top = bar_top + 40
    x = (width - sum(widths) - gap * (len(sides) - 1)) // 2  # narrow images (or a door's one frame): centred
    for _side, k, w in zip(sides, scales, widths):
        out.panels.append((x, top, k, w, height))
        x += w + gap
    area = (0, top, width, top + height)
    taken = []
    for side, (px, py, _k, w, h) in zip(sides, out.panels):
        name = Text(side.name, px + 8, py + 24, 0.7, 2, (255, 255, 255), (0, 0, 0), 4, role="side")
        out.texts.append(name)
        taken.append(name.box)
        if side.note:
            big = side.face is None  # "no face found": large, red; a face that was not compared: smaller, grey
            note = Text(side.note, 0, 0, 0.8 if big else 0.6, 2, (255, 255, 255), RED if big else GREY, 6, role="note")
            nw, nh = note.box[2] - note.box[0], note.box[3] - note.box[1]
            low = py + h - 14 if side.face is not None else py + h // 2 + nh // 2 - 6  # a face: not over it
            note = clamp_x(note.moved(px + (w - nw) // 2 + 6, low), px, px + w)
            out.texts.append(note)
            taken.append(note.box)
    if len(sides) == 2 and all(s.evidence is not None for s in sides):
        (ax, ay, ka, _, _), (bx, by, kb, _, _) = out.panels
        strongest = max((m.flow for m in matches), default=1.0) or 1.0
        for rank, m in enumerate(matches, 1):
            pa = (ax + int(m.point_a[0] * ka), ay + int(m.point_a[1] * ka))
            pb = (bx + int(m.point_b[0] * kb), by + int(m.point_b[1] * kb))
            out.flows.append((rank, pa, pb, float(np.clip(m.flow / strongest, 0, 1))))
        dots = [(p[0] - 6, p[1] - 6, p[0] + 7, p[1] + 7) for _, pa, pb, _ in out.flows for p in (pa, pb)]
        for rank, pa, pb, _ in out.flows:  # strongest first: it gets the best place
            label = Text(str(rank), 0, 0, 0.55, 2, (0, 0, 0), (255, 255, 255), 3, role=f"flow {rank}")
            w, h = label.box[2] - label.box[0], label.box[3] - label.box[1]
            origins = [(px + dx, py + dy) for reach in (1, 2, 3) for px, py in (pa, pb)
                       for dx, dy in ((9 * reach, -9 * reach), (9 * reach, h + 3 * reach),
                                      (-w - 6 * reach, -9 * reach), (-w - 6 * reach, h + 3 * reach))]
            placed = first_free(label, origins, taken + dots, area)
            if placed is None:
                out.dropped += 1
                continue
            out.flow_labels.append(placed)
            out.texts.append(placed)
            taken.append(placed.box)
    # the legend: a swatch and its words per item, in rows
    y = top + height + 24
    x = margin
    for kind, words in _legend_items(sides, bool(out.flows)):
        swatch_w = 90 if kind == "heat" else 26
        text = Text(words, 0, 0, 0.45, 1, (0, 0, 0), role=f"legend {kind}")
        tw = text.box[2] - text.box[0]
        if x > margin and x + swatch_w + 6 + tw > width - margin:
            x, y = margin, y + 24
        out.legend.append((kind, (x, y - 11, x + swatch_w, y + 3)))
        text = text.moved(x + swatch_w + 8, y)
        out.texts.append(text)
        x = text.box[2] + 18
    out.height = y + 14
    return out


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
