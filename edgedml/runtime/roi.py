"""The region of interest: what part of a frame the embedder sees, and how to map it back.

A :class:`View` is an image cut from a frame with the affine map from its pixels to the frame's,
so that every explanation (evidence, attention, region centres) can be drawn on the frame the
camera took. Without a detector the view is the whole frame (the identity map); with one it is a
square around a face, rotated so that the eyes are level (:func:`face_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detection import Face

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class View:
    """``pixels``: RGB uint8 (h, w, 3), the image the embedder is given; ``to_frame``: (2, 3)
    affine map of its pixel coordinates (x, y) to the frame's; ``face``: the detection it was
    cut around, or None for a whole frame."""

    pixels: np.ndarray
    to_frame: np.ndarray
    face: Face | None = None

    @property
    def is_whole_frame(self) -> bool:
        return self.face is None and np.array_equal(self.to_frame, IDENTITY)

    def points_to_frame(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) points in view pixels → (N, 2) in frame pixels."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return points @ self.to_frame[:, :2].T + self.to_frame[:, 2]

    def outline(self) -> np.ndarray:
        """(4, 2) corners of the view in frame pixels (clockwise from the top left)."""
        h, w = self.pixels.shape[:2]
        return self.points_to_frame(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))


def whole_view(rgb: np.ndarray) -> View:
    return View(rgb, IDENTITY.copy())


def face_transform(face: Face, margin: float, align: bool) -> tuple[np.ndarray, int]:
    """(2, 3) affine map frame → crop, and the crop's side in pixels, for a face.

    The crop is a square of side (1 + 2·margin)·max(w, h) centred on the box; with ``align`` it
    is rotated by the eye-line angle θ, so that the eyes land on one row: with Q = [[cos θ,
    sin θ], [−sin θ, cos θ]] and c the box centre, p_crop = Q (p − c) + side/2.
    """
    x, y, w, h = face.box
    side = max(1, int(round((1 + 2 * margin) * max(w, h))))
    theta = face.eye_angle() if align else 0.0
    cos, sin = np.cos(theta), np.sin(theta)
    q = np.array([[cos, sin], [-sin, cos]])
    centre = np.array(face.centre)
    return np.hstack([q, (side / 2 - q @ centre)[:, None]]), side


def face_view(rgb: np.ndarray, face: Face, margin: float, align: bool) -> View:
    """The square (eye-levelled with ``align``) crop around ``face``; pixels beyond the frame's
    edge repeat the edge."""
    import cv2

    forward, side = face_transform(face, margin, align)
    crop = cv2.warpAffine(rgb, forward, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return View(crop, cv2.invertAffineTransform(forward), face)
