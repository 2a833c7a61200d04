"""dlib's 150×150 face chip cut from YuNet's landmarks (edgedml.runtime.faces.roi.dlib_chip_view)."""


import numpy as np
import pytest
from conftest import ROOT, YUNET, data_path, run_blocked

from edgedml.runtime.faces.detection import Face
from edgedml.runtime.faces.dlib_chip import DLIB_CHIP_SIZE, YUNET_POINTS_IN_DLIB_CHIP, YUNET_POINTS_SPREAD
from edgedml.runtime.faces.roi import dlib_chip_transform, dlib_chip_view


def similarity(angle: float, scale: float, shift) -> np.ndarray:
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[cos, -sin, shift[0]], [sin, cos, shift[1]]])


def apply(affine: np.ndarray, points) -> np.ndarray:
    return np.asarray(points, np.float64) @ affine[:, :2].T + affine[:, 2]


def face_at(points: np.ndarray) -> Face:
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    return Face((x0 - 10, y0 - 20, x1 - x0 + 20, y1 - y0 + 30), tuple(map(tuple, points)), 0.9)


def least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Closed-form least-squares similarity src → dst (Umeyama, no reflection): the reference."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    a = (s * d).sum() / (s ** 2).sum()
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / (s ** 2).sum()
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (md - linear @ ms)[:, None]])


def photo_face() -> tuple[np.ndarray, Face]:
    from edgedml.runtime.faces.detection import YuNetDetector
    from edgedml.runtime.inference.image import load_image

    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET} (see ../shared/models/README.md)")
    rgb = load_image(data_path("yalefaces") / "subject10" / "normal.png")
    faces = YuNetDetector(YUNET).detect(rgb)
    assert len(faces) == 1
    return rgb, faces[0]


def test_template_is_a_face_in_the_chip():
    """The generated template: five distinct points inside the chip, eyes above nose above mouth,
    the person's right eye and mouth corner on the image's left."""
    t = YUNET_POINTS_IN_DLIB_CHIP
    assert t.shape == (5, 2) and DLIB_CHIP_SIZE == 150 and YUNET_POINTS_SPREAD.shape == (5,)
    assert ((t > 0) & (t < 149)).all()
    assert t[0, 0] < t[2, 0] < t[1, 0] and t[3, 0] < t[2, 0] < t[4, 0]
    assert max(t[0, 1], t[1, 1]) < t[2, 1] < min(t[3, 1], t[4, 1])


def test_warp_sends_known_landmarks_onto_the_template_and_maps_back():
    """Landmarks placed by a known similarity from the template: the warp is its exact inverse,
    the chip's pixels come from where ``to_frame`` says, and the chip is RGB uint8 150×150."""
    to_frame = similarity(0.3, 1.4, (120.0, 60.0))  # chip → frame
    landmarks = apply(to_frame, YUNET_POINTS_IN_DLIB_CHIP)
    frame = np.zeros((480, 640, 3), np.uint8)
    marks = np.array([[30.0, 30.0], [120.0, 40.0], [75.0, 130.0]])  # chip pixels
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for (x, y), colour in zip(apply(to_frame, marks), colours):
        frame[int(round(y)) - 3:int(round(y)) + 4, int(round(x)) - 3:int(round(x)) + 4] = colour
    face = face_at(landmarks)

    view = dlib_chip_view(frame, face)
    assert view.pixels.shape == (150, 150, 3) and view.pixels.dtype == np.uint8 and view.face is face
    np.testing.assert_allclose(view.to_frame, to_frame, atol=1e-6)
    forward = dlib_chip_transform(face)
    np.testing.assert_allclose(apply(forward, landmarks), YUNET_POINTS_IN_DLIB_CHIP, atol=1e-6)
    np.testing.assert_allclose(apply(view.to_frame, apply(forward, [[0, 0], [149, 149], [10, 80]])),
                               [[0, 0], [149, 149], [10, 80]], atol=1e-9)
    np.testing.assert_allclose(view.points_to_frame(YUNET_POINTS_IN_DLIB_CHIP), landmarks, atol=1e-6)
    for (x, y), colour in zip(marks.astype(int), colours):
        assert tuple(view.pixels[y, x]) == colour
    assert view.pixels[:, :, :].sum() < 3 * 255 * 3 * 49  # nothing but the three marks (and their blur)


