"""Explanations in pixels: region maps back onto the original frame, and the side-by-side picture.

The network sees the crop the preprocessing spec takes (a centred square for ``center_crop``) of
a view (:mod:`.roi`: the whole frame, or a face crop). A g×g region map covers that crop, so it
is resized onto the crop's box in the view, then carried onto the frame by the view's affine map;
it is zero outside.
"""

from __future__ import annotations

import numpy as np

from ..preprocessing import PreprocessSpec
from .preprocess import crop_box
from .roi import View


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


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.6) -> None:
    """White text on a black box: legible on any photo."""
    import cv2

    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    cv2.rectangle(canvas, (x - 3, y - h - 4), (x + w + 3, y + base + 1), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


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


def _draw_face(panel: np.ndarray, face, outline: np.ndarray | None, scale: float) -> None:
    """The detector's box (green), its five landmarks and the crop the model saw (white)."""
    import cv2

    if outline is not None and face is not None:
        corners = np.round(np.asarray(outline) * scale).astype(np.int32)
        cv2.polylines(panel, [corners], True, (255, 255, 255), 1, cv2.LINE_AA)
    if face is None:
        return
    x, y, w, h = (v * scale for v in face.box)
    cv2.rectangle(panel, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (0, 220, 0), 2)
    for px, py in face.landmarks:
        cv2.circle(panel, (int(round(px * scale)), int(round(py * scale))), 3, (0, 220, 0), -1, cv2.LINE_AA)


def side_by_side(result, height: int = 360) -> np.ndarray:
    """The picture a guard looks at: frame A and frame B with their evidence heatmaps (red: the
    regions that made the match, blue: little evidence; a colour bar says so), numbered lines for
    the strongest region-to-region matches (colour and thickness follow their strength, outlined
    so that a horizontal line stays visible), the area outside what the model sees dimmed, the
    detected face's box and landmarks (green) and the crop the model saw (white), the score and
    the decision. → BGR uint8."""
    import cv2

    panels, scales = [], []
    for rgb, heat, outline, face, share in (
            (result.image_a, result.evidence_a, result.outline_a, result.face_a, result.unmatched_a),
            (result.image_b, result.evidence_b, result.outline_b, result.face_b, result.unmatched_b)):
        scale = height / rgb.shape[0]
        panel = cv2.resize(overlay(rgb, np.clip(heat, 0, None)), (max(1, int(round(rgb.shape[1] * scale))), height),
                           interpolation=cv2.INTER_AREA)
        panel = _dim_outside(panel, outline, scale)
        _hatch_unmatched(panel, share, scale)
        _draw_face(panel, face, outline, scale)
        panels.append(panel)
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
    if result.reason:
        decision, colour = f"NO MATCH: {result.reason}", (0, 0, 200)
    elif result.is_match is None:
        decision, colour = "uncalibrated (no threshold)", (80, 80, 80)
    else:
        decision = "MATCH" if result.is_match else "NO MATCH"
        colour = (0, 150, 0) if result.is_match else (0, 0, 200)
        decision += f" (threshold {result.threshold:.3f})"
    y = height + 24
    cv2.putText(canvas, decision, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2, cv2.LINE_AA)
    if result.score is not None:
        cv2.putText(canvas, f"score {result.score:.3f} = structural {result.structural:.3f} + global "
                            f"{result.global_similarity:.3f}", (8, y + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    bar = cv2.applyColorMap(np.tile(np.linspace(0, 255, 160).astype(np.uint8), (10, 1)), cv2.COLORMAP_JET)
    canvas[y + 40:y + 50, 8:168] = bar
    cv2.putText(canvas, "little evidence", (8, y + 66), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "made the match", (118, y + 66), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "lines: strongest region matches, 1 = strongest; dimmed: outside what the model sees",
                (180, y + 49), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if result.unmatched_a is not None:
        cv2.putText(canvas, "hatched: regions left mostly unmatched (partial transport)", (180, y + 66),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
