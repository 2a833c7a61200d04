"""A face as the matcher sees it: :class:`FaceResult`, what :meth:`~.matcher.Matcher.faces` returns.

Two concepts, two names: :class:`~..faces.detection.Face` is a *detection* (box, five landmarks, the
detector's score, in frame pixels); a :class:`FaceResult` wraps one detection with what the
matcher made of it: the aligned crop the embedder saw (:class:`~..faces.roi.View`, with the map back
to the frame) and its features (the global embedding and the local regions the structural
match needs). It is the face object of other face SDKs (insightface's ``Face``, DeepFace's
representations), and it can stand in for an image wherever the runtime takes one:
``Matcher.compare(face_a, face_b)``, ``Gallery.enroll(name, [face])``, ``Gallery.verify(face,
name)``, ``Gallery.identify(face)``, without a second detection or embedding.

A FaceResult remembers which embedder made it and how it was cut (``embedder``, ``cropping``),
and a matcher or gallery of another bundle, precision or detector refuses it in one line:
features of different models are not comparable.

Without a detector there are no faces: :meth:`~.matcher.Matcher.faces` refuses rather than
return the whole frame as a "face" (an access decision must never mistake a frame for a face).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..faces.detection import Face
from ..faces.roi import View
from .features import Features


@dataclass(frozen=True, eq=False)
class FaceResult:
    """One face of a frame, detected, cut and embedded (see the module doc).

    ``detection``: the detector's :class:`~..faces.detection.Face` (frame pixels); ``view``: the crop the
    embedder saw and its map to the frame; ``features``: one row of :class:`~.features.Features`
    (embedding (1, E), local (1, R, D), ...); ``frame_shape``: (H, W) of the frame it came from;
    ``embedder`` / ``cropping``: the sha256 of the embedder graph and the detector's fingerprint
    that made it."""

    detection: Face
    view: View = field(repr=False)
    features: Features = field(repr=False)
    frame_shape: tuple[int, int]
    embedder: str = field(repr=False)
    cropping: str = field(repr=False)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) of the detector's box, frame pixels."""
        return self.detection.box

    @property
    def landmarks(self) -> tuple[tuple[float, float], ...]:
        """Five (x, y) frame pixels in YuNet's order: right eye, left eye, nose tip, right and left
        mouth corners (the person's right eye is on the image's left)."""
        return self.detection.landmarks

    @property
    def score(self) -> float:
        """The detector's confidence in (0, 1] (not a match score)."""
        return self.detection.score

    @property
    def embedding(self) -> np.ndarray:
        """(E,) float32, L2-normalised: the global embedding of the crop."""
        return self.features.embedding[0]

    @property
    def crop(self) -> np.ndarray:
        """RGB uint8 (h, w, 3): the aligned pixels the embedder saw (dlib's 150×150 chip, or the
        square eye-levelled crop)."""
        return self.view.pixels

    def to_dict(self) -> dict:
        """JSON-ready: the detection and the crop's corners in the frame (no pixels, no features)."""
        return {**self.detection.to_dict(), "crop_outline": np.round(self.view.outline(), 1).tolist()}

    def mismatch(self, embedder: str, cropping: str) -> str | None:
        """Why this face cannot be matched by a model with (``embedder``, ``cropping``), or None."""
        if embedder != self.embedder:
            return (f"this face was embedded by another model or precision (embedder sha256 {self.embedder[:12]}…, "
                    f"not {embedder[:12]}…): get it from faces() of the Matcher that decides")
        if cropping != self.cropping:
            return (f"this face was cut as {self.cropping}, not {cropping}: get it from faces() of the Matcher that "
                    f"decides (same detector and settings)")
        return None
