"""Your own images as a dataset: a folder with one sub-folder of images per class, split into
class-disjoint train and test sides (half the classes each by default, or the classes you name).
:data:`IMAGE_EXTENSIONS` are the files counted as images (those the runtime's decoder reads).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from ..errors import ConfigError
from ..runtime.inference.image import image_extensions
from .splits import DatasetSplit, relabel

IMAGE_EXTENSIONS: tuple[str, ...] = image_extensions()


def _class_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (extension case-insensitive, hidden files skipped), sorted."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def class_folder_split(root: str | Path, train_classes: list[str] | None = None,
                       test_classes: list[str] | None = None) -> DatasetSplit:
    """Split a folder with one sub-folder per class into class-disjoint train and test sets.

    Default: the sorted class names, the first ceil(n/2) train and the rest test (17 classes →
    9/8). With ``train_classes`` and/or ``test_classes`` those classes are used (labels follow the
    order given); a side left ``None`` gets every other non-empty class. Images are the files
    directly inside each class folder with an extension in :data:`IMAGE_EXTENSIONS`
    (case-insensitive), sorted by name; hidden files (``.*``, e.g. macOS ``._x.jpg``) are skipped.
    Class folders without images are skipped with a warning when not named explicitly, and are an
    error when named. At least two non-empty classes are needed, and each side needs one.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} does not exist; pass the folder that holds "
                          f"one sub-folder of images per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images = {p.name: _class_images(p) for p in folders}
    available = [name for name in images if images[name]]
    named = (train_classes or []) + (test_classes or [])
    unknown = [n for n in named if n not in images]
    if unknown:
        raise ConfigError(f"unknown class folder(s) {unknown} in {root}; available: {sorted(images)}")
    both = sorted(set(train_classes or []) & set(test_classes or []))
    if both:
        raise ConfigError(f"class(es) {both} are in both train_classes and test_classes; "
                          f"the split must be class-disjoint, so remove them from one list")
    empty_named = [n for n in named if not images[n]]
    if empty_named:
        raise ConfigError(f"class folder(s) {empty_named} in {root} hold no images with extensions "
                          f"{', '.join(IMAGE_EXTENSIONS)}; add images or leave them out")
    empty = [name for name in images if not images[name]]
    if empty:
        warnings.warn(f"skipping class folder(s) without images in {root}: {empty}", stacklevel=2)
    if len(available) < 2:
        raise ConfigError(f"{root} has {len(available)} class folder(s) with images; a class-disjoint "
                          f"split needs at least 2: put each class's images in its own sub-folder")
    if train_classes is None and test_classes is None:
        cut = math.ceil(len(available) / 2)
        train_classes, test_classes = available[:cut], available[cut:]
    elif train_classes is None:
        train_classes = [n for n in available if n not in test_classes]
    elif test_classes is None:
        test_classes = [n for n in available if n not in train_classes]
    for side, names in (("train", train_classes), ("test", test_classes)):
        if not names:
            raise ConfigError(f"no {side} classes left in {root}; name at least one {side} class "
                              f"(available: {available})")
    train, train_names = relabel([(p, n) for n in train_classes for p in images[n]], list(train_classes), str)
    test, test_names = relabel([(p, n) for n in test_classes for p in images[n]], list(test_classes), str)
    return DatasetSplit(train, test, train_names, test_names, "folders")
