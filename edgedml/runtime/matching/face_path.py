"""The face path of a :class:`~.matcher.Matcher`: which detector cuts its inputs
(:func:`choose_detector`: the bundle's, another file cut as the bundle records, a detector object,
or none for whole images), never a crop other than the face chip its network works on
(:func:`check_chip`: dlib's for the dlib ResNet), every face of a frame cut and embedded
(:func:`embed_every_face`; as :class:`~.face_result.FaceResult` s: :func:`find_faces`), the
refusal of an image without a face (:func:`no_face_found`), and the key a FaceResult must carry
to be matched by a matcher (:func:`face_key_of`: its embedder graph and its cropping).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...bundle import Manifest
from ...errors import ConfigError
from ..faces.detection import (
    CHIP_OF_BACKBONE,
    DetectorSettings,
    NoFaceFound,
    YuNetDetector,
    bundle_detector,
    load_detector,
)
from ..faces.roi import View
from ..inference.graphs import graph_files
from ..inference.image import ImageInput
from .face_result import FaceResult
from .features import Features


def choose_detector(manifest: Manifest, detector: str | YuNetDetector | None,
                    settings: DetectorSettings | None) -> YuNetDetector | None:
    """The detector a matcher of the bundle ``manifest`` describes uses: for ``detector`` None the
    bundle's (none if it has none), "none" for none, "yunet:PATH" that file (cut with
    ``settings``, else as the bundle records, or as its network needs), or the detector object
    given. :class:`ConfigError` when it would cut another crop than the network's face chip."""
    if detector is None:
        chosen = bundle_detector(manifest, settings)
    elif isinstance(detector, str):  # another file, cut as the bundle records (or as its network needs)
        chosen = load_detector(detector, settings or recorded_settings(manifest))
    else:
        chosen = detector
    check_chip(manifest, chosen)
    return chosen


def recorded_settings(manifest: Manifest) -> DetectorSettings | None:
    """The bundle's detector settings, or for a bundle without a detector the chip its
    network needs (None: the defaults)."""
    if manifest.detector:
        return DetectorSettings.from_dict(manifest.detector.get("settings", {}))
    needed = CHIP_OF_BACKBONE.get(manifest.model.get("backbone"))
    return DetectorSettings(chip=needed) if needed else None


def check_chip(manifest: Manifest, detector: YuNetDetector | None) -> None:
    """A network that works only on its own face chip (dlib's) is never given another crop."""
    needed = CHIP_OF_BACKBONE.get(manifest.model.get("backbone"))
    if detector is not None and needed and detector.settings.chip != needed:
        raise ConfigError(f"this bundle's network ({manifest.model.get('backbone')}) works only on the "
                          f"{needed} face chip, not {detector.settings.chip} crops: leave the detector "
                          f"settings' chip out or set chip={needed!r}")


def face_key_of(manifest: Manifest, precision: str, cropping: str) -> tuple[str, str]:
    """(sha256 of the ``precision`` embedder graph of the bundle, ``cropping``): what a FaceResult
    must carry to be matched by a matcher of that bundle and precision that cuts as ``cropping``."""
    file = graph_files(manifest, precision)["embedder"]
    entry = manifest.files.get(file)
    return entry.sha256 if entry else file, cropping


def embed_every_face(matcher, image: ImageInput, limit: int | None = None) -> tuple[Features, list[View]]:
    """Every face of one frame, largest first (the first ``limit`` only), embedded by ``matcher``
    (:meth:`~.matcher.Matcher.embed_faces`): their :class:`~.features.Features` and views; without
    a detector, the whole frame. No face: zero rows."""
    _, views = matcher.views(image)
    views = views[:limit]
    if not views:
        return Features(np.zeros((0, matcher.manifest.matcher.inputs["query_embedding"][1]), np.float32),
                        np.zeros((0, matcher.manifest.regions, matcher.manifest.matcher.inputs["query_local"][2]),
                                 np.float32)), []
    return matcher._embed_views(views), views


def find_faces(matcher, image: ImageInput, limit: int | None = None) -> list[FaceResult]:
    """Every face ``matcher``'s detector finds in ``image``, largest first (the first ``limit``
    only), cut and embedded (:meth:`~.matcher.Matcher.faces`)."""
    matcher._check_open()
    if matcher.detector is None:
        raise ConfigError(f"this Matcher has no face detector (the bundle {matcher.bundle} was exported without "
                          f"--detector, or detector='none'), so it finds no faces: pass "
                          f"detector='yunet:PATH', or use embed()/compare() on whole images")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a whole number ≥ 1 or None, got {limit!r}")
    rgb, views = matcher.views(image)
    views = views[:limit]
    if not views:
        return []
    features = matcher._embed_views(views)
    embedder, cropping = matcher.face_key
    return [FaceResult(v.face, v, features[i], tuple(rgb.shape[:2]), embedder, cropping)
            for i, v in enumerate(views)]


def no_face_found(image: ImageInput, detector: YuNetDetector) -> NoFaceFound:
    """The error for an image (to embed, to enroll) where ``detector`` found no face, naming it."""
    return NoFaceFound(f"no face found in {_describe(image)} by {detector.describe()}: use a photo where "
                       f"the face is visible and at least {detector.settings.min_size} px wide")


def _describe(image: ImageInput) -> str:
    """How an error names an input: its path, or its kind."""
    if isinstance(image, (str, Path)):
        return f"image {image}"
    return "the image array" if isinstance(image, np.ndarray) else "the image bytes"
