"""Dataset splits on tiny fixtures in the official CUB / Cars196 / SOP formats, image decoding,
and unreadable-image handling; real flowers17 / yalefaces checks where that data is present."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgedml.errors import ConfigError, InvalidImageError
from edgedml.runtime.inference.image import read_rgb
from edgedml.training.benchmark_splits import cars196_split, cub200_split, sop_split
from edgedml.training.class_folders import IMAGE_EXTENSIONS, class_folder_split
from edgedml.training.datasets import load_split, load_splits
from edgedml.training.image_dataset import ImageDataset, check_readable
from edgedml.training.splits import DatasetSplit, Sample


def write_image(path: Path, seed: int = 0, image: np.ndarray | None = None) -> np.ndarray:
    """Write an image (default: random 8×8 colour, BGR) through imencode so any path works."""
    if image is None:
        image = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok, path
    buf.tofile(str(path))
    return image


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()


# ---------------------------------------------------------------- read_rgb


def test_read_rgb_colour_png_is_rgb_order(tmp_path):
    bgr = write_image(tmp_path / "c.png", seed=1)
    rgb = read_rgb(tmp_path / "c.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])


def test_read_rgb_converts_grey_16bit_and_alpha(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    write_image(tmp_path / "grey.png", image=grey)
    out = read_rgb(tmp_path / "grey.png")
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)

    # ÷257 → 0, 1, 128, 200, 255; four rows because images under 4×4 are refused
    deep = np.tile(np.array([[0, 257, 32896, 51400, 65535]], dtype=np.uint16), (4, 1))
    write_image(tmp_path / "deep.png", image=deep)
    out = read_rgb(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 200, 255])

    bgra = np.random.default_rng(2).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    bgra[..., 3] = 0  # fully transparent: dropping alpha must keep the colours as stored
    write_image(tmp_path / "alpha.png", image=bgra)
    out = read_rgb(tmp_path / "alpha.png")
    np.testing.assert_array_equal(out, bgra[..., 2::-1])


def test_read_rgb_non_ascii_path(tmp_path):
    bgr = write_image(tmp_path / "fleurs_été" / "图像.jpg", seed=3)
    out = read_rgb(tmp_path / "fleurs_été" / "图像.jpg")
    assert out.shape == bgr.shape


def test_read_rgb_errors_name_the_file(tmp_path):
    (tmp_path / "garbage.jpg").write_bytes(b"not a jpeg at all" * 20)
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("garbage.jpg", "empty.png", "missing.png"):
        with pytest.raises(InvalidImageError, match=name):
            read_rgb(tmp_path / name)
    ok, buf = cv2.imencode(".tiff", np.random.rand(4, 4, 3).astype(np.float32))
    assert ok
    buf.tofile(str(tmp_path / "float.tiff"))
    with pytest.raises(InvalidImageError, match="convert it to 8-bit"):
        read_rgb(tmp_path / "float.tiff")


def test_every_listed_extension_really_decodes(tmp_path):
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"} <= set(IMAGE_EXTENSIONS)
    colour = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for ext in IMAGE_EXTENSIONS:
        image = colour[..., 0] if ext in (".pbm", ".pgm") else colour
        write_image(tmp_path / f"x{ext}", image=image)
        assert read_rgb(tmp_path / f"x{ext}").shape == (8, 8, 3), ext


# ---------------------------------------------------------------- class folders


def make_folders(root: Path, counts: dict[str, int]) -> None:
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            write_image(root / name / f"img_{i}.png", seed=10 * k + i)


def test_class_folder_default_split_is_first_ceil_half(tmp_path):
    make_folders(tmp_path, {"e": 1, "a": 2, "c": 1, "b": 3, "d": 2})
    write_image(tmp_path / "b" / "upper.JPG")          # extension case-insensitive
    (tmp_path / "b" / "notes.txt").write_text("x")      # not an image
    (tmp_path / "b" / "._img_0.png").write_bytes(b"")   # macOS metadata, hidden
    write_image(tmp_path / "b" / "nested" / "deep.png")  # not directly in the class folder
    (tmp_path / "README.md").write_text("x")            # a file at the root is no class

    split = class_folder_split(tmp_path)
    assert isinstance(split, DatasetSplit) and split.source == "folders"
    assert split.train_classes == ["a", "b", "c"] and split.test_classes == ["d", "e"]
    assert [(s.path.name, s.label, s.class_name) for s in split.train if s.class_name == "b"] == [
        ("img_0.png", 1, "b"), ("img_1.png", 1, "b"), ("img_2.png", 1, "b"), ("upper.JPG", 1, "b")]
    assert [s.label for s in split.train] == [0, 0, 1, 1, 1, 1, 2]
    assert [s.label for s in split.test] == [0, 0, 1]
    assert split.test[0] == Sample(tmp_path / "d" / "img_0.png", 0, "d")


def test_class_folder_explicit_lists(tmp_path):
    make_folders(tmp_path, {"a": 1, "b": 1, "c": 1, "d": 1})
    split = class_folder_split(tmp_path, train_classes=["d", "a"])
    assert split.train_classes == ["d", "a"] and split.test_classes == ["b", "c"]
    assert [(s.class_name, s.label) for s in split.train] == [("d", 0), ("a", 1)]
    split = class_folder_split(tmp_path, test_classes=["b"])
    assert split.train_classes == ["a", "c", "d"] and split.test_classes == ["b"]
    split = class_folder_split(tmp_path, train_classes=["a"], test_classes=["c"])
    assert (split.train_classes, split.test_classes) == (["a"], ["c"])
    assert {s.class_name for s in split.train + split.test} == {"a", "c"}


def test_several_datasets_make_one_split(tmp_path):
    """Birds and flowers for one model: each root takes the class names it holds, the others keep
    their default split; labels run over all roots and names say where a class came from."""
    make_folders(tmp_path / "birds", {"b1": 1, "b2": 1, "b3": 1, "b4": 1})
    make_folders(tmp_path / "flowers", {"f1": 2, "f2": 1, "f3": 1})
    split = load_splits([tmp_path / "birds", tmp_path / "flowers"], train_classes=["f1"])
    assert split.train_classes == ["birds/b1", "birds/b2", "flowers/f1"]
    assert split.test_classes == ["birds/b3", "birds/b4", "flowers/f2", "flowers/f3"]
    assert [(s.class_name, s.label) for s in split.train] == [("birds/b1", 0), ("birds/b2", 1), ("flowers/f1", 2),
                                                              ("flowers/f1", 2)]
    assert [s.label for s in split.test] == [0, 1, 2, 3] and split.source == "folders+folders"
    assert load_splits([tmp_path / "birds"]) == load_split(tmp_path / "birds")  # one root: unchanged
    with pytest.raises(ConfigError, match=r"\['x9'\] are in none of"):
        load_splits([tmp_path / "birds", tmp_path / "flowers"], test_classes=["x9"])


def test_class_folder_errors_say_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; pass the folder"):
        class_folder_split(tmp_path / "nope")
    with pytest.raises(ConfigError, match="at least 2"):
        class_folder_split(tmp_path)  # empty root
    make_folders(tmp_path, {"a": 1, "b": 1, "c": 1})
    with pytest.raises(ConfigError, match=r"unknown class folder\(s\) \['zebra'\].*available: \['a', 'b', 'c'\]"):
        class_folder_split(tmp_path, train_classes=["a", "zebra"])
    with pytest.raises(ConfigError, match="remove them from one list"):
        class_folder_split(tmp_path, train_classes=["a", "b"], test_classes=["b"])
    with pytest.raises(ConfigError, match="no test classes left"):
        class_folder_split(tmp_path, train_classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match="no train classes left"):
        class_folder_split(tmp_path, train_classes=[])


def test_class_folder_empty_classes(tmp_path):
    make_folders(tmp_path, {"a": 1, "b": 1, "c": 1})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.warns(UserWarning, match=r"without images.*\['empty'\]"):
        split = class_folder_split(tmp_path)
    assert split.train_classes == ["a", "b"] and split.test_classes == ["c"]
    with pytest.raises(ConfigError, match="hold no images"):
        class_folder_split(tmp_path, test_classes=["empty"])
    one = tmp_path / "one"
    make_folders(one, {"only": 2, "void": 0})
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="own sub-folder"):
        class_folder_split(one)


# ---------------------------------------------------------------- CUB-200-2011


def make_cub(root: Path, with_classes_txt: bool = True) -> list[int]:
    labels = [1, 2, 2, 100, 101, 150, 200]
    images, image_labels = [], []
    for i, label in enumerate(labels, start=1):
        rel = f"{label:03d}.Bird_{label}/Bird_{label}_{i:04d}.jpg"
        write_image(root / "images" / rel, seed=i)
        images.append(f"{i} {rel}")
        image_labels.append(f"{i} {label}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(image_labels) + "\n")
    if with_classes_txt:
        (root / "classes.txt").write_text("".join(f"{c} {c:03d}.Name_{c}\n" for c in range(1, 201)))
    return labels


def test_cub200_split_boundary_100_101(tmp_path):
    make_cub(tmp_path)
    split = cub200_split(tmp_path)
    assert split.source == "cub200"
    assert split.train_classes == ["001.Name_1", "002.Name_2", "100.Name_100"]
    assert split.test_classes == ["101.Name_101", "150.Name_150", "200.Name_200"]
    assert [s.label for s in split.train] == [0, 1, 1, 2]
    assert [s.label for s in split.test] == [0, 1, 2]
    assert split.train[0].path == tmp_path / "images" / "001.Bird_1" / "Bird_1_0001.jpg"
    assert all(s.path.is_file() for s in split.train + split.test)


def test_cub200_names_from_folders_and_errors(tmp_path):
    make_cub(tmp_path, with_classes_txt=False)
    assert cub200_split(tmp_path).test_classes == ["101.Bird_101", "150.Bird_150", "200.Bird_200"]
    with open(tmp_path / "images.txt", "a") as f:
        f.write("99 200.Bird_200/extra.jpg\n")
    with pytest.raises(ConfigError, match="no class in image_class_labels.txt"):
        cub200_split(tmp_path)
    (tmp_path / "image_class_labels.txt").unlink()
    with pytest.raises(ConfigError, match="image_class_labels.txt missing; pass the folder"):
        cub200_split(tmp_path)

    other = tmp_path / "moved"
    make_cub(other)
    (other / "images").rename(other / "imgs")
    with pytest.raises(ConfigError, match="extract the images there"):
        cub200_split(other)

    only_train = tmp_path / "half"
    only_train.mkdir()
    write_image(only_train / "images" / "a" / "x.jpg")
    (only_train / "images.txt").write_text("1 a/x.jpg\n")
    (only_train / "image_class_labels.txt").write_text("1 5\n")
    with pytest.raises(ConfigError, match="no test images"):
        cub200_split(only_train)


# ---------------------------------------------------------------- Cars196


def make_cars(root: Path) -> None:
    from scipy.io import savemat

    classes = [1, 2, 98, 98, 99, 196]
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    ann = np.zeros((1, len(classes)), dtype=[(f, "O") for f in fields])
    for i, c in enumerate(classes):
        rel = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / rel, seed=i)
        ann[0, i] = (rel, np.uint8(1), np.uint8(2), np.uint8(7), np.uint8(7), np.uint8(c), np.uint8(i % 2))
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Make Model {c}" for c in range(1, 197)]
    savemat(str(root / "cars_annos.mat"), {"annotations": ann, "class_names": names})


def test_cars196_split_boundary_98_99_ignores_test_flag(tmp_path):
    make_cars(tmp_path)
    split = cars196_split(tmp_path)
    assert split.source == "cars196"
    assert split.train_classes == ["Make Model 1", "Make Model 2", "Make Model 98"]
    assert split.test_classes == ["Make Model 99", "Make Model 196"]
    assert [s.label for s in split.train] == [0, 1, 2, 2]
    assert [s.label for s in split.test] == [0, 1]
    assert split.train[0].path == tmp_path / "car_ims" / "000001.jpg"
    assert split.test[-1] == Sample(tmp_path / "car_ims" / "000006.jpg", 1, "Make Model 196")


def test_cars196_missing_annotations(tmp_path):
    with pytest.raises(ConfigError, match="cars_annos.mat missing"):
        cars196_split(tmp_path)


# ---------------------------------------------------------------- Stanford Online Products


def make_sop(root: Path) -> None:
    header = "image_id class_id super_class_id path\n"
    train = [(1, 1, 1, "bicycle_final/111_0.JPG"), (2, 1, 1, "bicycle_final/111_1.JPG"),
             (3, 2, 1, "bicycle_final/222_0.JPG"), (4, 10, 2, "cabinet_final/333_0.JPG")]
    test = [(5, 11319, 1, "bicycle_final/444_0.JPG"), (6, 11320, 2, "cabinet_final/555_0.JPG"),
            (7, 11319, 1, "bicycle_final/444_1.JPG")]
    for file, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        for i, *_, rel in rows:
            write_image(root / rel, seed=i)
        (root / file).write_text(header + "".join(" ".join(map(str, r)) + "\n" for r in rows))


def test_sop_split_relabels_per_split(tmp_path):
    make_sop(tmp_path)
    split = sop_split(tmp_path)
    assert split.source == "sop"
    assert split.train_classes == ["1", "2", "10"] and split.test_classes == ["11319", "11320"]
    assert [s.label for s in split.train] == [0, 0, 1, 2]
    assert [s.label for s in split.test] == [0, 1, 0]
    assert split.test[1] == Sample(tmp_path / "cabinet_final" / "555_0.JPG", 1, "11320")
    (tmp_path / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n1 2 3\n")
    with pytest.raises(ConfigError, match="line 2: expected 4 fields"):
        sop_split(tmp_path)


# ---------------------------------------------------------------- load_split


def test_load_split_detects_each_format(tmp_path):
    makers = {"cub200": make_cub, "cars196": make_cars, "sop": make_sop,
              "folders": lambda r: make_folders(r, {"a": 1, "b": 1})}
    for fmt, make in makers.items():
        root = tmp_path / fmt
        root.mkdir()
        make(root)
        assert load_split(root).source == fmt
        assert load_split(root, fmt=fmt).source == fmt
    with pytest.raises(ConfigError, match=r"choose one of \['auto', 'folders', 'cub200', 'cars196', 'sop'\]"):
        load_split(tmp_path / "sop", fmt="imagenet")
    with pytest.raises(ConfigError, match="apply only to class folders"):
        load_split(tmp_path / "cub200", train_classes=["a"])
    assert load_split(tmp_path / "folders", train_classes=["b"]).train_classes == ["b"]


# ---------------------------------------------------------------- unreadable images


def test_check_readable_reports_and_skips(tmp_path):
    make_folders(tmp_path, {"a": 3, "b": 2})
    bad = tmp_path / "a" / "img_1.png"
    bad.write_bytes(b"\x89PNG garbage")
    fake = tmp_path / "b" / "fake.jpg"
    fake.write_bytes(b"this is text, not a JPEG")
    samples = [Sample(p, 0 if p.parent.name == "a" else 1, p.parent.name)
               for p in sorted(tmp_path.glob("*/*"))]
    for workers in (1, 4):
        good, unreadable = check_readable(samples, workers=workers)
        assert unreadable == [bad, fake]
        assert [s.path.name for s in good] == ["img_0.png", "img_2.png", "img_0.png", "img_1.png"]
    assert check_readable(samples, progress=True)[1] == [bad, fake]


def test_image_dataset_substitutes_same_label_when_file_breaks(tmp_path):
    make_folders(tmp_path, {"a": 3, "b": 2, "c": 1})
    samples = [Sample(p, "abc".index(p.parent.name), p.parent.name) for p in sorted(tmp_path.glob("*/*.png"))]
    ds = ImageDataset(samples, to_tensor)
    assert len(ds) == 6 and ds.labels == [0, 0, 0, 1, 1, 2]
    image, label = ds[1]
    assert label == 0 and image.shape == (3, 8, 8)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), read_rgb(samples[1].path))

    samples[1].path.write_bytes(b"corrupted after check_readable")
    with pytest.warns(UserWarning, match="img_1.png"):
        image, label = ds[1]
    assert label == 0 and ds.failed == [samples[1].path]
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), read_rgb(samples[2].path))  # the next one

    samples[2].path.write_bytes(b"")
    with pytest.warns(UserWarning):
        image, label = ds[2]  # wraps around to the first image of label 0
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), read_rgb(samples[0].path))
    assert ds.failed == [samples[1].path, samples[2].path]
    ds[1]  # known-bad files are not retried or recorded twice
    assert ds.failed == [samples[1].path, samples[2].path]
    assert ds[-1][1] == 2

    samples[5].path.write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(InvalidImageError, match="every image of label 2"):
        ds[5]


# ---------------------------------------------------------------- real data


def test_flowers17_default_split(flowers_dir):
    split = load_split(flowers_dir)
    assert split.source == "folders"
    assert split.train_classes == ["01_daffodil", "02_snowdrop", "03_lily_valley", "04_bluebell", "05_crocus",
                                   "06_iris", "07_tigerlily", "08_tulip", "09_fritillary"]
    assert split.test_classes[0] == "10_sunflower" and split.test_classes[-1] == "17_pansy"
    assert len(split.test_classes) == 8
    assert len(split.train) == 9 * 80 and len(split.test) == 8 * 80
    assert np.bincount([s.label for s in split.train]).tolist() == [80] * 9
    image = read_rgb(split.test[0].path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_yalefaces_grey_pngs(yalefaces_dir):
    split = class_folder_split(yalefaces_dir)
    assert split.train_classes == [f"subject{i:02d}" for i in range(1, 9)]
    assert split.test_classes == [f"subject{i:02d}" for i in range(9, 16)]
    good, bad = check_readable(split.test)
    assert bad == [] and len(good) == len(split.test)
    image = read_rgb(split.train[0].path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
