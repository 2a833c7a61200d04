"""The samples run headless on a short video made from real images."""

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, yalefaces_dir_module, small_bundle):
    root = tmp_path_factory.mktemp("samples")
    (root / "bundle").symlink_to(small_bundle[1], target_is_directory=True)
    people = root / "people"
    for subject in ("subject01", "subject02", "subject03"):
        (people / subject).mkdir(parents=True)
        for photo in ("normal.png", "happy.png"):
            shutil.copy(yalefaces_dir_module / subject / photo, people / subject / photo)
    video = root / "door.avi"
    frames = [cv2.imread(str(yalefaces_dir_module / s / p)) for s, p in
              [("subject01", "sleepy.png"), ("subject01", "wink.png"), ("subject02", "sad.png"),
               ("subject01", "surprised.png")]]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return root, people, video


@pytest.fixture(scope="module")
def yalefaces_dir_module(tmp_path_factory):
    """Yale Faces from the shared data; where it is absent, a stand-in with the same layout made
    from the shipped photos (three "subjects", six varied pictures each), so that the samples are
    tested on every machine."""
    from conftest import SHIPPED, data_path_or_none

    faces = data_path_or_none("yalefaces")
    if faces:
        return faces
    root = tmp_path_factory.mktemp("standin_faces")
    photos = [cv2.resize(cv2.imread(str(SHIPPED / name)), (240, 320), interpolation=cv2.INTER_AREA)
              for name in ("daisy_1.jpg", "pansy.jpg", "daisy_2.jpg")]
    for number, photo in enumerate(photos, 1):
        (root / f"subject{number:02d}").mkdir()
        for k, name in enumerate(("normal", "happy", "sleepy", "wink", "sad", "surprised")):
            variant = cv2.convertScaleAbs(photo, alpha=1.0 - 0.06 * k, beta=4 * k)
            cv2.imwrite(str(root / f"subject{number:02d}" / f"{name}.png"), variant[:, ::-1] if k % 2 else variant)
    return root


