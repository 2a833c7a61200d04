"""Text on pictures, laid out before it is drawn: every label is a box, and a label that would
cover another is moved or left out.

The explanation picture (:mod:`.explain`) and the calibration reports (:mod:`..assurance.calibration_picture`) lay
their words out as :class:`Text` items first (pure geometry, testable) and draw them last, so a
test can check that no two boxes overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, without importing OpenCV here
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1): pixels x0 ≤ x < x1, y0 ≤ y < y1


def text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int, int]:
    """(width, height above the baseline, depth below it) of ``text`` in pixels."""
    import cv2

    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    return w, h, base


@dataclass(frozen=True)
class Text:
    """One label: ``text`` with its baseline's left end at (x, y); ``background`` (BGR) fills
    its box behind it, ``pad`` pixels wider than the glyphs on every side."""

    text: str
    x: int
    y: int
    scale: float = 0.45
    thickness: int = 1
    colour: tuple[int, int, int] = (0, 0, 0)
    background: tuple[int, int, int] | None = None
    pad: int = 2
    role: str = ""  # what the label is ("decision", "flow 1", "tick", ...): for tests and readers

    @property
    def box(self) -> Box:
        w, h, base = text_size(self.text, self.scale, self.thickness)
        return self.x - self.pad, self.y - h - self.pad, self.x + w + self.pad, self.y + base + self.pad

    def moved(self, x: int, y: int) -> Text:
        return Text(self.text, x, y, self.scale, self.thickness, self.colour, self.background, self.pad, self.role)


def overlaps(a: Box, b: Box, gap: int = 0) -> bool:
    """Whether boxes ``a`` and ``b`` share a pixel (or come closer than ``gap`` pixels)."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def inside(box: Box, bounds: Box) -> bool:
    return bounds[0] <= box[0] and bounds[1] <= box[1] and box[2] <= bounds[2] and box[3] <= bounds[3]


def first_free(label: Text, origins: Iterable[tuple[int, int]], taken: Sequence[Box], bounds: Box,
               gap: int = 1) -> Text | None:
    """``label`` moved to the first of ``origins`` (baseline-left points) where its box lies
    within ``bounds`` and clear of every box in ``taken``; None where there is no such place
    (the label is left out rather than drawn over another)."""
    for x, y in origins:
        candidate = label.moved(int(x), int(y))
        box = candidate.box
        if inside(box, bounds) and not any(overlaps(box, other, gap) for other in taken):
            return candidate
    return None


def clamp_x(label: Text, left: int, right: int) -> Text:
    """``label`` shifted sideways to lie within [left, right) where it fits."""
    x0, _, x1, _ = label.box
    shift = max(left - x0, 0) + min(right - x1, 0) if x1 - x0 <= right - left else left - x0
    return label.moved(label.x + shift, label.y)


def draw(canvas, items: Iterable[Text]) -> None:
    """Draw ``items`` on a BGR uint8 ``canvas`` in order (background box, then the glyphs)."""
    import cv2

    for item in items:
        if item.background is not None:
            x0, y0, x1, y1 = item.box
            cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), item.background, -1)
        cv2.putText(canvas, item.text, (item.x, item.y), FONT, item.scale, item.colour, item.thickness, cv2.LINE_AA)
