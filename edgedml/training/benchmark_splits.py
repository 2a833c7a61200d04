"""The three standard deep metric learning benchmarks read from their official files and split
class-disjointly as in the literature: CUB-200-2011 (classes 1–100 train, 101–200 test), Cars196
(1–98 / 99–196) and Stanford Online Products (``Ebay_train.txt`` / ``Ebay_test.txt``). Whole
images are used; the official image-level train/test flags and bounding boxes are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, require
from .splits import DatasetSplit, Sample, relabel


def _split_by_id(records: list[tuple[Path, int]], first_test: int, names: Callable[[int], str],
                 source: str, root: Path) -> DatasetSplit:
    """Class ids below ``first_test`` train, the others test; labels re-indexed per split."""
    train_rec = [r for r in records if r[1] < first_test]
    test_rec = [r for r in records if r[1] >= first_test]
    for side, rec in (("train", train_rec), ("test", test_rec)):
        if not rec:
            raise ConfigError(f"{source} at {root} has no {side} images (the {side} side is classes "
                              f"{'below' if side == 'train' else 'from'} {first_test}); "
                              f"pass the complete dataset folder")
    train, train_classes = relabel(train_rec, sorted({c for _, c in train_rec}), names)
    test, test_classes = relabel(test_rec, sorted({c for _, c in test_rec}), names)
    return DatasetSplit(train, test, train_classes, test_classes, source)


def _require_files(root: Path, names: tuple[str, ...], dataset: str, hint: str) -> None:
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} does not exist; pass the folder that holds {hint}")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ConfigError(f"{root} is not a {dataset} folder: {', '.join(missing)} missing; "
                          f"pass the folder that holds {hint}")


def _image_dir_exists(samples: list[Sample], root: Path, dataset: str) -> None:
    """Catch a wrong root early: the first image's folder must exist."""
    folder = samples[0].path.parent
    if not folder.is_dir():
        raise ConfigError(f"{dataset} images not found: {folder} does not exist; image paths are "
                          f"relative to {root}, so extract the images there")


def _read_table(path: Path, columns: int, header: str | None = None) -> list[list[str]]:
    """Whitespace-separated rows of ``columns`` fields (the last may hold spaces); blank lines skipped."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and header and line.split()[0] == header):
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns:
            raise ConfigError(f"{path} line {number}: expected {columns} fields, got {line!r}; "
                              f"the file is truncated or not in the official format")
        rows.append(fields)
    return rows


def cub200_split(root: str | Path) -> DatasetSplit:
    """CUB-200-2011 (``root`` = the ``CUB_200_2011`` folder): classes 1–100 train, 101–200 test.

    Reads ``images.txt`` (``<id> <path under images/>``), ``image_class_labels.txt``
    (``<id> <class 1..200>``) and, if present, ``classes.txt`` (``<class> <name>``; otherwise the
    name is the image's folder). The official train/test image split is ignored (DML protocol).
    """
    root = Path(root)
    _require_files(root, ("images.txt", "image_class_labels.txt"), "CUB-200-2011",
                   "images.txt, image_class_labels.txt and images/ (the CUB_200_2011 folder)")
    paths = {i: rel for i, rel in _read_table(root / "images.txt", 2)}
    labels = {i: int(c) for i, c in _read_table(root / "image_class_labels.txt", 2)}
    missing = sorted(set(paths) - set(labels), key=lambda s: int(s) if s.isdigit() else 0)
    if missing:
        raise ConfigError(f"image id(s) {missing[:5]} of images.txt have no class in "
                          f"image_class_labels.txt; re-extract the dataset")
    names = {int(c): n for c, n in _read_table(root / "classes.txt", 2)} if (root / "classes.txt").is_file() else {}
    for i, rel in paths.items():
        names.setdefault(labels[i], Path(rel).parent.name or str(labels[i]))
    split = _split_by_id([(root / "images" / rel, labels[i]) for i, rel in paths.items()],
                         101, names.__getitem__, "cub200", root)
    _image_dir_exists(split.train, root, "CUB-200-2011")
    return split


def cars196_split(root: str | Path) -> DatasetSplit:
    """Cars196 (``root`` holds ``cars_annos.mat`` and ``car_ims/``): classes 1–98 train, 99–196 test.

    The annotations' ``test`` flag and bounding boxes are ignored (DML protocol: whole images).
    """
    root = Path(root)
    _require_files(root, ("cars_annos.mat",), "Cars196", "cars_annos.mat and car_ims/")
    sio = require("scipy.io", "reading Cars196 annotations (cars_annos.mat)", extra="train", package="scipy")
    mat = sio.loadmat(str(root / "cars_annos.mat"), squeeze_me=True)
    if "annotations" not in mat:
        raise ConfigError(f"{root / 'cars_annos.mat'} has no 'annotations'; download the official "
                          f"cars_annos.mat (all 16,185 images) rather than the devkit files")
    ann = np.atleast_1d(mat["annotations"])
    paths = [str(p) for p in np.atleast_1d(ann["relative_im_path"])]
    classes = [int(c) for c in np.atleast_1d(ann["class"])]
    class_names = [str(n) for n in np.atleast_1d(mat.get("class_names", []))]

    def name(c: int) -> str:
        return class_names[c - 1] if c <= len(class_names) else str(c)

    split = _split_by_id([(root / p, c) for p, c in zip(paths, classes)], 99, name, "cars196", root)
    _image_dir_exists(split.train, root, "Cars196")
    return split


def sop_split(root: str | Path) -> DatasetSplit:
    """Stanford Online Products (``root`` = ``Stanford_Online_Products``): ``Ebay_train.txt`` is
    the train side, ``Ebay_test.txt`` the test side; labels are the sorted ``class_id``\\ s
    re-indexed from 0 per split and the class name is the ``class_id`` as text."""
    root = Path(root)
    _require_files(root, ("Ebay_train.txt", "Ebay_test.txt"), "Stanford Online Products",
                   "Ebay_train.txt and Ebay_test.txt (the Stanford_Online_Products folder)")
    sides = []
    for file in ("Ebay_train.txt", "Ebay_test.txt"):
        records = [(root / rel, int(cls)) for _, cls, _, rel in _read_table(root / file, 4, header="image_id")]
        if not records:
            raise ConfigError(f"{root / file} lists no images; re-extract the dataset")
        sides.append(relabel(records, sorted({c for _, c in records}), str))
    (train, train_classes), (test, test_classes) = sides
    _image_dir_exists(train, root, "Stanford Online Products")
    return DatasetSplit(train, test, train_classes, test_classes, "sop")
