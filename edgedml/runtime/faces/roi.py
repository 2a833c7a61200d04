"""The region of interest: what part of a frame the embedder sees, and how to map it back.

A :class:`View` is an image cut from a frame with the affine map from its pixels to the frame's,
so that every explanation (evidence, attention, region centres) can be drawn on the frame the
camera took. Without a detector the view is the whole frame (the identity map); with one it is a
square around a face, rotated so that the eyes are level (:func:`face_view`), or dlib's 150×150
face chip, the crop dlib's face descriptor was trained on (:func:`dlib_chip_view`). Which one is
the detector settings' ``chip``, decided in one place, :func:`cut_view`, for the matcher and for
``edgedml crop-faces`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detection import DetectorSettings, Face

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


def dlib_chip_transform(face: Face) -> np.ndarray:
    """(2, 3) affine map frame → dlib's 150×150 chip for a face: the similarity transform
    (rotation, uniform scale, shift) that sends YuNet's five landmarks closest, in least squares,
    onto their template in dlib's chip (:mod:`.dlib_chip`, derived from photos by
    ``scripts/derive_dlib_chip_points.py``)."""
    import cv2

    from ...errors import EdgeDMLError
    from .dlib_chip import YUNET_POINTS_IN_DLIB_CHIP

    points = np.asarray(face.landmarks, np.float64).reshape(5, 2)
    # A threshold beyond the chip keeps every point an inlier: the refined fit is least squares.
    forward, _ = cv2.estimateAffinePartial2D(points, YUNET_POINTS_IN_DLIB_CHIP, method=cv2.RANSAC,
                                             ransacReprojThreshold=1000.0, refineIters=50)
    if forward is None or not np.isfinite(forward).all() or abs(np.linalg.det(forward[:, :2])) < 1e-12:
        raise EdgeDMLError(f"the face's landmarks {face.to_dict()['landmarks']} do not define an alignment "
                           f"(they coincide); pass a face from the detector")
    return forward


def dlib_chip_view(rgb: np.ndarray, face: Face) -> View:
    """dlib's 150×150 face chip of ``face`` (RGB uint8 (150, 150, 3)): the frame warped by
    :func:`dlib_chip_transform`, bilinear, zeros beyond the frame's edge (as ``dlib.get_face_chip``).
    A face more than 1.5× larger than the chip is first shrunk with pixel-area averaging, as dlib
    shrinks through an image pyramid, so that the chip does not alias; ``to_frame`` is the exact
    inverse of the warp either way."""
    import cv2

    from .dlib_chip import DLIB_CHIP_SIZE

    forward = dlib_chip_transform(face)
    size = DLIB_CHIP_SIZE
    scale = float(np.sqrt(abs(np.linalg.det(forward[:, :2]))))  # chip pixels per frame pixel
    source, sample = rgb, forward
    if scale < 2 / 3:
        # Cut the chip's bounding box from the frame, shrink it by `scale`, then warp at about 1:1.
        corners = View(np.zeros((size, size, 3), np.uint8), cv2.invertAffineTransform(forward)).outline()
        height, width = rgb.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 2, 0, [width - 1, height - 1])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 3, [x0 + 1, y0 + 1], [width, height])
        out_w, out_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        source = cv2.resize(rgb[y0:y1, x0:x1], (out_w, out_h), interpolation=cv2.INTER_AREA)
        # shrunk pixel centre (u, v) ↔ frame ((u + ½)·sx − ½ + x0, (v + ½)·sy − ½ + y0)
        sx, sy = (x1 - x0) / out_w, (y1 - y0) / out_h
        shrunk_to_frame = np.array([[sx, 0.0, 0.5 * sx - 0.5 + x0], [0.0, sy, 0.5 * sy - 0.5 + y0]])
        linear = forward[:, :2]
        sample = np.hstack([linear @ shrunk_to_frame[:, :2], (linear @ shrunk_to_frame[:, 2] + forward[:, 2])[:, None]])
    chip = cv2.warpAffine(source, sample, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
    return View(chip, cv2.invertAffineTransform(forward), face)


def cut_view(rgb: np.ndarray, face: Face, settings: DetectorSettings) -> View:
    """What the embedder sees of ``face`` in the frame ``rgb``, as ``settings.chip`` says: the
    square crop of ``settings.margin`` (eye-levelled with ``settings.align``), or dlib's 150×150
    chip (margin and align do not apply). The one place that decides the crop: the matcher and
    ``edgedml crop-faces`` both call it."""
    if settings.chip == "dlib":
        return dlib_chip_view(rgb, face)
    if settings.chip == "square":
        return face_view(rgb, face, settings.margin, settings.align)
    raise ValueError(f"unknown face chip {settings.chip!r}")  # DetectorSettings refuses it first
