"""A class-disjoint dataset split, as the deep metric learning literature evaluates: a
:class:`Sample` is an image file with its label and class name, a :class:`DatasetSplit` holds
train and test samples with no class in common, and :func:`relabel` numbers the labels from 0
within each side. Images are not decoded here; :mod:`.image_dataset` does that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One image: its file, its 0-based label (contiguous within its split) and class name."""

    path: Path
    label: int
    class_name: str


@dataclass(frozen=True)
class DatasetSplit:
    """Class-disjoint train and test samples; ``*_classes[label]`` is the class name."""

    train: list[Sample]
    test: list[Sample]
    train_classes: list[str]
    test_classes: list[str]
    source: str  # "folders", "cub200", "cars196" or "sop"


def relabel(records: list[tuple[Path, Hashable]], keys: list, name_of: Callable) -> tuple[list[Sample], list[str]]:
    """Samples labelled by the position of their class key in ``keys``, and the class names."""
    index = {key: i for i, key in enumerate(keys)}
    samples = [Sample(path, index[key], name_of(key)) for path, key in records]
    return samples, [name_of(key) for key in keys]
