"""Explanations in pixels: region maps carried from the network's crop back onto the original frame.

The network sees the crop the preprocessing spec takes (a centred square for ``center_crop``) of
a view (:mod:`..faces.roi`: the whole frame, or a face crop). A g×g region map covers that crop, so it
is resized onto the crop's box in the view, then carried onto the frame by the view's affine map;
it is zero outside. :func:`region_centre` and :func:`seen_outline` place a region's centre and
the crop's corners on the frame the same way.
"""

from __future__ import annotations

import numpy as np

from ...preprocessing import PreprocessSpec
from ..faces.roi import View
from ..inference.preprocess import crop_box


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