def test_real_photo_warp_is_the_least_squares_similarity():
    """On a real photo (YuNet's five points do not fit the template exactly): the warp is the
    least-squares similarity onto the template, its residual is within the template's spread,
    and ``to_frame`` is the warp's inverse."""
    rgb, face = photo_face()
    view = dlib_chip_view(rgb, face)
    points = np.array(face.landmarks)
    forward = dlib_chip_transform(face)
    np.testing.assert_allclose(forward, least_squares_similarity(points, YUNET_POINTS_IN_DLIB_CHIP), atol=1e-4)
    residual = np.linalg.norm(apply(forward, points) - YUNET_POINTS_IN_DLIB_CHIP, axis=1)
    assert residual.max() < 3 * YUNET_POINTS_SPREAD.max()
    composed = view.to_frame[:, :2] @ forward[:, :2]
    np.testing.assert_allclose(composed, np.eye(2), atol=1e-9)
    np.testing.assert_allclose(view.points_to_frame(apply(forward, points)), points, atol=1e-6)
    assert view.pixels.shape == (150, 150, 3) and view.pixels.dtype == np.uint8 and view.pixels.std() > 20


def test_large_face_is_shrunk_before_the_warp():
    """A photo enlarged 5× gives (nearly) the chip of the photo itself: the shrink keeps the chip
    from aliasing, and the map back lands on the enlarged frame."""
    import cv2

    rgb, face = photo_face()
    k = 5
    big = cv2.resize(rgb, (rgb.shape[1] * k, rgb.shape[0] * k), interpolation=cv2.INTER_CUBIC)

    def scale(p):
        return (np.asarray(p, np.float64) + 0.5) * k - 0.5  # pixel centres

    big_face = Face(tuple(np.array(face.box) * k), tuple(map(tuple, scale(face.landmarks))), face.score)
    small, large = dlib_chip_view(rgb, face), dlib_chip_view(big, big_face)
    np.testing.assert_allclose(large.to_frame[:, :2], small.to_frame[:, :2] * k, atol=1e-5)
    np.testing.assert_allclose(large.points_to_frame([[20, 30], [130, 110]]),
                               scale(small.points_to_frame([[20, 30], [130, 110]])), atol=1e-3)
    assert np.abs(large.pixels.astype(int) - small.pixels.astype(int)).mean() < 1.5


def test_large_face_does_not_alias():
    """A face 6× the chip on pixel noise: each chip pixel averages the frame pixels it covers
    (grey), where sampling the frame directly would keep the noise."""
    import cv2

    frame = np.random.default_rng(0).integers(0, 2, (1200, 1200, 1), np.uint8).repeat(3, 2) * 255
    face = face_at(apply(similarity(0.1, 6.0, (150.0, 120.0)), YUNET_POINTS_IN_DLIB_CHIP))
    view = dlib_chip_view(frame, face)
    naive = cv2.warpAffine(frame, cv2.invertAffineTransform(view.to_frame), (150, 150), flags=cv2.INTER_LINEAR)
    assert naive.std() > 60 and view.pixels.std() < 30
    assert abs(view.pixels.mean() - 127.5) < 10


def test_degenerate_landmarks_are_refused():
    from edgedml.errors import EdgeDMLError

    with pytest.raises(EdgeDMLError, match="do not define an alignment"):
        dlib_chip_transform(Face((0, 0, 50, 50), ((10.0, 10.0),) * 5, 0.9))


