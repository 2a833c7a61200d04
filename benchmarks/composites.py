"""Scenes with a face in them: a face photo pasted into a larger photo, as a door camera sees it.

The face-detection benchmark (``benchmarks/face_composites.py``), the tests of the detection
stage and the samples' test videos are made with these (numpy + OpenCV only). The paste box is
known, so a detector's hit or miss and the ideal crop can be measured.
"""

from __future__ import annotations

import numpy as np

FRAME = (640, 480)  # (width, height)
FACE_WIDTHS = (100, 240)  # pixels, inclusive


def fill_frame(scene: np.ndarray, size: tuple[int, int] = FRAME) -> np.ndarray:
    """An RGB photo scaled to cover ``size`` (width, height) and centre-cropped to it."""
    import cv2

    width, height = size
    scale = max(width / scene.shape[1], height / scene.shape[0])
    resized = cv2.resize(scene, (max(width, round(scene.shape[1] * scale)), max(height, round(scene.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])


def paste(face: np.ndarray, scene: np.ndarray, width: int, x: int,
          y: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``face`` (RGB) resized to ``width`` (aspect kept) and pasted at (x, y) into a copy of
    ``scene`` (RGB) → (frame, box (x, y, width, height))."""
    import cv2

    height = max(1, round(face.shape[0] * width / face.shape[1]))
    if x < 0 or y < 0 or x + width > scene.shape[1] or y + height > scene.shape[0]:
        raise ValueError(f"a {width}×{height} face at ({x}, {y}) does not fit a "
                         f"{scene.shape[1]}×{scene.shape[0]} scene")
    interpolation = cv2.INTER_AREA if width < face.shape[1] else cv2.INTER_LINEAR
    small = cv2.resize(face, (width, height), interpolation=interpolation)
    frame = scene.copy()
    frame[y:y + height, x:x + width] = small
    return frame, (x, y, width, height)


def tilt(face: np.ndarray, degrees: float) -> np.ndarray:
    """``face`` turned by ``degrees`` (counter-clockwise) about its centre, same size, the corners
    filled by repeating the edge: a head leaning to one side."""
    import cv2

    h, w = face.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(face, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def composite(face: np.ndarray, scene: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = FRAME,
              widths: tuple[int, int] = FACE_WIDTHS,
              max_tilt: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``face`` at a random width in ``widths``, a random position and (with ``max_tilt``) a
    random tilt in ±max_tilt degrees, in ``scene`` filled to ``size`` → (frame RGB (H, W, 3),
    paste box (x, y, width, height))."""
    if max_tilt:
        face = tilt(face, float(rng.uniform(-max_tilt, max_tilt)))
    frame = fill_frame(scene, size)
    width = int(rng.integers(widths[0], widths[1] + 1))
    height = max(1, round(face.shape[0] * width / face.shape[1]))
    if height > size[1]:  # a tall face photo: narrower, so that it fits
        width = int(width * size[1] / height)
        height = size[1]
    x = int(rng.integers(0, size[0] - width + 1))
    y = int(rng.integers(0, size[1] - height + 1))
    return paste(face, frame, width, x, y)


def contains(box: tuple[float, float, float, float], point: tuple[float, float]) -> bool:
    """Whether ``point`` (x, y) lies in ``box`` (x, y, width, height)."""
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h
