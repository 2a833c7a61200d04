"""Calibrations that cannot be bent (issue 22, items 2, 3 and 6): a threshold decides only for the
cropping and graph set it was measured on, a set too small to measure FAR 1e-3 is refused unless
forced, a lowered threshold is said, and `compare` exits 0 only on MATCH."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import YUNET

from edgedml.bundle import read_manifest, sha256_file
from edgedml.cli import main
from edgedml.runtime.assurance.calibration import CalibrationError, calibrate
from edgedml.runtime.assurance.thresholds import CalibrationMismatch
from edgedml.runtime.faces.detection import DetectorSettings, install, load_detector
from edgedml.runtime.gallery.gallery import Gallery
from edgedml.runtime.gallery.store import GalleryError
from edgedml.runtime.matching.matcher import Matcher

needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason=f"the YuNet model is not at {YUNET}")


def _image(path, seed):
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (80, 80), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), (np.clip(picture, 0, 1) * 255).astype(np.uint8))
    return path


def _labelled(root, classes, per_class):
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            _image(root / f"c{c}" / f"{i}.png", 100 * c + i)
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_bundle):
    """A tiny uncalibrated bundle, a set of 2 × 32 images (1024 impostor pairs: FAR 1e-3 resolves)
    and one of 2 × 2 (4 impostor pairs)."""
    root = tmp_path_factory.mktemp("calibration")
    shutil.copytree(tiny_bundle[1], root / "bundle")  # the tiny model seeded with 0, exported once per session
    _labelled(root / "big", 2, 32)
    _labelled(root / "tiny", 2, 2)
    return root


def _copy(lab, tmp_path) -> Path:
    shutil.copytree(lab / "bundle", tmp_path / "b")
    return tmp_path / "b"


def _state(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _record(bundle, threshold=1.5, **calibration):
    """Write a calibration as `calibrate` does (None drops a field, as an older edgedml wrote none)."""
    record = {"precision": "fp32", "detector": "none", "impostor_min": -1.0, **calibration}
    read_manifest(bundle).update(thresholds={"default": {"threshold": threshold, "from": "far_0.001"}},
                                 calibration={k: v for k, v in record.items() if v is not None})
    return bundle


# --- item 3: a set too small to resolve FAR 1e-3 ---------------------------------------------------

def test_a_set_too_small_for_far_1e3_is_refused_before_anything_is_written(lab, tmp_path):
    bundle = _copy(lab, tmp_path)
    calibrate(bundle, lab / "big")
    before = _state(bundle)  # a calibrated bundle, its pictures included
    with pytest.raises(CalibrationError, match=r"4 impostor pairs cannot measure FAR 0.001 .*--force"):
        calibrate(bundle, lab / "tiny")
    assert _state(bundle) == before
    done = CliRunner().invoke(main, ["calibrate", "--model", str(bundle), "--data", str(lab / "tiny")])
    assert done.exit_code == 1 and "--force" in done.output and len(done.output.strip().splitlines()) == 1
    assert _state(bundle) == before


def test_unreadable_images_that_leave_too_few_pairs_are_refused_after_embedding(lab, tmp_path):
    bundle, data = _copy(lab, tmp_path), tmp_path / "data"
    shutil.copytree(lab / "big", data)
    (data / "c0" / "0.png").write_bytes(b"not a picture")  # 31 × 32 = 992 impostor pairs are left
    with pytest.raises(CalibrationError, match="992 impostor pairs cannot measure"):
        calibrate(bundle, data)
    assert _state(bundle) == _state(lab / "bundle")


def test_force_writes_the_thresholds_marked_unresolved_and_never_the_eer(lab, tmp_path):
    bundle = _copy(lab, tmp_path)
    report = calibrate(bundle, lab / "tiny", force=True)
    thresholds = report["thresholds"]
    assert report["resolved"] is False and report["impostor_pairs"] == 4
    assert [n for n, e in thresholds.items() if e.get("resolvable") is False] == ["far_0.01", "far_0.001",
                                                                                 "far_0.0001", "default"]
    assert thresholds["default"]["from"] == "far_0.001" and thresholds["default"]["far"] == 0.0
    assert thresholds["default"]["threshold"] >= thresholds["eer"]["threshold"]
    assert read_manifest(bundle).calibration["resolved"] is False
    done = CliRunner().invoke(main, ["calibrate", "--model", str(bundle), "--data", str(lab / "tiny"), "--force"])
    assert done.exit_code == 0, done.output
    rows = [line for line in done.output.splitlines() if line.startswith("  far_") or line.startswith("  default")]
    assert len(rows) == 4 and all("FAR UNRESOLVED" in row for row in rows), done.output
    assert "FAR 0.00e+00" not in done.output and "cannot resolve FAR 0.001" in done.output


def test_a_recalibration_that_lowers_the_default_threshold_says_so(lab, tmp_path):
    bundle = _copy(lab, tmp_path)
    report = calibrate(bundle, lab / "big")
    assert report["previous_default"] is None and report["lowered"] is False and report["resolved"] is True
    new = report["thresholds"]["default"]["threshold"]
    _record(bundle, threshold=1.99)
    report = calibrate(bundle, lab / "big")
    assert report["previous_default"] == 1.99 and report["lowered"] is True
    _record(bundle, threshold=1.99)
    done = CliRunner().invoke(main, ["calibrate", "--model", str(bundle), "--data", str(lab / "big")])
    assert done.exit_code == 0 and f"goes DOWN from 1.9900 to {new:.4f}" in done.output, done.output
    again = calibrate(bundle, lab / "big")
    assert again["previous_default"] == new and again["lowered"] is False


# --- item 2: the cropping and the graphs a threshold was measured on -----------------------------

@needs_yunet
def test_a_threshold_calibrated_on_whole_images_never_decides_on_face_crops(lab, tmp_path):
    bundle = _copy(lab, tmp_path)
    calibrate(bundle, lab / "big")
    threshold = read_manifest(bundle).thresholds["default"]["threshold"]
    assert Matcher(bundle).threshold == threshold
    faces = Matcher(bundle, detector=f"yunet:{YUNET}")  # still embeds and enrolls
    assert faces.threshold is None and "'none'" in faces.threshold_refused and "'yunet'" in faces.threshold_refused
    with pytest.raises(CalibrationMismatch, match=r"calibrated on images cut by detector 'none' .* --threshold"):
        faces.compare(lab / "big" / "c0" / "0.png", lab / "big" / "c0" / "1.png")
    assert faces.compare(lab / "big" / "c0" / "0.png", lab / "big" / "c0" / "1.png", threshold=1.99).is_match is False
    with Gallery(tmp_path / "g.db", faces) as gallery:
        for decide in (lambda: gallery.verify(lab / "big" / "c0" / "0.png", "ann"),
                       lambda: gallery.identify(lab / "big" / "c0" / "0.png")):
            with pytest.raises(GalleryError, match="calibrated on images cut by detector 'none'"):
                decide()
        assert gallery.identify(lab / "big" / "c0" / "0.png", threshold=1.99).reason == "no face found"
    with Gallery(tmp_path / "g.db", faces, threshold=1.99) as gallery:  # an explicit threshold decides
        assert gallery.identify(lab / "big" / "c0" / "0.png").accepted is False


@needs_yunet
def test_a_threshold_calibrated_on_face_crops_serves_only_that_detector_file_margin_and_alignment(lab, tmp_path):
    bundle = _copy(lab, tmp_path)
    _record(bundle, detector=load_detector(f"yunet:{YUNET}", DetectorSettings(margin=0.05)).fingerprint())
    assert Matcher(bundle, detector=f"yunet:{YUNET}").threshold == 1.5
    assert "'none'" in Matcher(bundle).threshold_refused  # whole images
    for settings in (DetectorSettings(margin=0.2), DetectorSettings(align=False)):
        refused = Matcher(bundle, detector=f"yunet:{YUNET}", detector_settings=settings)
        assert refused.threshold is None and "cut by detector 'yunet'" in refused.threshold_refused
    import onnx

    model = onnx.load(str(YUNET))  # another detector file: the same network, another hash
    model.doc_string = "retrained"
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    assert Matcher(bundle, detector=f"yunet:{other}").threshold is None


def test_a_threshold_calibrated_with_other_graphs_is_refused(lab, tmp_path):
    bundle = _record(_copy(lab, tmp_path), precision="int8-cpu")
    matcher = Matcher(bundle)
    assert matcher.threshold is None and "with the int8-cpu graphs and this matcher runs fp32" in \
        matcher.threshold_refused
    done = CliRunner().invoke(main, ["compare", str(lab / "big" / "c0" / "0.png"), str(lab / "big" / "c0" / "1.png"),
                                     "--model", str(bundle)])
    assert done.exit_code == 1 and "int8-cpu graphs" in done.output and "decision" not in done.output
    assert Matcher(_record(bundle, precision=None)).threshold == 1.5  # unrecorded: calibrate ran fp32


@needs_yunet
def test_a_calibration_older_than_the_cropping_record(lab, tmp_path):
    bundle = _record(_copy(lab, tmp_path), detector=None)  # no detector in the bundle: whole images
    assert Matcher(bundle).threshold == 1.5
    assert "'none'" in Matcher(bundle, detector=f"yunet:{YUNET}").threshold_refused
    detector = load_detector(f"yunet:{YUNET}")
    manifest = read_manifest(bundle)
    manifest.update(detector=install(detector, bundle))  # a bundle with a detector: nothing is known
    for spec in (None, "none", f"yunet:{YUNET}"):
        refused = Matcher(bundle, detector=spec)
        assert refused.threshold is None and "unrecorded cropping" in refused.threshold_refused


# --- item 6: compare's exit code -------------------------------------------------------------------

def test_compare_exits_0_only_on_match(lab, tmp_path):
    a, same, other = (str(lab / "big" / c / f) for c, f in (("c0", "0.png"), ("c0", "0.png"), ("c1", "5.png")))
    model = ["--model", str(lab / "bundle")]
    run = CliRunner().invoke
    assert run(main, ["compare", a, same, *model, "--threshold", "1.9"]).exit_code == 0
    no = run(main, ["compare", a, other, *model, "--threshold", "1.99", "--json"])
    assert no.exit_code == 4 and json.loads(no.output)["is_match"] is False
    undecided = run(main, ["compare", a, other, *model])
    assert undecided.exit_code == 5 and "uncalibrated" in undecided.output


def test_calibration_pictures_replace_a_planted_link_instead_of_writing_through_it(lab, tmp_path):
    bundle = _copy(lab, tmp_path)
    outside = tmp_path / "thesis.txt"
    outside.write_text("years of work")
    (bundle / "calibration_roc.png").symlink_to(outside)
    calibrate(bundle, lab / "tiny", force=True)
    assert outside.read_text() == "years of work"
    roc = bundle / "calibration_roc.png"
    assert not roc.is_symlink() and cv2.imread(str(roc)) is not None
    assert not list(bundle.glob(".*.tmp"))
    read_manifest(bundle)