def test_dlib_chip_runs_without_torch():
    out = run_blocked(
        "import numpy as np\n"
        "from edgedml.runtime.faces.detection import Face\n"
        "from edgedml.runtime.faces.dlib_chip import YUNET_POINTS_IN_DLIB_CHIP as T\n"
        "from edgedml.runtime.faces.roi import dlib_chip_view\n"
        "pts = T * 1.2 + 40\n"
        "face = Face((40, 40, 180, 180), tuple(map(tuple, pts)), 0.9)\n"
        "view = dlib_chip_view(np.full((300, 300, 3), 90, np.uint8), face)\n"
        "assert view.pixels.shape == (150, 150, 3)\n"
        "assert 'dlib' not in sys.modules\n"
        "print(round(float(view.to_frame[0, 0]), 3))\n")
    assert out.strip() == "1.2"


@pytest.mark.slow
def test_template_against_dlib_itself():
    """dlib (the oracle): the replica of dlib's chip transform reproduces ``get_face_chip``, and on
    photos of people the template was not derived from, YuNet's points land in dlib's chip within
    the template's spread and dlib's descriptor barely changes between the two chips."""
    dlib = pytest.importorskip("dlib")
    import sys

    import cv2

    sys.path.insert(0, str(ROOT / "scripts"))
    from derive_dlib_chip_points import analyse, dlib_tools

    from edgedml.models.dlib_files import dlib_model_file
    from edgedml.runtime.faces.detection import YuNetDetector

    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET}")
    detector, (hog, predictor) = YuNetDetector(YUNET), dlib_tools()
    net = dlib.face_recognition_model_v1(str(dlib_model_file()))
    paths = [data_path("orl_faces") / f"s{i}" / "1.pgm" for i in (25, 31, 38)]
    paths += [data_path("yalefaces") / f"subject{i}" / "normal.png" for i in (11, 14)]
    distances, cosines = [], []
    for path in paths:
        found = analyse(path, detector, hog, predictor)
        assert "miss" not in found, path
        own = dlib.get_face_chip(found["rgb"], found["shape"], size=150, padding=0.25)
        replica = cv2.warpAffine(found["rgb"], found["to_chip"], (150, 150), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.ones(found["rgb"].shape[:2], np.uint8), found["to_chip"], (150, 150)) > 0
        inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # away from the photo's edge
        assert (np.abs(own.astype(int) - replica.astype(int)).max(2)[inside] <= 1).mean() > 0.99
        distances.append(np.linalg.norm(found["points"] - YUNET_POINTS_IN_DLIB_CHIP, axis=1))
        a = np.array(net.compute_face_descriptor(own))
        b = np.array(net.compute_face_descriptor(dlib_chip_view(found["rgb"], found["face"]).pixels))
        cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert np.median(distances, axis=0).max() < 2 * YUNET_POINTS_SPREAD.max()
    assert min(cosines) > 0.95


def test_evidence_on_the_chip_lands_on_the_frame():
    """A region map over the chip (network input = the chip, stretched at 150 px) is drawn where
    the chip's region is in the frame: the explanation path of any View."""
    from edgedml.preprocessing import PreprocessSpec
    from edgedml.runtime.matching.explain import region_centre, to_image

    to_frame = similarity(-0.4, 1.7, (200.0, 90.0))
    frame = np.zeros((520, 600, 3), np.uint8)
    view = dlib_chip_view(frame, face_at(apply(to_frame, YUNET_POINTS_IN_DLIB_CHIP)))
    spec = PreprocessSpec(size=150, resize="stretch")
    region_map = np.zeros((5, 5), np.float32)
    region_map[1, 3] = 1.0
    heat = to_image(region_map, view, frame.shape, spec)
    centre = apply(to_frame, [[(3 + 0.5) * 30, (1 + 0.5) * 30]])[0]  # the known chip → frame map
    ys, xs = np.nonzero(heat > 0.5 * heat.max())
    assert np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]) < 2.0
    assert np.hypot(*(np.array(region_centre(8, 5, view, spec)) - centre)) < 1.0


# --- the dlib chip as a detector setting: export, Matcher, gallery, calibration, crop-faces -------

