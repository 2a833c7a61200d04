"""The pictures of a calibration, written into the bundle beside its thresholds: the ROC curve
(every threshold, the false-accept rate on a log axis, the default operating point marked and
labelled) and the genuine and impostor score histograms with a line at each threshold. Each is
laid out first (:class:`ReportLayout`: every label a box clear of the others, placed with
:mod:`..matching.picture_text`), then drawn with OpenCV."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import EdgeDMLError
from ...filemodes import write_atomically
from .error_rates import roc_points

ROC_COLOURS = ((200, 80, 0), (0, 140, 255), (60, 160, 60), (160, 60, 160))  # BGR
DEFAULT_COLOUR = (180, 90, 0)  # BGR: the default operating point and threshold


@dataclass
class ReportLayout:
    """Where a calibration picture's words and marks go, before drawing: ``texts`` (every label,
    boxes pairwise apart), ``marks`` ({name: (x, y)} canvas pixels: the default operating point
    on the ROC, each threshold's line on the histograms (x, top))."""

    texts: list = field(default_factory=list)
    marks: dict = field(default_factory=dict)


def threshold_label(name: str) -> str:
    """A threshold's key as a reader says it: "eer" → "EER", "far_0.001" → "FAR 1e-3"."""
    if name.startswith("far_"):
        try:
            return f"FAR 1e{int(round(math.log10(float(name[4:]))))}"
        except ValueError:
            return name
    return name.upper() if name == "eer" else name


ROC_MARGIN = 56


def roc_xy(far: float, tar: float, size: int, tar_floor: float = 0.0) -> tuple[int, int]:
    """Canvas pixel of (FAR, TAR) on the ROC picture: FAR on a log axis 1e-4 … 1 (lower FARs at
    its left end), TAR ``tar_floor`` … 1 upwards (lower TARs at its bottom)."""
    span = size - 2 * ROC_MARGIN
    x = ROC_MARGIN + span * (np.log10(max(far, 1e-4)) + 4) / 4
    share = (1 - max(tar, tar_floor)) / (1 - tar_floor)
    return int(round(x)), int(round(ROC_MARGIN + span * share))


def tar_floor_of(curves: dict[str, tuple[np.ndarray, np.ndarray]], point: tuple[str, float, float] | None) -> float:
    """The TAR axis's lower end: the lowest TAR any curve (or the point) reaches at FAR 1e-4 and
    above, rounded down to a tenth (0 … 0.9), so a model that errs rarely is not drawn flat on top."""
    lowest = 1.0 if point is None else point[2]
    for genuine, impostor in curves.values():
        far, tar = roc_points(genuine, impostor)
        seen = tar[far >= 1e-4]
        lowest = min(lowest, float(seen.min()) if len(seen) else float(tar.max()))
    return float(min(0.9, np.floor(lowest * 10 + 1e-9) / 10))


def roc_layout(labels: list[str], size: int = 480, point: tuple[str, float, float] | None = None,
               tar_floor: float = 0.0) -> ReportLayout:
    """The ROC picture's words: title, axis ticks and titles, the curves' legend (``labels``,
    empty ones left out) and the operating ``point`` (label, FAR, TAR), labelled where its box
    clears every other (see :mod:`..matching.picture_text`)."""
    from ..matching.picture_text import Text, first_free

    margin, span = ROC_MARGIN, size - 2 * ROC_MARGIN
    out = ReportLayout()
    out.texts.append(Text("ROC curve", margin, margin - 16, 0.55, 1, role="title"))
    for exponent in range(-4, 1):
        x = roc_xy(10.0 ** exponent, 1, size)[0]
        out.texts.append(Text(f"1e{exponent}", x - 14, size - margin + 22, 0.4, role="tick"))
    for tar in (tar_floor, (tar_floor + 1) / 2, 1.0):
        out.texts.append(Text(f"{tar:.2f}", margin - 34, roc_xy(1, tar, size, tar_floor)[1] + 4, 0.4, role="tick"))
    out.texts.append(Text("false accept rate (impostors let in), log scale", margin, size - 10, 0.42, role="axis"))
    named = [label for label in labels if label]
    for n, label in enumerate(named):  # bottom right, above the axis
        out.texts.append(Text(label, margin + span - 164, margin + span - 12 - 18 * (len(named) - 1 - n), 0.4,
                              role=f"legend {n}"))
    if point is not None:
        label, far, tar = point
        x, y = roc_xy(far, tar, size, tar_floor)
        out.marks["default"] = (x, y)
        text = Text(label, 0, 0, 0.42, 1, DEFAULT_COLOUR, (255, 255, 255), role="default")
        w = text.box[2] - text.box[0]
        bounds = (margin + 2, margin + 2, margin + span - 2, margin + span - 2)
        near = [(x + dx, y + dy) for dy in (22, 40, 58, 76, -12, -30) for dx in (10, -w // 2, -w + 4, -w - 10)]
        anywhere = [(bx, by) for by in range(margin + span - 10, margin + 16, -18)  # else: the first free row
                    for bx in range(margin + 8, margin + span - w, 24)]
        origins = [(min(max(ox, bounds[0] + 3), bounds[2] - w + 1), oy) for ox, oy in near] + anywhere
        taken = [t.box for t in out.texts] + [(0, margin, 24, margin + span)]  # the sideways axis title
        placed = first_free(text, origins, taken + [(x - 8, y - 8, x + 9, y + 9)], bounds)
        if placed is not None:  # a label with no free place is left out (the dot and guides stay)
            out.texts.append(placed)
    return out


def draw_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], size: int = 480,
             point: tuple[str, float, float] | None = None, tar_floor: float | None = None):
    """ROC curves on a log FAR axis (1e-4 … 1) as a BGR image: {label: (genuine, impostor)}
    (every threshold, a step curve; an empty label draws no legend), with an operating ``point``
    (label, FAR, TAR), such as the default threshold's, marked and labelled. The TAR axis runs
    from ``tar_floor`` (default: :func:`tar_floor_of` the curves) to 1."""
    import cv2

    from ..matching.picture_text import draw

    img = np.full((size, size, 3), 255, np.uint8)
    margin, span = ROC_MARGIN, size - 2 * ROC_MARGIN
    tar_floor = tar_floor_of(curves, point) if tar_floor is None else tar_floor
    plan = roc_layout(list(curves), size, point, tar_floor)
    cv2.rectangle(img, (margin, margin), (margin + span, margin + span), (0, 0, 0), 1)
    for exponent in range(-3, 0):  # light grid at each decade
        x = roc_xy(10.0 ** exponent, 1, size)[0]
        cv2.line(img, (x, margin + 1), (x, margin + span - 1), (230, 230, 230), 1)
    for n, (label, (genuine, impostor)) in enumerate(curves.items()):
        colour = ROC_COLOURS[n % len(ROC_COLOURS)]
        far, tar = roc_points(genuine, impostor)
        steps = [roc_xy(f, t, size, tar_floor) for f, t in zip(np.repeat(far, 2)[1:], np.repeat(tar, 2)[:-1])]
        cv2.polylines(img, [np.array(steps, np.int32)], False, colour, 2, cv2.LINE_AA)
        legend = next((t for t in plan.texts if t.role == f"legend {n}"), None)
        if label and legend is not None:
            cv2.line(img, (legend.x - 26, legend.y - 4), (legend.x - 6, legend.y - 4), colour, 2, cv2.LINE_AA)
    if "default" in plan.marks:
        x, y = plan.marks["default"]
        for a, b in (((x, y), (x, margin + span)), ((margin, y), (x, y))):  # dotted guides to the axes
            length = int(np.hypot(b[0] - a[0], b[1] - a[1]))
            for k in range(0, length, 8):
                p = (a[0] + (b[0] - a[0]) * k // max(length, 1), a[1] + (b[1] - a[1]) * k // max(length, 1))
                cv2.circle(img, p, 1, DEFAULT_COLOUR, -1)
        cv2.circle(img, (x, y), 7, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, (x, y), 5, DEFAULT_COLOUR, -1, cv2.LINE_AA)
    draw(img, plan.texts)
    axis = np.full((18, span, 3), 255, np.uint8)  # the y title, written sideways
    cv2.putText(axis, "true accept rate (staff let in)", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                cv2.LINE_AA)
    img[margin:margin + span, 2:20] = cv2.rotate(axis, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


HIST_MARGIN = 40


def histogram_layout(thresholds: dict, low: float, high: float, width: int = 640, height: int = 360,
                     default: str | None = None) -> ReportLayout:
    """The histogram picture's words: title, axis, ticks and one label per threshold (the
    ``default`` one named so), each label in the first text row where it clears the others."""
    from ..matching.picture_text import Text, clamp_x, overlaps

    margin = HIST_MARGIN
    out = ReportLayout()

    def at(value: float) -> int:
        return int(round(margin + (width - 2 * margin) * (value - low) / max(high - low, 1e-9)))

    out.texts.append(Text("share of pairs: genuine (same person) green, impostor red", margin, 24, 0.5,
                          role="title"))
    out.texts.append(Text("multi-scale score (accepted at or above a threshold)", margin, height - 6, 0.45,
                          role="axis"))
    for value in (low, (low + high) / 2, high):
        out.texts.append(Text(f"{value:.2f}", at(value) - 14, height - margin + 16, 0.4, role="tick"))
    taken = [t.box for t in out.texts]
    for name, t in sorted(thresholds.items(), key=lambda item: item[1]):
        x = at(t)
        out.marks[name] = (x, margin)
        words = f"{threshold_label(name)}{' (default)' if name == default else ''} {t:.3f}"
        colour = DEFAULT_COLOUR if name == default else (0, 0, 0)
        row = 0
        while True:  # the first text row where this label clears every one laid out before
            label = clamp_x(Text(words, x + 4, margin + 12 + 16 * row, 0.4, 1, colour, (255, 255, 255),
                                 role="default" if name == default else "threshold"), 2, width - 2)
            if not any(overlaps(label.box, other, 1) for other in taken):
                break
            row += 1
        out.texts.append(label)
        taken.append(label.box)
    return out


def draw_histograms(genuine: np.ndarray, impostor: np.ndarray, thresholds: dict, width: int = 640, height: int = 360,
                    default: str | None = None):
    """Genuine (green) and impostor (red) score histograms with the thresholds marked (the
    ``default`` one thick and named), as BGR."""
    import cv2

    from ..matching.picture_text import draw

    img = np.full((height, width, 3), 255, np.uint8)
    low, high = float(min(genuine.min(), impostor.min())), float(max(genuine.max(), impostor.max()))
    bins = np.linspace(low, high, 61)
    margin = HIST_MARGIN
    for scores, colour in ((impostor, (60, 60, 220)), (genuine, (60, 180, 60))):
        counts = np.histogram(scores, bins)[0] / max(1, len(scores))
        peak = counts.max() or 1
        for k, c in enumerate(counts):
            x0 = int(margin + (width - 2 * margin) * k / 60)
            x1 = int(margin + (width - 2 * margin) * (k + 1) / 60)
            y = int(height - margin - (height - 2 * margin) * c / peak)
            cv2.rectangle(img, (x0, y), (x1 - 1, height - margin), colour, 1)
    plan = histogram_layout(thresholds, low, high, width, height, default)
    for name, (x, top) in plan.marks.items():
        if name != default:
            cv2.line(img, (x, top), (x, height - margin), (0, 0, 0), 1)
    if default in plan.marks:  # drawn last: on top
        x, top = plan.marks[default]
        cv2.line(img, (x, top), (x, height - margin), DEFAULT_COLOUR, 3)
    draw(img, plan.texts)
    return img


def write_report(path: Path, picture: np.ndarray) -> None:
    """Write a PNG report into the bundle through a new file renamed over ``path``: a link planted
    at ``path`` is replaced, never written through to a file outside the bundle."""
    import cv2

    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise EdgeDMLError(f"could not draw {path.name}")
    write_atomically(path, encoded.tobytes())
