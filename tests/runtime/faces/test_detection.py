"""The face stage: detect (YuNet), crop and align, embed, explain on the frame, and decide when
there is no face. Tests that need the YuNet file or the face photos skip where they are absent."""

import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHIPPED, YUNET, benchmark_helper, data_path

from edgedml.bundle import read_manifest
from edgedml.errors import ChecksumError, ConfigError
from edgedml.runtime.faces import detection
from edgedml.runtime.faces.detection import DetectorError, DetectorSettings, Face, NoFaceFound
from edgedml.runtime.faces.roi import View, face_transform, face_view, whole_view
from edgedml.runtime.inference.image import load_image
from edgedml.runtime.matching.explain import region_centre, seen_outline, to_image

DAISY = SHIPPED / "daisy_1.jpg"  # a photo without a face

composites = benchmark_helper("composites")  # frames with a face pasted in (benchmarks/composites.py)
composite, contains = composites.composite, composites.contains
fill_frame, paste = composites.fill_frame, composites.paste


def _face(eyes=((40.0, 50.0), (80.0, 70.0)), box=(30.0, 30.0, 60.0, 80.0)) -> Face:
    return Face(box, (*eyes, (60.0, 80.0), (45.0, 95.0), (75.0, 100.0)), 0.9)



@pytest.fixture(scope="module")
def faces():
    """Two people of the face test split, as RGB arrays: [(person, [photos])]."""
    root = data_path("orl_faces")
    return [(name, [load_image(p) for p in sorted((root / name).glob("*.pgm"))[:3]]) for name in ("s21", "s22")]


@pytest.fixture(scope="module")
def scene():
    return load_image(SHIPPED / "daisy_2.jpg")


# --- the geometry, without a detector ----------------------------------------------------------

def test_settings_refuse_values_that_cannot_work():
    for bad in (dict(score_threshold=1.5), dict(min_size=0), dict(margin=-0.3), dict(detect_side=10)):
        with pytest.raises(ConfigError):
            DetectorSettings(**bad)
    with pytest.raises(ConfigError, match="unknown detector settings keys"):
        DetectorSettings.from_dict({"score": 0.5})


OLD_SETTINGS = {"score_threshold": 0.7, "nms_threshold": 0.3, "min_size": 32, "margin": 0.05, "align": True,
                "detect_side": 640}  # a manifest's detector settings before the chip was recorded


def test_the_chip_is_square_or_dlib_and_old_manifests_hold_square_crops():
    assert DetectorSettings().chip == "square" and DetectorSettings(chip="dlib").chip == "dlib"
    for bad in ("round", "Dlib", "", None, 150):
        with pytest.raises(ConfigError, match="unknown face chip .* choose one of square, dlib"):
            DetectorSettings(chip=bad)
    old = DetectorSettings.from_dict(OLD_SETTINGS)
    assert old.chip == "square" and old == DetectorSettings()
    assert DetectorSettings.from_dict({**OLD_SETTINGS, "chip": "dlib"}).chip == "dlib"
    assert DetectorSettings.from_dict(DetectorSettings(chip="dlib").to_dict()) == DetectorSettings(chip="dlib")
    with pytest.raises(ConfigError, match="unknown face chip 'Square'"):
        DetectorSettings.from_dict({**OLD_SETTINGS, "chip": "Square"})


def test_square_crops_keep_their_fingerprint_and_the_dlib_chip_has_its_own(yunet):
    digest = detection.hashlib.sha256(YUNET.read_bytes()).hexdigest()[:16]
    assert detection.load_detector(yunet).fingerprint() == f"yunet:{digest}:margin=0.05:align=1"  # as before chips
    square = detection.load_detector(yunet, DetectorSettings(margin=0.2, align=False, chip="square"))
    assert square.fingerprint() == f"yunet:{digest}:margin=0.2:align=0"
    chip = detection.load_detector(yunet, DetectorSettings(chip="dlib"))
    assert chip.fingerprint() == f"yunet:{digest}:chip=dlib"
    # margin and align do not change the dlib chip, so they do not change its fingerprint either
    assert detection.load_detector(yunet, DetectorSettings(chip="dlib", margin=0.3, align=False)).fingerprint() \
        == chip.fingerprint()
    assert "dlib's 150×150 chip" in chip.describe() and "chip" not in square.describe()


