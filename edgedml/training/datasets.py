"""Loading a dataset split from disk in any supported format: :func:`load_split` recognises the
format of one folder (CUB-200-2011, Cars196, Stanford Online Products or class folders) and
:func:`load_splits` joins several folders into one class-disjoint split (e.g. birds and flowers
for one model). Images are not decoded here: :mod:`.image_dataset` serves them to torch.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .benchmark_splits import cars196_split, cub200_split, sop_split
from .class_folders import class_folder_split
from .splits import DatasetSplit, Sample

FORMATS = ("auto", "folders", "cub200", "cars196", "sop")


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