@pytest.fixture(scope="module")
def chip_bundle(tmp_path_factory):
    """(bundle, export's output): a tiny random model exported by the CLI with YuNet and
    ``--chip dlib`` (any backbone may ask for the chip; the network here only needs to run)."""
    import torch
    from click.testing import CliRunner

    from edgedml.cli import main
    from edgedml.models import ModelConfig, build_model, save_checkpoint

    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET} (see ../shared/models/README.md)")
    root = tmp_path_factory.mktemp("chip")
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig(image_size=64, grid=2, upsample=4), pretrained=False),
                    root / "m.safetensors")
    done = CliRunner().invoke(main, ["export", "--checkpoint", str(root / "m.safetensors"), "--out",
                                     str(root / "bundle"), "--detector", f"yunet:{YUNET}", "--chip", "dlib"])
    assert done.exit_code == 0, done.output
    return root / "bundle", done.output


@pytest.mark.slow  # chip_bundle: a full export by the CLI
def test_export_records_the_chip_and_the_summary_names_it(chip_bundle):
    from edgedml.bundle import read_manifest

    bundle, output = chip_bundle
    assert read_manifest(bundle).detector["settings"]["chip"] == "dlib"
    assert "chip dlib 150×150)" in output and "margin" not in output


@pytest.mark.slow  # chip_bundle: a full export by the CLI
def test_the_matcher_embeds_dlib_chips_that_map_back_onto_the_face(chip_bundle):
    """A bundle exported with the dlib chip: the Matcher's views are 150×150 chips whose map back
    to the frame sends the chip's landmark template onto YuNet's landmarks of the face (within the
    fit's residual, a few pixels), and its explanations are drawn on the frame."""
    from edgedml.runtime.matching.matcher import Matcher

    bundle, _ = chip_bundle
    matcher = Matcher(bundle)
    assert matcher.detector.settings.chip == "dlib" and matcher.cropping.endswith(":chip=dlib")
    photos = [data_path("orl_faces") / "s21" / "1.pgm", data_path("orl_faces") / "s30" / "4.pgm",
              data_path("yalefaces") / "subject10" / "normal.png"]
    for photo in photos:
        rgb, views = matcher.views(photo)
        assert len(views) == 1 and views[0].pixels.shape == (150, 150, 3), photo
        face = views[0].face
        misfit = np.linalg.norm(views[0].points_to_frame(YUNET_POINTS_IN_DLIB_CHIP) - np.array(face.landmarks), axis=1)
        assert misfit.max() < min(4.0, 0.06 * face.box[2]), (photo, misfit)
        np.testing.assert_array_equal(views[0].pixels, dlib_chip_view(rgb, face).pixels)
    result = matcher.explain(photos[0], photos[1], threshold=1.0)
    assert result.score is not None and result.face_a is not None and result.reason is None
    picture = result.render()
    assert picture.ndim == 3 and picture.shape[2] == 3
    assert len(matcher.embed(photos)) == 3


@pytest.mark.slow  # chip_bundle: a full export by the CLI
def test_the_dlib_chip_face_stage_runs_with_torch_and_onnx_blocked(chip_bundle):
    bundle, _ = chip_bundle
    photo = data_path("orl_faces") / "s21" / "1.pgm"
    out = run_blocked("from edgedml.runtime import Matcher\n"
                      f"m = Matcher({str(bundle)!r})\n"
                      f"features, views = m.embed_faces({str(photo)!r})\n"
                      "print(m.detector.settings.chip, views[0].pixels.shape, len(features))\n")
    assert out.strip() == "dlib (150, 150, 3) 1"