def test_cut_view_is_the_settings_crop():
    """One function decides the crop: the square of margin/align, or dlib's chip (margin and
    align ignored)."""
    from edgedml.runtime.faces.roi import cut_view, dlib_chip_view

    frame = np.random.default_rng(0).integers(0, 255, (200, 220, 3), np.uint8)
    face = _face()
    for margin, align in ((0.05, True), (0.3, False)):
        view = cut_view(frame, face, DetectorSettings(margin=margin, align=align))
        want = face_view(frame, face, margin, align)
        assert np.array_equal(view.pixels, want.pixels) and np.array_equal(view.to_frame, want.to_frame)
    chip = cut_view(frame, face, DetectorSettings(chip="dlib", margin=0.3, align=False))
    want = dlib_chip_view(frame, face)
    assert chip.pixels.shape == (150, 150, 3) and chip.face is face
    assert np.array_equal(chip.pixels, want.pixels) and np.array_equal(chip.to_frame, want.to_frame)


def test_the_aligned_crop_levels_the_eyes_and_centres_the_face():
    face = _face()
    forward, side = face_transform(face, margin=0.25, align=True)
    assert side == round(1.5 * 80)
    eyes = np.array(face.landmarks[:2]) @ forward[:, :2].T + forward[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-9 and eyes[0, 0] < eyes[1, 0]  # level, left to right
    centre = forward[:, :2] @ np.array(face.centre) + forward[:, 2]
    assert np.allclose(centre, side / 2)
    assert np.isclose(np.linalg.norm(eyes[1] - eyes[0]), np.hypot(40, 20))  # rotated, not scaled
    unaligned, _ = face_transform(face, margin=0.25, align=False)
    assert np.allclose(unaligned[:, :2], np.eye(2))


def test_the_crop_and_its_map_back_are_inverse(scene):
    view = face_view(scene, _face(box=(100.0, 80.0, 90.0, 110.0)), margin=0.2, align=True)
    forward, _ = face_transform(view.face, 0.2, True)
    points = np.array([[0.0, 0.0], [10.0, 50.0], [132.0, 7.5]])
    there = points @ forward[:, :2].T + forward[:, 2]
    assert np.allclose(view.points_to_frame(there), points)
    x, y = 60, 30  # a pixel of the crop is the frame's pixel where to_frame puts it
    fx, fy = view.points_to_frame(np.array([[x, y]]))[0]
    assert np.abs(view.pixels[y, x].astype(float) - scene[int(round(fy)), int(round(fx))]).max() < 40


def test_a_region_map_lands_where_the_view_was_cut_from_the_frame():
    from edgedml.preprocessing import PreprocessSpec

    spec = PreprocessSpec(size=64, crop_fraction=1.0)
    frame = np.zeros((200, 300, 3), np.uint8)
    # a view of the frame's box x 100..160, y 40..100, turned by 90°: view (u, v) → frame (160 - v, 40 + u)
    to_frame = np.array([[0.0, -1.0, 160.0], [1.0, 0.0, 40.0]])
    view = View(np.zeros((60, 60, 3), np.uint8), to_frame, _face())
    hot = np.zeros((2, 2), np.float32)
    hot[0, 0] = 1.0  # the view's top-left cell
    heat = to_image(hot, view, frame.shape, spec)
    assert heat.shape == (200, 300)
    assert heat[40:70, 130:160].mean() > 0.5  # the top-left of the view is the frame's top-right of the box
    assert heat[70:100, 100:130].max() < 0.5
    assert heat[:, :100].max() == 0 and heat[:, 161:].max() == 0 and heat[101:].max() == 0  # nothing outside
    assert region_centre(0, 2, view, spec) == (145, 55)
    outline = seen_outline(view, spec)
    assert np.allclose(sorted(map(tuple, outline)), sorted([(160, 40), (160, 100), (100, 100), (100, 40)]))


def test_the_whole_frame_view_places_the_map_on_the_centre_crop():
    from edgedml.preprocessing import PreprocessSpec

    spec = PreprocessSpec(size=64, crop_fraction=0.5)
    frame = np.zeros((100, 200, 3), np.uint8)
    heat = to_image(np.ones((2, 2), np.float32), whole_view(frame), frame.shape, spec)
    assert heat[25:75, 75:125].min() == 1 and heat.sum() == 50 * 50


def test_a_detector_spec_is_understood_or_refused_clearly(tmp_path):
    assert detection.parse_spec("none") == ("none", None)
    assert detection.parse_spec("yunet:a/b.onnx") == ("yunet", Path("a/b.onnx"))
    for bad in ("haar:x.xml", "yunet:", "yunet", "x.onnx"):
        with pytest.raises(DetectorError, match="yunet:PATH"):
            detection.parse_spec(bad)
    with pytest.raises(DetectorError, match="does not exist"):
        detection.load_detector(f"yunet:{tmp_path / 'missing.onnx'}")
    (tmp_path / "notes.onnx").write_text("not a network")
    with pytest.raises(DetectorError, match="not a YuNet face detector"):
        detection.load_detector(f"yunet:{tmp_path / 'notes.onnx'}")


def test_composites_paste_where_they_say():
    rng = np.random.default_rng(0)
    face = np.full((112, 92, 3), 255, np.uint8)
    frame, (x, y, w, h) = composite(face, np.zeros((227, 227, 3), np.uint8), rng)
    assert frame.shape == (480, 640, 3) and 100 <= w <= 240 and h == round(112 * w / 92)
    assert frame[y:y + h, x:x + w].min() == 255 and frame.sum() == 255 * 3 * w * h
    assert contains((x, y, w, h), (x + w / 2, y + h / 2)) and not contains((x, y, w, h), (x - 1, y))
    with pytest.raises(ValueError, match="does not fit"):
        paste(face, frame, 100, 600, 0)


# --- YuNet on real faces -------------------------------------------------------------------------

def test_a_face_is_found_on_a_composite_and_nothing_on_a_flower(yunet, faces, scene):
    detector = detection.load_detector(yunet)
    rng = np.random.default_rng(1)
    found = 0
    for _, photos in faces:
        for photo in photos:
            frame, box = composite(photo, scene, rng)
            detected = detector.detect(frame)
            found += bool(detected) and contains(box, detected[0].centre)
    assert found >= 5, f"YuNet found {found} of 6 pasted faces"
    assert detector.detect(load_image(DAISY)) == []
    big = cv2.resize(frame, (2560, 1920))  # downscaled for detection, boxes in full-frame pixels
    assert contains(tuple(4 * v for v in box), detector.detect(big)[0].centre)


def test_compare_explains_on_the_frame_and_no_face_is_a_decision(yunet, faces, scene, small_bundle):
    from edgedml.runtime.matching.matcher import Matcher

    _, bundle = small_bundle
    matcher = Matcher(bundle, detector=yunet, threshold=0.5)
    frame, box = composite(faces[0][1][0], scene, np.random.default_rng(2))
    bgr = np.ascontiguousarray(frame[:, :, ::-1])
    result = matcher.explain(bgr, faces[0][1][1][:, :, ::-1].copy())  # the result with its pictures
    assert result.reason is None and result.score is not None
    assert result.image_a.shape == frame.shape and result.evidence_a.shape == frame.shape[:2]
    assert contains(box, result.face_a.centre)
    inside = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(result.outline_a).astype(np.int32)], 1)
    outside = cv2.dilate(inside, np.ones((5, 5), np.uint8)) == 0
    assert result.evidence_a[outside].max() == 0 and result.evidence_a.max() > 0  # evidence only where it looked
    for m in result.matches:
        assert cv2.pointPolygonTest(result.outline_a.astype(np.float32), m.point_a, False) >= 0
    picture = result.render()
    assert picture.shape[0] > 360 and picture.dtype == np.uint8

    none = matcher.compare(DAISY, bgr)
    assert none.is_match is False and none.score is None and none.reason == "no face found in image a"
    assert none.face_b is not None and none.to_dict()["reason"] == "no face found in image a"
    assert matcher.explain(DAISY, bgr).render().shape[0] > 360
    with pytest.raises(NoFaceFound, match="daisy_1.jpg"):
        matcher.embed([bgr, DAISY])
    plain = Matcher(bundle, detector="none")
    assert plain.detector is None and plain.compare(DAISY, bgr).reason is None