def run(script, *args, cwd):
    done = subprocess.run([sys.executable, str(SAMPLES / script), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_access_control_enrolls_verifies_and_logs_evidence(setup):
    root, people, video = setup
    out = run("access_control.py", "--model", root / "bundle", "--gallery", root / "door.db", "--enroll", people,
              "--claim", "subject01", "--source", video, "--evidence-dir", root / "evidence", "--threshold", "1.0",
              cwd=root)
    assert "enrolled subject01" in out and out.count("frame ") == 4
    with Gallery(root / "door.db", Matcher(root / "bundle")) as g:
        logged = g.decisions()
    assert len(logged) == 4 and all(d.claimed == "subject01" for d in logged)
    assert all(Path(d.evidence).is_file() for d in logged)


def test_camera_app_writes_an_annotated_video(setup):
    root, people, video = setup
    db = root / "cam.db"
    with Gallery(db, Matcher(root / "bundle")) as g:
        for person in sorted(people.iterdir()):
            g.enroll(person.name, sorted(str(p) for p in person.iterdir()))
    out = run("camera_app.py", "--model", root / "bundle", "--gallery", db, "--source", video,
              "--headless", root / "out.avi", "--threshold", "1.0", cwd=root)
    assert "'frames': 4" in out
    capture = cv2.VideoCapture(str(root / "out.avi"))
    written = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        written.append(frame)
    h, w = cv2.imread(str(people / "subject01" / "normal.png")).shape[:2]
    assert len(written) == 4
    assert written[0].shape[1] == w and abs(written[0].shape[0] - h) <= 1  # MJPG stores even heights
    assert written[0][:54].mean() < written[0][60:].mean()  # the dark result banner is drawn


def test_camera_loop_survives_a_bad_frame(setup):
    root, people, _ = setup
    sys.path.insert(0, str(SAMPLES))
    try:
        import camera_app
    finally:
        sys.path.remove(str(SAMPLES))
    with Gallery(root / "bad.db", Matcher(root / "bundle"), threshold=1.0) as g:
        g.enroll("subject01", [str(people / "subject01" / "normal.png")])
        frame, error = camera_app.annotate(np.zeros((3, 3, 3), np.uint8), g, fps=0.0)
        assert error and "at least" in error
        frame, error = camera_app.annotate(cv2.imread(str(people / "subject01" / "happy.png")), g, fps=0.0)
        assert error is None


def test_explain_pair(setup, tmp_path):
    root, _, _ = setup
    out = run("explain_pair.py", SAMPLES / "images" / "daisy_1.jpg", SAMPLES / "images" / "daisy_2.jpg",
              "--model", root / "bundle", "--out", tmp_path / "why.png", cwd=tmp_path)
    assert "score" in out and cv2.imread(str(tmp_path / "why.png")) is not None


def test_samples_exit_non_zero_with_a_reason_when_nothing_can_be_decided(setup, tmp_path):
    root, people, video = setup

    def fails(script, *args):
        done = subprocess.run([sys.executable, str(SAMPLES / script), *map(str, args)], capture_output=True,
                              text=True, cwd=root, timeout=300)
        assert done.returncode != 0, done.stdout
        return done.stderr

    db = tmp_path / "door.db"
    common = ["--model", root / "bundle", "--gallery", db]
    assert "does not exist" in fails("camera_app.py", *common, "--source", tmp_path / "missing.avi",
                                     "--threshold", "1.0", "--headless", tmp_path / "o.avi")
    assert "no decision threshold" in fails("camera_app.py", *common, "--source", video, "--headless",
                                            tmp_path / "o.avi")
    assert "not enrolled" in fails("access_control.py", *common, "--enroll", people, "--claim", "nobody",
                                   "--source", video, "--threshold", "1.0", "--evidence-dir", tmp_path / "e")


def test_access_control_enrolls_new_photos_of_people_already_enrolled(setup, tmp_path):
    root, people, video = setup
    staff = tmp_path / "staff"
    shutil.copytree(people, staff)
    args = ["--model", root / "bundle", "--gallery", tmp_path / "door.db", "--enroll", staff, "--claim", "subject01",
            "--source", video, "--threshold", "1.0", "--evidence-dir", tmp_path / "e", "--max-frames", "1"]
    run("access_control.py", *args, cwd=root)
    shutil.copy(staff / "subject02" / "happy.png", staff / "subject02" / "again.png")
    out = run("access_control.py", *args, cwd=root)
    assert "enrolled subject02: 1 new photos (2 already enrolled)" in out and "enrolled subject01" not in out
    with Gallery(tmp_path / "door.db", Matcher(root / "bundle")) as g:
        assert g.identities()["subject02"] == 3


@pytest.fixture(scope="module")
def door_video(tmp_path_factory):
    """A door camera's view: ORL faces pasted into 640×480 photos, and one frame with nobody."""
    from conftest import benchmark_helper, data_path

    composites = benchmark_helper("composites")
    composite, fill_frame = composites.composite, composites.fill_frame
    from edgedml.runtime.inference.image import load_image

    yunet = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_detection_yunet_2026may.onnx"
    if not yunet.is_file():
        pytest.skip(f"the YuNet model is not at {yunet}")
    orl = data_path("orl_faces")
    root = tmp_path_factory.mktemp("door")
    people = root / "people"
    for subject in ("s21", "s22"):
        (people / subject).mkdir(parents=True)
        for photo in ("1.pgm", "3.pgm"):
            shutil.copy(orl / subject / photo, people / subject / photo)
    scene = load_image(SAMPLES / "images" / "daisy_2.jpg")
    rng = np.random.default_rng(0)
    frames = [composite(load_image(orl / s / p), scene, rng)[0] for s, p in
              [("s21", "5.pgm"), ("s21", "7.pgm"), ("s22", "5.pgm")]] + [fill_frame(scene)]
    video = root / "door.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return root, people, video, f"yunet:{yunet}"


def _read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _box_pixels(annotated, source):
    """Pixels below the banner that the sample changed to the green (accepted) or red (denied)
    it draws boxes with."""
    b, g, r = (annotated[60:, :, i].astype(int) for i in range(3))
    changed = np.abs(annotated[60:].astype(int) - source[60:].astype(int)).sum(axis=2) > 150
    return int((changed & (((g > 150) & (r < 90) & (b < 90)) | ((r > 170) & (g < 90) & (b < 90)))).sum())


def test_access_control_with_a_detector_boxes_faces_and_denies_an_empty_frame(door_video, small_bundle):
    root, people, video, detector = door_video
    out = run("access_control.py", "--model", small_bundle[1], "--gallery", root / "door.db", "--enroll", people,
              "--claim", "s21", "--source", video, "--evidence-dir", root / "evidence", "--threshold", "1.0",
              "--detector", detector, "--annotated", root / "annotated.avi", cwd=root)
    assert out.count("frame ") == 4 and "frame 3: DENIED (no face found)" in out, out
    with Gallery(root / "door.db", Matcher(small_bundle[1], detector=detector)) as g:
        logged = g.decisions()
    assert len(logged) == 4 and all(Path(d.evidence).is_file() for d in logged)
    assert sum("face" in d.details for d in logged) == 3 and logged[0].reason == "no face found"
    written, source = _read_video(root / "annotated.avi"), _read_video(video)
    boxes = [_box_pixels(a, s) for a, s in zip(written, source)]
    assert len(written) == 4 and min(boxes[:3]) > 100 and boxes[3] < 20, boxes


def test_camera_app_with_a_detector_boxes_every_face(door_video, small_bundle):
    root, people, video, detector = door_video
    db = root / "cam.db"
    with Gallery(db, Matcher(small_bundle[1], detector=detector)) as g:
        for person in sorted(people.iterdir()):
            g.enroll(person.name, sorted(str(p) for p in person.iterdir()))
    out = run("camera_app.py", "--model", small_bundle[1], "--gallery", db, "--source", video, "--detector", detector,
              "--headless", root / "out.avi", "--threshold", "1.0", cwd=root)
    assert "'frames': 4" in out and "'skipped': 0" in out, out
    written, source = _read_video(root / "out.avi"), _read_video(video)
    boxes = [_box_pixels(a, s) for a, s in zip(written, source)]
    assert len(written) == 4 and min(boxes[:3]) > 100 and boxes[3] < 20, boxes  # no face: no box


def test_access_control_runs_unchanged_on_a_fleet_gallery(setup, fleet_url):
    root, people, video = setup
    out = run("access_control.py", "--model", root / "bundle", "--gallery", fleet_url, "--door", "lab-2", "--enroll",
              people, "--claim", "subject01", "--source", video, "--evidence-dir", root / "fleet_evidence",
              "--threshold", "1.0", cwd=root)
    assert "enrolled subject01" in out and out.count("frame ") == 4
    with Gallery(fleet_url, Matcher(root / "bundle")) as g:
        assert set(g.identities()) == {p.name for p in people.iterdir()}
        logged = g.decisions()
    assert len(logged) == 4 and {d.door for d in logged} == {"lab-2"}
    assert all(d.claimed == "subject01" and Path(d.evidence).is_file() for d in logged)
