"""Image datasets for training and evaluation: class folders and the three standard DML benchmarks
(CUB-200-2011, Cars196, Stanford Online Products), split class-disjointly as in the literature.

A split holds :class:`Sample` lists only; images are decoded on demand by :func:`read_rgb` (the
runtime's decoder, so training sees exactly the pixels a device sees).
:func:`check_readable` decodes everything once before training so unreadable files are reported
by name and skipped; :class:`ImageDataset` still survives a file that breaks mid-epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, InvalidImageError, require
from ..runtime.inference.image import image_extensions, read_rgb

IMAGE_EXTENSIONS: tuple[str, ...] = image_extensions()
FORMATS = ("auto", "folders", "cub200", "cars196", "sop")


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


def _relabel(records: list[tuple[Path, Hashable]], keys: list, name_of: Callable) -> tuple[list[Sample], list[str]]:
    """Samples labelled by the position of their class key in ``keys``, and the class names."""
    index = {key: i for i, key in enumerate(keys)}
    samples = [Sample(path, index[key], name_of(key)) for path, key in records]
    return samples, [name_of(key) for key in keys]


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
    train, train_classes = _relabel(train_rec, sorted({c for _, c in train_rec}), names)
    test, test_classes = _relabel(test_rec, sorted({c for _, c in test_rec}), names)
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
    train, train_names = _relabel([(p, n) for n in train_classes for p in images[n]], list(train_classes), str)
    test, test_names = _relabel([(p, n) for n in test_classes for p in images[n]], list(test_classes), str)
    return DatasetSplit(train, test, train_names, test_names, "folders")


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
        sides.append(_relabel(records, sorted({c for _, c in records}), str))
    (train, train_classes), (test, test_classes) = sides
    _image_dir_exists(train, root, "Stanford Online Products")
    return DatasetSplit(train, test, train_classes, test_classes, "sop")


def load_split(root: str | Path, fmt: str = "auto", **kwargs) -> DatasetSplit:
    """Load a dataset split; ``fmt`` is one of :data:`FORMATS`.

    ``"auto"`` picks cub200 when ``images.txt`` and ``image_class_labels.txt`` exist, cars196 for
    ``cars_annos.mat``, sop for ``Ebay_train.txt``, and class folders otherwise. ``kwargs``
    (``train_classes``, ``test_classes``) apply to class folders only.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}; choose one of {list(FORMATS)}")
    root = Path(root)
    if fmt == "auto":
        if (root / "images.txt").is_file() and (root / "image_class_labels.txt").is_file():
            fmt = "cub200"
        elif (root / "cars_annos.mat").is_file():
            fmt = "cars196"
        elif (root / "Ebay_train.txt").is_file():
            fmt = "sop"
        else:
            fmt = "folders"
    if fmt == "folders":
        return class_folder_split(root, **kwargs)
    if kwargs:
        raise ConfigError(f"{sorted(kwargs)} apply only to class folders; {fmt} has a fixed split")
    return {"cub200": cub200_split, "cars196": cars196_split, "sop": sop_split}[fmt](root)


def load_splits(roots: list[str | Path], fmt: str = "auto", train_classes: list[str] | None = None,
                test_classes: list[str] | None = None) -> DatasetSplit:
    """Several datasets as one class-disjoint split (e.g. birds and flowers for one model).

    Each root is loaded by :func:`load_split`; ``train_classes``/``test_classes`` name class
    folders of any of the roots, and each root takes the names it holds (a root whose folders are
    named nowhere keeps its default split). Labels are renumbered over all roots and class names
    become ``root/class``. One root is exactly :func:`load_split`.
    """
    if len(roots) == 1:
        lists = {k: v for k, v in (("train_classes", train_classes), ("test_classes", test_classes)) if v}
        return load_split(roots[0], fmt, **lists)
    named = set(train_classes or []) | set(test_classes or [])
    parts, claimed = [], set()
    for root in roots:
        root = Path(root)
        held = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
        lists = {k: [c for c in v if c in held] for k, v in (("train_classes", train_classes),
                                                               ("test_classes", test_classes)) if v}
        lists = {k: v for k, v in lists.items() if v}
        claimed |= named & held
        parts.append((root.name, load_split(root, fmt, **lists)))
    if named - claimed:
        raise ConfigError(f"class folder(s) {sorted(named - claimed)} are in none of {[str(r) for r in roots]}")
    split = {"train": [], "test": [], "train_classes": [], "test_classes": []}
    for name, part in parts:
        for side in ("train", "test"):
            offset = len(split[f"{side}_classes"])
            split[side] += [Sample(x.path, x.label + offset, f"{name}/{x.class_name}") for x in getattr(part, side)]
            split[f"{side}_classes"] += [f"{name}/{c}" for c in getattr(part, f"{side}_classes")]
    return DatasetSplit(**split, source="+".join(part.source for _, part in parts))


def _readable(sample: Sample) -> bool:
    try:
        read_rgb(sample.path)
        return True
    except InvalidImageError:
        return False


def check_readable(samples: list[Sample], progress: bool = False,
                   workers: int = 4) -> tuple[list[Sample], list[Path]]:
    """Decode every image once; return (the readable samples, in order; the unreadable paths).

    Callers print the unreadable names and their count, then train on the readable samples.
    ``workers`` threads decode in parallel (OpenCV releases the GIL); ``progress`` shows a tqdm
    bar when stderr is a terminal.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(_readable, samples)
        from ..progress import progress_bar

        ok = list(progress_bar(results, total=len(samples), desc="checking images", unit="img", enabled=progress))
    return ([s for s, good in zip(samples, ok) if good],
            [s.path for s, good in zip(samples, ok) if not good])


class ImageDataset(Dataset):
    """``dataset[i]`` → ``(transform(read_rgb(path)), label)``; without a transform, the decoded
    RGB array itself.

    An image that fails to decode (changed since :func:`check_readable`) does not stop training:
    its path is appended to ``self.failed`` (with a warning) and the next readable sample of the
    same label is returned instead, so class-balanced batches stay valid. Only when every sample
    of that label fails is :class:`InvalidImageError` raised. With DataLoader workers, ``failed``
    fills in each worker's copy; the warnings reach the console either way.
    """

    def __init__(self, samples: list[Sample], transform: Callable[[np.ndarray], torch.Tensor] | None = None):
        self.samples = list(samples)
        self.transform = transform
        self.failed: list[Path] = []
        self._bad: set[int] = set()
        self._by_label: dict[int, list[int]] = {}
        self._rank: list[int] = []  # position of each sample among those of its label
        for i, sample in enumerate(self.samples):
            same = self._by_label.setdefault(sample.label, [])
            self._rank.append(len(same))
            same.append(i)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        """The label of every sample, in order (for samplers such as PML's MPerClassSampler)."""
        return [s.label for s in self.samples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor | np.ndarray, int]:
        index = range(len(self.samples))[index]  # accepts negative indices, rejects out-of-range
        label = self.samples[index].label
        same = self._by_label[label]
        start = self._rank[index]
        for j in same[start:] + same[:start]:  # this sample first, then the next ones of its label
            if j in self._bad:
                continue
            try:
                image = read_rgb(self.samples[j].path)
            except InvalidImageError as exc:
                self._bad.add(j)
                self.failed.append(self.samples[j].path)
                warnings.warn(f"{exc}; using another image of label {label} instead", stacklevel=2)
                continue
            return (image if self.transform is None else self.transform(image)), label
        raise InvalidImageError(f"every image of label {label} ({self.samples[index].class_name!r}, "
                                f"{len(same)} files) failed to decode; run check_readable first")