def test_the_gallery_decides_no_face_and_identifies_every_face(yunet, faces, scene, small_bundle, tmp_path):
    from edgedml.runtime.gallery.gallery import Gallery, GalleryError
    from edgedml.runtime.matching.matcher import Matcher

    _, bundle = small_bundle
    (p1, photos1), (p2, photos2) = faces
    with Gallery(tmp_path / "door.db", Matcher(bundle, detector=yunet), threshold=0.5) as gallery:
        gallery.enroll(p1, photos1[:2])
        gallery.enroll(p2, photos2[:2])
        with pytest.raises(NoFaceFound, match="no face found"):
            gallery.enroll("nobody", [photos1[0], DAISY])
        assert set(gallery.identities()) == {p1, p2}  # nothing half-enrolled
        decision = gallery.verify(DAISY, p1)
        assert not decision.accepted and decision.score is None and decision.reason == "no face found"
        assert gallery.identify(DAISY).reason == "no face found"
        gallery.log_decision("verify", decision, claimed=p1)
        assert gallery.decisions(1)[0].details["reason"] == "no face found"

        frame, _ = paste(photos2[2], fill_frame(scene), 200, 400, 150)  # the larger face, at the right
        frame, _ = paste(photos1[2], frame, 120, 30, 60)
        decisions = gallery.identify_faces(frame)
        assert len(decisions) == 2 and decisions[0].face.box[0] > 300 > decisions[1].face.box[0]
        assert decisions[0].face.area > decisions[1].face.area
        assert gallery.identify(frame).face == decisions[0].face  # identify decides on the largest
        assert gallery.identify_faces(DAISY) == []
    with pytest.raises(GalleryError, match="enrolled with detector 'yunet'"):
        Gallery(tmp_path / "door.db", Matcher(bundle, detector="none"))
    with pytest.raises(GalleryError, match="margin=0.5"):
        Gallery(tmp_path / "door.db", Matcher(bundle, detector=yunet, detector_settings=DetectorSettings(margin=0.5)))


