"""The user's files next to what edgedml writes (issue 22, items 7, 8, 14): a bundle is replaced
only when it holds nothing but its own files, crops never land on the user's files, and the
image sets an export reads are checked before it starts. The CLI rows are in
tests/test_adversarial.py (EXPORT_CASES); these are the API-level checks."""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED

from edgedml.bundle import read_manifest
from edgedml.errors import ConfigError
from edgedml.export import image_sets
from edgedml.export.destination import check_output_folder, foreign_entries
from edgedml.export.exporter import ExportOptions, export_bundle
from edgedml.models import ModelConfig, build_model
from edgedml.output_folders import move_into_place
from edgedml.preprocessing import PreprocessSpec

YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
ORL = SHARED / "data" / "orl_faces"


def _image(path, seed):
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (80, 80), interpolation=cv2.INTER_CUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (np.clip(picture, 0, 1) * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig(image_size=64, grid=2, upsample=4), pretrained=False).eval()


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    shutil.copytree(tiny_bundle[1], out)  # the model of `tiny`, exported once per session
    return out


def test_a_bundle_with_its_reports_cache_and_a_build_in_progress_is_its_own(bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "calibration_roc.png").write_bytes(b"a report")
    (copy / "cache" / "ort").mkdir(parents=True)
    (copy / "cache" / "ort" / "engine.bin").write_bytes(b"cached")
    (copy / "engines").mkdir()
    (copy / "engines" / "embedder.fp32.engine.tmp").write_bytes(b"half an engine")
    manifest = read_manifest(copy, verify=False)
    assert foreign_entries(copy, manifest) == []
    check_output_folder(copy, overwrite=True)  # no error: an old bundle is replaced


def test_foreign_entries_name_the_users_files_wherever_they_are(bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "NOTES.txt").write_text("door codes")
    (copy / "staff_photos").mkdir()
    (copy / "staff_photos" / "ann.jpg").write_bytes(b"ann")
    (copy / "validation" / "mine.npz").write_bytes(b"mine")
    (copy / "detector").mkdir()
    (copy / "detector" / "yunet.onnx").write_bytes(b"not listed")  # a detector the manifest does not name
    (copy / "photos").symlink_to(tmp_path, target_is_directory=True)
    (copy / "notes.tmp").write_text("a .tmp at the top is the user's")
    found = foreign_entries(copy, read_manifest(copy, verify=False))
    assert found == ["NOTES.txt", "detector/yunet.onnx", "notes.tmp", "photos", "staff_photos/",
                     "validation/mine.npz"]
    with pytest.raises(ConfigError, match="it also holds NOTES.txt, detector/yunet.onnx"):
        check_output_folder(copy, overwrite=True)


@pytest.mark.slow  # a full export
def test_overwrite_replaces_a_bundle_whole_and_keeps_nothing_of_the_old_one(tiny, bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "calibration_scores.png").write_bytes(b"old report")
    (copy / "cache").mkdir()
    (copy / "cache" / "x").write_bytes(b"old cache")
    export_bundle(tiny, copy, ExportOptions(validation_images=2, overwrite=True), log=lambda m: None)
    read_manifest(copy)
    assert not (copy / "calibration_scores.png").exists() and not (copy / "cache").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging or old folder left beside it


def test_a_link_named_as_out_is_refused_before_the_work(tiny, bundle, tmp_path):
    (tmp_path / "link").symlink_to(bundle, target_is_directory=True)
    before = sorted(p.name for p in bundle.iterdir())
    logged = []
    with pytest.raises(ConfigError, match="is a symbolic link"):
        export_bundle(tiny, tmp_path / "link", ExportOptions(validation_images=2, overwrite=True), log=logged.append)
    assert logged == [] and sorted(p.name for p in bundle.iterdir()) == before
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        check_output_folder(tmp_path / "dangling", overwrite=False)