@pytest.mark.slow  # chip_bundle: a full export by the CLI
def test_a_gallery_and_a_calibration_of_square_crops_refuse_dlib_chips(chip_bundle, tmp_path):
    """The same bundle and embedder, cut two ways: a gallery enrolled from square crops will not
    open for a matcher that cuts dlib chips (nor the reverse), so nothing is decided; a threshold
    calibrated on square crops does not decide for dlib chips."""
    import shutil

    from edgedml.bundle import read_manifest
    from edgedml.runtime.assurance.thresholds import CalibrationMismatch
    from edgedml.runtime.faces.detection import DetectorSettings
    from edgedml.runtime.gallery.gallery import Gallery, GalleryError
    from edgedml.runtime.matching.matcher import Matcher

    bundle, _ = chip_bundle
    orl = data_path("orl_faces")
    square, chip = Matcher(bundle, detector_settings=DetectorSettings()), Matcher(bundle)
    assert square.cropping.endswith(":margin=0.05:align=1") and square.cropping.split(":")[:2] == \
        chip.cropping.split(":")[:2]
    with Gallery(tmp_path / "square.db", square) as gallery:
        gallery.enroll("s21", [orl / "s21" / "1.pgm"])
    with Gallery(tmp_path / "chip.db", chip) as gallery:
        gallery.enroll("s21", [orl / "s21" / "1.pgm"])
    with pytest.raises(GalleryError, match=r"enrolled with detector 'yunet' \(yunet:\w+:margin=0.05:align=1\) and "
                                           r"this matcher uses 'yunet' \(yunet:\w+:chip=dlib\)"):
        Gallery(tmp_path / "square.db", chip)
    with pytest.raises(GalleryError, match=r":chip=dlib\) and this matcher uses 'yunet' \(yunet:\w+:margin=0.05"):
        Gallery(tmp_path / "chip.db", square)
    with Gallery(tmp_path / "square.db", square, threshold=1.0) as gallery:
        assert gallery.decisions(5) == []  # the refused openings decided nothing
        assert gallery.verify(orl / "s21" / "2.pgm", "s21").score is not None

    copy = tmp_path / "calibrated"
    shutil.copytree(bundle, copy)
    read_manifest(copy).update(thresholds={"default": {"threshold": 1.5, "from": "far_0.001"}},
                               calibration={"detector": square.cropping, "precision": "fp32", "impostor_min": -1.0})
    dlib_door = Matcher(copy)
    assert dlib_door.threshold is None and ":chip=dlib)" in dlib_door.threshold_refused
    with pytest.raises(CalibrationMismatch, match="calibrated on images cut by detector 'yunet'"):
        dlib_door.decision_threshold()
    assert Matcher(copy, detector_settings=DetectorSettings()).threshold == 1.5  # the cropping it was measured on


def test_export_picks_the_chip_the_backbone_works_on():
    """No --chip: dlib's chip for a dlib_resnet model, the square crop otherwise; a square crop
    for dlib_resnet, or a chip without a detector, is refused."""
    from edgedml.errors import ConfigError
    from edgedml.export.options import ExportOptions, face_settings
    from edgedml.models import ModelConfig

    spec = f"yunet:{YUNET}"
    dlib, lite = ModelConfig(backbone="dlib_resnet"), ModelConfig(image_size=64)
    assert face_settings(dlib, ExportOptions(detector=spec)).chip == "dlib"
    assert face_settings(dlib, ExportOptions(detector=spec, chip="dlib")).chip == "dlib"
    assert face_settings(lite, ExportOptions(detector=spec)).chip == "square"
    assert face_settings(lite, ExportOptions(detector=spec, chip="dlib")).chip == "dlib"
    assert face_settings(lite, ExportOptions(detector=spec, detector_settings={"chip": "dlib"})).chip == "dlib"
    with pytest.raises(ConfigError, match="works only on the face crop it was trained on .chip dlib., not on square"):
        face_settings(dlib, ExportOptions(detector=spec, chip="square"))
    with pytest.raises(ConfigError, match="not on square"):
        face_settings(dlib, ExportOptions(detector=spec, detector_settings={"chip": "square", "min_size": 40}))
    with pytest.raises(ConfigError, match="no detector is exported: pass --detector"):
        ExportOptions(chip="dlib")
    with pytest.raises(ConfigError, match="unknown face chip 'round'"):
        ExportOptions(detector=spec, chip="round")
    with pytest.raises(ConfigError, match="disagree"):
        ExportOptions(detector=spec, chip="dlib", detector_settings={"chip": "square"})


