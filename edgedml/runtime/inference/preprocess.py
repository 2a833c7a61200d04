"""Preprocessing with OpenCV and numpy, from the bundle's :class:`PreprocessSpec`.

This is the deployment implementation; ``edgedml.training.transforms`` implements the same spec
in torch, and a test asserts both give the same tensor on real images. Resizing is separable:
each axis is resampled on its own, by area (box filter with fractional coverage, OpenCV's
INTER_AREA) when it shrinks and by bilinear interpolation with half-pixel centres (INTER_LINEAR)
when it grows, always on float32 so that no rounding to uint8 happens in between.
"""

from __future__ import annotations

import numpy as np

from ...preprocessing import PreprocessSpec


def crop_box(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """The region (top, left, crop_height, crop_width) of an image that the spec resizes.

    ``center_crop``: a centred square of side round(min(h, w) · crop_fraction);
    ``stretch``: the whole image.
    """
    if spec.resize == "stretch":
        return 0, 0, height, width
    side = max(1, int(round(min(height, width) * spec.crop_fraction)))
    return (height - side) // 2, (width - side) // 2, side, side


def resize_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resample one axis (0: rows, 1: columns) of a float32 (H, W, C) image to ``size``."""
    import cv2

    current = image.shape[axis]
    if current == size:
        return image
    interpolation = cv2.INTER_AREA if current > size else cv2.INTER_LINEAR
    height, width = image.shape[:2]
    target = (width, size) if axis == 0 else (size, height)  # cv2 takes (width, height)
    out = cv2.resize(image, target, interpolation=interpolation)
    return out if out.ndim == 3 else out[:, :, None]


def resize_rgb(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """RGB (H, W, 3) uint8 or float in [0, 1] → float32 (size, size, 3) in [0, 1], cropped and resized."""
    image = rgb.astype(np.float32)
    if rgb.dtype == np.uint8:
        image /= 255.0
    top, left, ch, cw = crop_box(image.shape[0], image.shape[1], spec)
    image = np.ascontiguousarray(image[top:top + ch, left:left + cw])
    return resize_axis(resize_axis(image, spec.size, axis=1), spec.size, axis=0)


def to_network_input(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """RGB (H, W, 3) uint8 → float32 (3, size, size), normalised by the spec's mean and std."""
    image = resize_rgb(rgb, spec)
    image = (image - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(image.transpose(2, 0, 1))
