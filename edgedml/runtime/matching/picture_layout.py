"""The picture a guard reads, laid out as pure geometry before anything is drawn: the decision in
words (:func:`verdict`), the score bar with the threshold marked (zoomed in where the two lie close:
:func:`zoom_window`), each image as a :class:`Side` with its region flows and their numbered
labels (never overlapping: :mod:`.picture_text`), and a legend of only what is drawn, all placed
as boxes in a :class:`Layout` by :func:`layout` for :func:`~.picture.paint` to draw."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..assurance.thresholds import SCORE_BOUNDS
from .picture_text import Text, clamp_x, first_free, overlaps, text_size

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
    reason under it, the score bar on the score's range (:data:`~..assurance.thresholds.SCORE_BOUNDS`)
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
