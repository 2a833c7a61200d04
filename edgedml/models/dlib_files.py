"""Where dlib's model files are: the PyPI wheel ``face-recognition-models`` (CC0, Davis King).

The wheel's package ``__init__`` imports the removed ``pkg_resources``, so it is located without
being imported. Nothing here imports dlib: the files are read by edgedml's own reader, and dlib
itself is only a test and benchmark oracle.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import WeightsNotFoundError

WHEEL = "face-recognition-models"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"


def dlib_model_file(name: str = DESCRIPTOR) -> Path:
    """The path of ``name`` (e.g. :data:`DESCRIPTOR`, :data:`LANDMARKS_5`) in the installed wheel."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    where = f"not in {folders[0]}/models" if folders else "the wheel is not installed"
    raise WeightsNotFoundError(f"dlib's model file {name} was not found ({where}). Fix: pip install {WHEEL}")