def test_a_gallery_from_before_detectors_holds_whole_image_templates(small_bundle, tmp_path, yunet):
    from edgedml.runtime.gallery.gallery import Gallery, GalleryError
    from edgedml.runtime.matching.matcher import Matcher

    _, bundle = small_bundle
    with Gallery(tmp_path / "old.db", Matcher(bundle, detector="none")) as gallery:
        gallery.enroll("daisy", [DAISY])
    with sqlite3.connect(str(tmp_path / "old.db")) as con:
        con.execute("DELETE FROM meta WHERE key='detector'")  # as galleries written before this version
    with pytest.raises(GalleryError, match="enrolled with detector 'none'"):
        Gallery(tmp_path / "old.db", Matcher(bundle, detector=yunet))
    Gallery(tmp_path / "old.db", Matcher(bundle, detector="none")).close()


def test_the_bundles_detector_is_checksummed_and_used_by_default(yunet, small_bundle, tmp_path):
    from edgedml.runtime.matching.matcher import Matcher

    _, bundle = small_bundle
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    entry = detection.install(detection.load_detector(yunet, DetectorSettings(min_size=48)), copy)
    manifest = read_manifest(copy).update(detector=entry)
    assert manifest.files[entry["file"]].sha256 == entry["sha256"] == detection.hashlib.sha256(
        YUNET.read_bytes()).hexdigest()
    matcher = Matcher(copy)
    assert matcher.detector is not None and matcher.detector.settings.min_size == 48
    assert matcher.detector.path == copy / entry["file"]
    assert Matcher(copy, detector="none").detector is None
    with open(copy / entry["file"], "r+b") as handle:  # one byte changed on the device
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ChecksumError, match="face_detection_yunet"):
        Matcher(copy)