def test_crop_faces_cuts_dlib_chips_and_records_them(tmp_path):
    import json
    import shutil

    from click.testing import CliRunner

    from edgedml.cli import main
    from edgedml.runtime.faces.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.inference.image import load_image

    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET} (see ../shared/models/README.md)")
    orl = data_path("orl_faces")
    for person in ("s21", "s22"):
        (tmp_path / "people" / person).mkdir(parents=True)
        shutil.copy(orl / person / "1.pgm", tmp_path / "people" / person / "1.pgm")
    done = CliRunner().invoke(main, ["crop-faces", str(tmp_path / "people"), str(tmp_path / "chips"), "--detector",
                                     f"yunet:{YUNET}", "--chip", "dlib"])
    assert done.exit_code == 0, done.output
    assert "2 face crops of 2 classes" in done.output and "'chip': 'dlib'" in done.output
    assert "margin" not in done.output
    record = json.loads((tmp_path / "chips" / "crop_faces.json").read_text())
    assert record["settings"] == {"chip": "dlib"} and sorted(record["files"]) == ["s21/1.png", "s22/1.png"]
    photo = load_image(orl / "s21" / "1.pgm")
    detector = YuNetDetector(YUNET, DetectorSettings(chip="dlib"))
    chip = load_image(tmp_path / "chips" / "s21" / "1.png")
    assert chip.shape == (150, 150, 3)
    np.testing.assert_array_equal(chip, dlib_chip_view(photo, detector.detect(photo)[0]).pixels)  # what Matcher embeds
    square = CliRunner().invoke(main, ["crop-faces", str(tmp_path / "people"), str(tmp_path / "squares"),
                                       "--detector", f"yunet:{YUNET}", "--margin", "0.1"])
    assert square.exit_code == 0, square.output
    assert json.loads((tmp_path / "squares" / "crop_faces.json").read_text())["settings"] == {
        "chip": "square", "margin": 0.1, "align": True}


@pytest.mark.slow
def test_a_dlib_resnet_bundle_embeds_its_chips_as_dlib_does(tmp_path):
    """End to end on the device path (about 40 s: the export): a dlib_resnet model exported with
    YuNet and no chip asked for cuts dlib's chip, and the Matcher's global embedding of each face
    is dlib's own descriptor of the very chip the Matcher cut (normalised), to ≤ 1e-4."""
    dlib = pytest.importorskip("dlib")
    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.models import ModelConfig, build_model
    from edgedml.models.dlib_files import dlib_model_file
    from edgedml.runtime.matching.matcher import Matcher

    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET}")
    net = dlib.face_recognition_model_v1(str(dlib_model_file()))
    model = build_model(ModelConfig(backbone="dlib_resnet")).eval()
    manifest = export_bundle(model, tmp_path / "bundle", ExportOptions(validation_images=2, detector=f"yunet:{YUNET}"),
                             log=lambda m: None)
    assert manifest.detector["settings"]["chip"] == "dlib"
    matcher = Matcher(tmp_path / "bundle", backend="onnxruntime")
    orl = data_path("orl_faces")
    photos = [orl / f"s{i}" / f"{k}.pgm" for i in range(21, 41, 4) for k in (1, 6)]
    for photo in photos:
        features, views = matcher.embed_faces(photo, 1)
        assert views and views[0].pixels.shape == (150, 150, 3), photo
        own = np.array(net.compute_face_descriptor(views[0].pixels), np.float32)
        np.testing.assert_allclose(features.embedding[0], own / np.linalg.norm(own), atol=1e-4, err_msg=str(photo))
    # another detector file is cut as the bundle records; square crops are never fed to dlib's network
    from edgedml.errors import ConfigError
    from edgedml.runtime.faces.detection import DetectorSettings

    assert Matcher(tmp_path / "bundle", detector=f"yunet:{YUNET}").detector.settings.chip == "dlib"
    with pytest.raises(ConfigError, match="works only on the dlib face chip"):
        Matcher(tmp_path / "bundle", detector=f"yunet:{YUNET}", detector_settings=DetectorSettings(chip="square"))
    with pytest.raises(ConfigError, match="works only on the dlib face chip"):
        Matcher(tmp_path / "bundle", detector_settings=DetectorSettings(chip="square"))
