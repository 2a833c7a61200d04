"""Explanations in pixels: region maps back onto the original image, and the side-by-side picture.

The network sees the crop the preprocessing spec takes (a centred square for ``center_crop``);
a g×g region map covers that crop, so it is resized onto the crop's box in the original image
and is zero outside it.
"""

from __future__ import annotations

import numpy as np

from ..preprocessing import PreprocessSpec
from .preprocess import crop_box


def to_image(region_map: np.ndarray, height: int, width: int, spec: PreprocessSpec) -> np.ndarray:
    """A (g, g) or (h, w) map over the network's crop → float32 (height, width) over the image."""
    import cv2

    top, left, ch, cw = crop_box(height, width, spec)
    out = np.zeros((height, width), np.float32)
    out[top:top + ch, left:left + cw] = cv2.resize(region_map.astype(np.float32), (cw, ch),
                                                   interpolation=cv2.INTER_LINEAR)
    return out


def region_centre(index: int, grid: int, height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """Pixel (x, y) of region ``index`` (row-major on the g×g grid) in the original image."""
    top, left, ch, cw = crop_box(height, width, spec)
    row, col = divmod(index, grid)
    return int(left + (col + 0.5) * cw / grid), int(top + (row + 0.5) * ch / grid)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 image with a JET heatmap of ``heat`` (scaled to its own max) blended on → BGR."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    peak = float(heat.max())
    scaled = np.clip(heat / peak, 0, 1) if peak > 0 else np.zeros_like(heat)
    colour = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(bgr, 1 - alpha, colour, alpha, 0)


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.6) -> None:
    """White text on a black box: legible on any photo."""
    import cv2

    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    cv2.rectangle(canvas, (x - 3, y - h - 4), (x + w + 3, y + base + 1), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _dim_outside(panel: np.ndarray, crop, scale: float) -> np.ndarray:
    """Darken what lies outside the model's crop (it was not looked at)."""
    if crop is None:
        return panel
    top, left, ch, cw = (int(round(v * scale)) for v in crop)
    inside = panel[top:top + ch, left:left + cw].copy()
    panel = (panel * 0.35).astype(np.uint8)
    panel[top:top + ch, left:left + cw] = inside
    return panel


def side_by_side(result, height: int = 360) -> np.ndarray:
    """The picture a guard looks at: image A and image B with their evidence heatmaps (red: the
    regions that made the match, blue: little evidence; a colour bar says so), numbered lines for
    the strongest region-to-region matches (colour and thickness follow their strength, outlined
    so that a horizontal line stays visible), the area outside what the model sees dimmed, the
    score and the decision. → BGR uint8."""
    import cv2

    panels, scales = [], []
    for rgb, heat, crop in ((result.image_a, result.evidence_a, result.crop_a),
                            (result.image_b, result.evidence_b, result.crop_b)):
        scale = height / rgb.shape[0]
        panel = cv2.resize(overlay(rgb, np.clip(heat, 0, None)), (max(1, int(round(rgb.shape[1] * scale))), height),
                           interpolation=cv2.INTER_AREA)
        panels.append(_dim_outside(panel, crop, scale))
        scales.append(scale)
    gap = 12
    width = max(panels[0].shape[1] + gap + panels[1].shape[1], 560)
    canvas = np.full((height + 112, width, 3), 255, np.uint8)
    canvas[:height, :panels[0].shape[1]] = panels[0]
    offset = panels[0].shape[1] + gap
    canvas[:height, offset:offset + panels[1].shape[1]] = panels[1]
    _label(canvas, "A", (8, 24), 0.8)
    _label(canvas, "B", (offset + 8, 24), 0.8)
    strongest = max((m.flow for m in result.matches), default=1.0) or 1.0
    for rank, m in reversed(list(enumerate(result.matches, 1))):  # the strongest drawn last, on top
        pa = (int(m.point_a[0] * scales[0]), int(m.point_a[1] * scales[0]))
        pb = (offset + int(m.point_b[0] * scales[1]), int(m.point_b[1] * scales[1]))
        strength = float(np.clip(m.flow / strongest, 0, 1))
        colour = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[40 + 215 * strength]]), cv2.COLORMAP_SPRING)[0, 0])
        thickness = 1 + int(round(4 * strength))
        cv2.line(canvas, pa, pb, (0, 0, 0), thickness + 2, cv2.LINE_AA)  # outline
        cv2.line(canvas, pa, pb, colour, thickness, cv2.LINE_AA)
        for point in (pa, pb):
            cv2.circle(canvas, point, 5, (0, 0, 0), -1)
            cv2.circle(canvas, point, 3, colour, -1)
        cv2.putText(canvas, str(rank), (pa[0] + 6, pa[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2,
                    cv2.LINE_AA)
        cv2.putText(canvas, str(rank), (pa[0] + 6, pa[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    if result.is_match is None:
        decision, colour = "uncalibrated (no threshold)", (80, 80, 80)
    else:
        decision = "MATCH" if result.is_match else "NO MATCH"
        colour = (0, 150, 0) if result.is_match else (0, 0, 200)
        decision += f" (threshold {result.threshold:.3f})"
    y = height + 24
    cv2.putText(canvas, decision, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2, cv2.LINE_AA)
    cv2.putText(canvas, f"score {result.score:.3f} = structural {result.structural:.3f} + global "
                        f"{result.global_similarity:.3f}", (8, y + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    bar = cv2.applyColorMap(np.tile(np.linspace(0, 255, 160).astype(np.uint8), (10, 1)), cv2.COLORMAP_JET)
    canvas[y + 40:y + 50, 8:168] = bar
    cv2.putText(canvas, "little evidence", (8, y + 66), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "made the match", (118, y + 66), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "lines: strongest region matches, 1 = strongest; dimmed: outside what the model sees",
                (180, y + 49), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