@pytest.mark.slow  # a full export by the CLI
def test_the_cli_exports_a_detector_and_decides_on_faces(yunet, faces, scene, tmp_path):
    import torch

    from edgedml.cli import main
    from edgedml.models import ModelConfig, build_model, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig(image_size=64, grid=2, upsample=4), pretrained=False),
                    tmp_path / "m.safetensors")
    runner = CliRunner()
    out = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--out",
                               str(tmp_path / "bundle"), "--detector", yunet, "--min-face", "40"])
    assert out.exit_code == 0, out.output
    assert "face detector: detector/face_detection_yunet_2026may.onnx" in out.output and "faces ≥ 40 px" in out.output
    manifest = read_manifest(tmp_path / "bundle")
    assert manifest.detector["settings"]["min_size"] == 40 and manifest.detector["file"] in manifest.files
    frame, _ = composite(faces[0][1][0], scene, np.random.default_rng(3))
    cv2.imwrite(str(tmp_path / "frame.png"), frame[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "enrolled.png"), faces[0][1][1][:, :, ::-1])
    model = ["--model", str(tmp_path / "bundle")]
    compared = runner.invoke(main, ["compare", str(DAISY), str(tmp_path / "frame.png"), *model,
                                    "--explain", str(tmp_path / "why.png")])
    assert compared.exit_code == 4 and "NO MATCH (no face found in image a)" in compared.output, compared.output
    assert (tmp_path / "why.png").is_file()
    compared = runner.invoke(main, ["compare", str(tmp_path / "frame.png"), str(tmp_path / "enrolled.png"), *model])
    assert compared.exit_code == 5 and "face in a:" in compared.output, compared.output  # uncalibrated
    db = str(tmp_path / "door.db")
    assert runner.invoke(main, ["enroll", db, "s21", str(tmp_path / "enrolled.png"), *model]).exit_code == 0
    refused = runner.invoke(main, ["enroll", db, "daisy", str(DAISY), *model])
    assert refused.exit_code == 1 and "no face found in image" in refused.output
    verified = runner.invoke(main, ["verify", db, "s21", str(DAISY), *model, "--threshold", "0.5"])
    assert verified.exit_code == 4 and "REJECTED: no face found" in verified.output, verified.output
    every = runner.invoke(main, ["identify", db, str(tmp_path / "frame.png"), *model, "--threshold", "0.5",
                                 "--all-faces", "--json"])
    assert every.exit_code in (0, 4) and '"faces": [' in every.output and '"box"' in every.output, every.output
    whole = runner.invoke(main, ["identify", db, str(DAISY), *model, "--threshold", "0.5", "--detector", "none"])
    assert whole.exit_code == 1 and "enrolled with detector 'yunet'" in whole.output
    people = tmp_path / "people"
    for person, photos in faces:
        (people / person).mkdir(parents=True)
        for k, photo in enumerate(photos):
            cv2.imwrite(str(people / person / f"{k}.png"), photo[:, :, ::-1])
    shutil.copy(DAISY, people / "s22" / "daisy.jpg")
    calibrated = runner.invoke(main, ["calibrate", "--model", str(tmp_path / "bundle"), "--data", str(people),
                                      "--force"])
    assert calibrated.exit_code == 0, calibrated.output
    assert "6 images" in calibrated.output and "skipped 1 images: unreadable, or without a face" in calibrated.output
    calibration = read_manifest(tmp_path / "bundle").calibration
    assert calibration["skipped"][0].startswith("image without a face") and "daisy.jpg" in calibration["skipped"][0]
    assert calibration["detector"].startswith("yunet:")


def test_crop_faces_writes_the_crops_a_detector_bundle_embeds(yunet, tmp_path):
    from edgedml.cli import main

    orl = data_path("orl_faces")
    source = tmp_path / "people"
    for person in ("s21", "s22"):
        (source / person).mkdir(parents=True)
        for photo in ("1.pgm", "2.pgm"):
            shutil.copy(orl / person / photo, source / person / photo)
    shutil.copy(DAISY, source / "s22" / "daisy.jpg")
    runner = CliRunner()
    done = runner.invoke(main, ["crop-faces", str(source), str(tmp_path / "crops"), "--detector", yunet,
                                "--margin", "0.1"])
    assert done.exit_code == 0, done.output
    assert "4 face crops of 2 classes" in done.output and "no face found: " in done.output
    crops = sorted(p.relative_to(tmp_path / "crops").as_posix() for p in (tmp_path / "crops").rglob("*.png"))
    assert crops == ["s21/1.png", "s21/2.png", "s22/1.png", "s22/2.png"]
    detector = detection.load_detector(yunet, DetectorSettings(margin=0.1))
    photo = load_image(orl / "s21" / "1.pgm")
    want = face_view(photo, detector.detect(photo)[0], 0.1, True).pixels
    assert np.array_equal(load_image(tmp_path / "crops" / "s21" / "1.png"), want)  # what Matcher would embed
    inside = runner.invoke(main, ["crop-faces", str(source), str(source / "crops"), "--detector", yunet])
    assert inside.exit_code == 1 and "inside the source" in inside.output


def test_the_face_stage_runs_with_torch_and_onnx_blocked(yunet, small_bundle):
    from conftest import run_blocked

    _, bundle = small_bundle
    out = run_blocked("from edgedml.runtime import Matcher\n"
                      f"m = Matcher({str(bundle)!r}, detector={yunet!r})\n"
                      f"r = m.explain({str(DAISY)!r}, {str(SHIPPED / 'pansy.jpg')!r})\n"
                      "r.render()\n"
                      "print(r.reason)\n")
    assert "no face found in image a and image b" in out
