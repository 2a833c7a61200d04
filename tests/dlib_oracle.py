"""dlib itself as the oracle: its own face pipeline on real photos, for the tests that hold
edgedml's reading of dlib's network (torch, and every ONNX precision of a bundle) to it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from conftest import YUNET, data_path


@lru_cache(maxsize=1)
def _pipeline(dat_file: str) -> tuple[np.ndarray, np.ndarray]:
    dlib = pytest.importorskip("dlib")
    import cv2

    from edgedml.models.dlib_files import LANDMARKS_5, dlib_model_file

    orl, yale = data_path("orl_faces"), data_path("yalefaces")
    photos = [p for d in sorted(orl.iterdir()) for p in sorted(d.glob("*.pgm"))[:2]]
    photos += [p for d in sorted(yale.iterdir()) for p in sorted(d.glob("*.png"))[:2]]
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(dlib_model_file(LANDMARKS_5)))
    recognizer = dlib.face_recognition_model_v1(dat_file)
    chips, descriptors = [], []
    for photo in photos:
        rgb = cv2.cvtColor(cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2RGB)
        faces = detector(rgb, 1)
        if len(faces) != 1:
            continue
        chip = dlib.get_face_chip(rgb, landmarks(rgb, faces[0]), size=150, padding=0.25)
        chips.append(chip)
        descriptors.append(np.asarray(recognizer.compute_face_descriptor(chip), dtype=np.float32))
    return np.stack(chips), np.stack(descriptors)


def dlib_pipeline_chips(dat_file: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(chips (N, 150, 150, 3) uint8, dlib's descriptors (N, 128) float32): dlib's own pipeline
    (HOG detector, 5-point landmarks, get_face_chip 150 / 0.25, face_recognition_model_v1) on
    ORL (two photos of each of 40 people) and yalefaces (two of each of 15), grey → RGB; photos
    where HOG finds no single face are left out. Computed once per test process."""
    return _pipeline(str(dat_file))


def faces_preset_or_skip():
    """The `faces` preset (dlib's network from the face-recognition-models wheel), or a skip
    naming what is missing (the wheel, or the YuNet model its bundles cut faces with)."""
    from edgedml.errors import WeightsNotFoundError
    from edgedml.models import load_checkpoint

    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET}")
    try:
        return load_checkpoint("faces")
    except WeightsNotFoundError as exc:
        pytest.skip(str(exc))


def yunet_chips(photos: list[Path], folder: Path, name=lambda photo: f"{photo.parent.name}_{photo.stem}"
                ) -> dict[Path, Path]:
    """Each photo's largest YuNet face as dlib's 150×150 chip (``roi.dlib_chip_view``, as a
    faces bundle cuts it), written to ``folder/<name(photo)>.png``: {photo: chip file}; photos
    without a face are left out."""
    import cv2

    from edgedml.runtime.faces.detection import YuNetDetector
    from edgedml.runtime.faces.roi import dlib_chip_view
    from edgedml.runtime.inference.image import load_image

    detector = YuNetDetector(YUNET)
    folder.mkdir(parents=True, exist_ok=True)
    chips = {}
    for photo in photos:
        rgb = load_image(str(photo))
        faces = detector.detect(rgb)
        if faces:
            chips[photo] = folder / f"{name(photo)}.png"
            cv2.imwrite(str(chips[photo]), cv2.cvtColor(dlib_chip_view(rgb, faces[0]).pixels, cv2.COLOR_RGB2BGR))
    return chips
