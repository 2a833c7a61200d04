"""A labelled set on disk: one sub-folder of images per class, as ``edgedml calibrate``,
``edgedml faithfulness`` and INT8 calibration read it (numpy only, nothing decoded here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import EdgeDMLError
from ..inference.image import image_extensions


def labelled_images(root: str | Path, per_class: int | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Images of a class-per-folder set: paths, labels (N,), class names."""
    root = Path(root)
    suffixes = image_extensions()
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    paths, labels, names = [], [], []
    for folder in classes:
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes)[:per_class]
        if files:
            names.append(folder.name)
            paths += files
            labels += [len(names) - 1] * len(files)
    if len(names) < 2:
        raise EdgeDMLError(f"calibration needs a folder with at least 2 class sub-folders of images; {root} has "
                           f"{len(names)}")
    return paths, np.asarray(labels), names