def test_a_failed_swap_leaves_the_old_folder_under_its_name(tmp_path, monkeypatch):
    old, new = tmp_path / "out", tmp_path / ".out.staging"
    old.mkdir()
    (old / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append((Path(src), Path(dst)))
        if len(calls) == 2:  # the staging folder renamed to out
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk gone"):
        move_into_place(new, old)
    assert (old / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [".out.staging", "out"]


def _photos(folder, n, seed=0):
    return [_image(folder / f"{k:02d}.png", seed + k) for k in range(n)]


SPEC = PreprocessSpec(size=64)


def _read(**kwargs):
    args = dict(calib=None, calib_images=64, quantize=False, validate_with=None, validation_images=8,
                validate_data=None, compare_precisions=False)
    return image_sets.export_images(SPEC, **{**args, **kwargs})


def test_the_calibration_set_skips_unreadable_images_and_warns_below_32(tmp_path):
    _photos(tmp_path / "c", 6)
    (tmp_path / "c" / "03.png").write_bytes(b"\x89PNG broken")
    images = _read(calib=str(tmp_path / "c"), calib_images=4, quantize=True, validation_images=2)
    calibration = images.calibration
    assert calibration.images.shape == (4, 3, 64, 64) and len(calibration.files) == 4
    assert tmp_path / "c" / "03.png" not in calibration.files and len(calibration.skipped) == 1
    assert any("03.png" in w and "unreadable" in w for w in images.warnings)
    assert any("only 4 images" in w and "fewer than 32" in w for w in images.warnings)


def test_validation_reusing_calibration_images_is_said(tmp_path):
    _photos(tmp_path / "c", 5)
    images = _read(calib=str(tmp_path / "c"), calib_images=4, quantize=True, validation_images=3)
    reused = set(images.validation.files) & set(images.calibration.files)
    assert len(images.validation.files) == 3 and len(reused) == 2  # 1 image apart from the calibration set
    assert any("2 of the 3 validation images are also calibration images" in w for w in images.warnings)
    apart = _read(calib=str(tmp_path / "c"), calib_images=2, quantize=True, validation_images=3)
    assert not set(apart.validation.files) & set(apart.calibration.files)
    assert not any("also calibration" in w for w in apart.warnings)


def test_validate_data_sharing_calibration_images_is_said_and_unused_validate_data_too(tmp_path):
    for c in range(2):
        _photos(tmp_path / "l" / f"c{c}", 3, seed=10 * c)
    (tmp_path / "l" / "c1" / "bad.jpg").write_bytes(b"")
    images = _read(calib=str(tmp_path / "l"), calib_images=2, quantize=True, validate_data=str(tmp_path / "l"),
                   compare_precisions=True)
    assert len(images.labelled.paths) == 6 and images.labelled.names == ["c0", "c1"]
    assert any("of --validate-data are also calibration images" in w for w in images.warnings)
    assert any("bad.jpg" in w for w in images.warnings)
    unused = _read(validate_data=str(tmp_path / "l"))
    assert unused.labelled is None and any("--validate-data" in w and "not used" in w for w in unused.warnings)


def test_the_first_calibration_images_are_taken_as_before(tmp_path):
    """The spread over the set (so over the classes) that export always took, when all decode."""
    files = sorted(_image(tmp_path / f"c{k % 3}" / f"{k}.png", k) for k in range(20))
    assert image_sets.candidates(tmp_path, 6)[:6] == files[::3][:6]


def _detector():
    if not YUNET.is_file() or not ORL.is_dir():
        pytest.skip("the YuNet model or the ORL faces are not in ../shared")
    from edgedml.runtime.faces.detection import load_detector

    return load_detector(f"yunet:{YUNET}")


def _people(root):
    for person in ("s01", "s02"):
        (root / person).mkdir(parents=True)
        for photo in ("1.pgm", "2.pgm"):
            shutil.copy(ORL / person / photo, root / person / photo)
    return root


def test_crop_faces_overwrite_replaces_only_its_own_unchanged_crops(tmp_path):
    from edgedml.runtime.faces.face_crops import RECORD, crop_dataset

    detector = _detector()
    source = _people(tmp_path / "people")
    out = tmp_path / "crops"
    assert crop_dataset(source, out, detector).written == 4
    with pytest.raises(ConfigError, match="exists and is not empty"):
        crop_dataset(source, out, detector)
    (source / "s02" / "2.pgm").unlink()
    assert crop_dataset(source, out, detector, overwrite=True).written == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["s01/1.png", "s01/2.png", "s02/1.png"]
    assert (out / RECORD).is_file()
    (out / "s01" / "1.png").write_bytes(b"the user fixed this crop by hand")
    with pytest.raises(ConfigError, match=r"changed since \(s01/1.png\)"):
        crop_dataset(source, out, detector, overwrite=True)
    assert (out / "s01" / "1.png").read_bytes() == b"the user fixed this crop by hand"


def test_a_crop_run_that_fails_leaves_nothing(tmp_path):
    from edgedml.runtime.faces.face_crops import crop_dataset

    detector = _detector()
    source = _people(tmp_path / "people")
    calls = []
    real = detector.detect

    def detect(rgb):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real(rgb)

    detector.detect = detect
    with pytest.raises(RuntimeError, match="power cut"):
        crop_dataset(source, tmp_path / "crops", detector)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people"]
