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


def side_by_side(result, height: int = 360) -> np.ndarray:
    """The picture a person looks at: both images with their evidence heatmaps, lines for the
    strongest region-to-region matches, the score and the decision. → BGR uint8."""
    import cv2

    panels, scales = [], []
    for rgb, heat in ((result.image_a, result.evidence_a), (result.image_b, result.evidence_b)):
        scale = height / rgb.shape[0]
        panel = overlay(rgb, np.clip(heat, 0, None))
        panels.append(cv2.resize(panel, (max(1, int(round(rgb.shape[1] * scale))), height),
                                 interpolation=cv2.INTER_AREA))
        scales.append(scale)
    gap = 12
    canvas = np.full((height + 70, panels[0].shape[1] + gap + panels[1].shape[1], 3), 255, np.uint8)
    canvas[:height, :panels[0].shape[1]] = panels[0]
    offset = panels[0].shape[1] + gap
    canvas[:height, offset:] = panels[1]
    strongest = max((m.flow for m in result.matches), default=1.0) or 1.0
    for m in result.matches:
        pa = (int(m.point_a[0] * scales[0]), int(m.point_a[1] * scales[0]))
        pb = (offset + int(m.point_b[0] * scales[1]), int(m.point_b[1] * scales[1]))
        thickness = 1 + int(3 * m.flow / strongest)
        cv2.line(canvas, pa, pb, (0, 255, 0), thickness, cv2.LINE_AA)
        cv2.circle(canvas, pa, 4, (0, 200, 0), -1)
        cv2.circle(canvas, pb, 4, (0, 200, 0), -1)
    if result.is_match is None:
        decision, colour = "uncalibrated (no threshold)", (80, 80, 80)
    else:
        decision = "MATCH" if result.is_match else "NO MATCH"
        colour = (0, 150, 0) if result.is_match else (0, 0, 200)
        decision += f" (threshold {result.threshold:.3f})"
    cv2.putText(canvas, f"score {result.score:.3f} = structural {result.structural:.3f} + global "
                        f"{result.global_similarity:.3f}", (8, height + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, decision, (8, height + 56), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2, cv2.LINE_AA)
    return canvas
