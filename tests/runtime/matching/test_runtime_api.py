"""The runtime API other face SDKs' users expect (issue 24, item 5): ONNX Runtime's providers and
threads, matchers and galleries that close, face objects, small typed results, quiet progress bars."""

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHIPPED, data_path

from edgedml.errors import ConfigError
from edgedml.runtime.inference.backends import DEFAULT_PROVIDERS, ort_providers
from edgedml.runtime.lifecycle import ClosedError

DAISY_1, DAISY_2, PANSY = SHIPPED / "daisy_1.jpg", SHIPPED / "daisy_2.jpg", SHIPPED / "pansy.jpg"


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text, text
    return text


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return small_bundle[1]



@pytest.fixture(scope="module")
def people():
    """Two ORL people, three photos each (frames of 92×112, one face each)."""
    root = data_path("orl_faces")
    folders = sorted(p for p in root.iterdir() if p.is_dir())[:2]
    return [(f.name, sorted(f.glob("*.pgm"))[:3]) for f in folders]


# --- providers and threads ----------------------------------------------------------------------

def test_providers_and_threads_reach_the_onnxruntime_sessions(bundle):
    from edgedml.runtime import Matcher

    with Matcher(bundle, providers=["CPUExecutionProvider"], threads=2) as m:
        for graph in ("embedder", "matcher"):
            session = m.backend.sessions[graph]
            assert session.get_providers() == ["CPUExecutionProvider"]
            assert session.get_session_options().intra_op_num_threads == 2
        assert m.backend.name == "onnxruntime" and "threads=2" in m.backend.describe()
    with Matcher(bundle, backend="onnxruntime", providers=["cpu"], threads=1) as m:  # short names, any case
        assert m.backend.sessions["embedder"].get_session_options().intra_op_num_threads == 1
        single = m.compare(DAISY_1, DAISY_2).score
    with Matcher(bundle, backend="onnxruntime") as m:  # ONNX Runtime's own thread default
        assert m.backend.sessions["embedder"].get_session_options().intra_op_num_threads == 0
        assert m.compare(DAISY_1, DAISY_2).score == pytest.approx(single, abs=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"providers": ["NoSuchExecutionProvider"]}, "unknown ONNX Runtime execution provider 'NoSuchExecutionProvider'"),
    ({"providers": ["cuda"]}, "CUDAExecutionProvider is not available"),
    ({"providers": ["TensorrtExecutionProvider"]}, "TensorrtExecutionProvider is not available"),
    ({"providers": "CPUExecutionProvider"}, "providers must be a non-empty list"),
    ({"providers": []}, "providers must be a non-empty list"),
    ({"providers": ["cpu", "CPUExecutionProvider"]}, "listed twice"),
    ({"threads": 0}, "threads must be a whole number ≥ 1"),
    ({"threads": -2}, "threads must be a whole number ≥ 1"),
    ({"threads": 1.5}, "threads must be a whole number ≥ 1"),
    ({"threads": True}, "threads must be a whole number ≥ 1"),
    ({"backend": "opencv", "threads": 2}, "cv2.setNumThreads"),
    ({"backend": "opencv", "providers": ["cpu"]}, "apply to the onnxruntime backend, not opencv"),
    ({"backend": "tensorrt", "threads": 2}, "apply to the onnxruntime backend, not tensorrt"),
])
def test_bad_providers_and_threads_are_refused_in_one_line(bundle, options, message):
    from edgedml.runtime import Matcher

    with pytest.raises(ConfigError) as exc:
        Matcher(bundle, **options)
    text = one_line(exc)
    assert message in text
    if "providers" in options and "backend" not in options:
        assert "available here: " in text and "CPUExecutionProvider" in text  # names the ones there are


def test_the_tensorrt_provider_runs_only_when_asked():
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers(None, everything, everything) == list(DEFAULT_PROVIDERS) == everything[1:]
    assert ort_providers(None, ["CPUExecutionProvider"], everything) == ["CPUExecutionProvider"]
    assert ort_providers(["tensorrt", "Cuda", "cpu"], everything, everything) == everything
    options = ort_providers([("cuda", {"device_id": 1}), "cpu"], everything, everything)
    assert options == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


def test_opencv_backend_leaves_the_process_thread_count_alone(bundle):
    import cv2

    from edgedml.runtime import Matcher

    before = cv2.getNumThreads()
    with Matcher(bundle, backend="opencv") as m:
        m.compare(DAISY_1, PANSY)
    assert cv2.getNumThreads() == before


# --- closing ------------------------------------------------------------------------------------

def test_a_matcher_closes_and_refuses_use_after_close(bundle):
    from edgedml.runtime import Matcher

    with Matcher(bundle) as m:
        assert m.compare(DAISY_1, DAISY_2).score is not None
    assert m.closed and m.backend.closed and m.backend.sessions == {}
    m.close()  # idempotent
    for call in (lambda: m.compare(DAISY_1, DAISY_2), lambda: m.embed(DAISY_1), lambda: m.explain(DAISY_1, PANSY),
                 lambda: m.views(DAISY_1)):
        with pytest.raises(ClosedError) as exc:
            call()
        assert "is closed; open a new one" in one_line(exc)
    with pytest.raises(ClosedError):
        with m:
            pass
    assert "closed" in repr(m)
    opencv = Matcher(bundle, backend="opencv")
    opencv.close()
    with pytest.raises(ClosedError):
        opencv.backend.run("embedder", {})


def test_a_gallery_closes_its_store_not_the_matcher(bundle, tmp_path):
    from edgedml.runtime import Gallery, Matcher

    with Matcher(bundle) as m:
        with Gallery(tmp_path / "g.db", m, threshold=0.5) as g:
            g.enroll("daisy", [DAISY_1])
        assert g.closed and not m.closed
        g.close()  # idempotent
        for call in (g.identities, lambda: g.verify(DAISY_2, "daisy"), lambda: g.enroll("x", [PANSY]),
                     g.decisions):
            with pytest.raises(ClosedError) as exc:
                call()
            assert "is closed" in one_line(exc)
        with Gallery(tmp_path / "g.db", m, threshold=0.5) as again:  # what was enrolled stayed
            assert again.identities() == {"daisy": 1}


def test_the_tensorrt_backend_frees_its_buffers_when_the_matcher_closes(monkeypatch, tmp_path):
    """The fake TensorRT (tests/fake_tensorrt.py): every cudaMalloc is freed by Matcher.close."""
    import fake_tensorrt as fake

    from edgedml.runtime import Matcher
    from edgedml.runtime.inference import tensorrt as t

    bundle = fake.make_fake_bundle(tmp_path / "bundle")
    _, memory = fake.install(monkeypatch, tmp_path)
    t.build_engines(bundle, "fp16", max_batch=4, max_candidates=5, log=lambda m: None)
    assert not memory
    with Matcher(bundle, backend="tensorrt", precision="fp16") as m:
        assert memory  # the engines' device buffers
        out = m.backend.run("embedder", {"images": np.zeros((2, 3, fake.S, fake.S), np.float32)})
        assert out["embedding"].shape[0] == 2
    assert not memory  # freed by close
    with pytest.raises(ClosedError):
        m.backend.run("embedder", {"images": np.zeros((1, 3, fake.S, fake.S), np.float32)})


# --- faces --------------------------------------------------------------------------------------

def test_faces_returns_face_objects_that_compare_and_the_gallery_take(bundle, yunet, people, tmp_path):
    from edgedml.runtime import FaceResult, Gallery, GalleryError, Matcher
    from edgedml.runtime.faces.detection import Face

    (p1, photos1), (p2, photos2) = people
    with Matcher(bundle, detector=yunet) as m:
        found = m.faces(photos1[0])
        assert len(found) >= 1 and all(isinstance(f, FaceResult) for f in found)
        face = found[0]
        assert isinstance(face.detection, Face) and face.bbox == face.detection.box
        assert len(face.landmarks) == 5 and 0 < face.score <= 1
        assert face.embedding.shape == (m.manifest.matcher.inputs["query_embedding"][1],)
        assert abs(float(np.linalg.norm(face.embedding)) - 1) < 1e-4
        assert face.crop.dtype == np.uint8 and face.crop.ndim == 3 and face.crop is face.view.pixels
        assert face.frame_shape == (112, 92)
        areas = [f.bbox[2] * f.bbox[3] for f in found]
        assert areas == sorted(areas, reverse=True)  # largest first
        other = m.faces(photos1[1])[0]
        by_faces, by_images = m.compare(face, other, threshold=0.5), m.compare(photos1[0], photos1[1], threshold=0.5)
        assert by_faces.score == pytest.approx(by_images.score, abs=1e-5)
        assert by_faces.structural == pytest.approx(by_images.structural, abs=1e-5)
        assert by_faces.is_match == by_images.is_match and by_faces.face_a == by_images.face_a
        assert [x.point_a for x in by_faces.matches] == [x.point_a for x in by_images.matches]
        np.testing.assert_allclose(by_faces.outline_a, by_images.outline_a)
        mixed = m.compare(face, photos1[1])
        assert mixed.score == pytest.approx(by_images.score, abs=1e-5)
        np.testing.assert_allclose(m.embed([face, photos1[1]]).embedding, m.embed(photos1[:2]).embedding, atol=1e-5)
        assert m.faces(PANSY) == []  # a flower: no face, no entry
        with pytest.raises(ConfigError) as exc:
            m.explain(face, other)
        assert "pass the images" in one_line(exc)

        with Gallery(tmp_path / "door.db", m, threshold=0.5) as g:
            g.enroll(p1, [face])
            g.enroll(p2, [photos2[0]])
            query = m.faces(photos1[2])[0]
            by_face, by_image = g.verify(query, p1), g.verify(photos1[2], p1)
            assert by_face.score == pytest.approx(by_image.score, abs=1e-5) and by_face.face == query.detection
            assert g.identify(query).name == g.identify(photos1[2]).name
            assert g.sources(p1) == set()  # a face object is no file

    with Matcher(bundle, detector=yunet, detector_settings=_settings(margin=0.4)) as cut_otherwise:
        with pytest.raises(ConfigError) as exc:
            cut_otherwise.compare(face, other)
        assert "cut as" in one_line(exc)
        with Gallery(tmp_path / "other.db", cut_otherwise, threshold=0.5) as g:
            with pytest.raises(GalleryError) as exc:
                g.identify(face)
            assert "cut as" in one_line(exc) and "this gallery's Matcher" in one_line(exc)
    with Matcher(bundle, detector="none") as whole:
        with pytest.raises(ConfigError) as exc:
            whole.faces(photos1[0])
        assert "no face detector" in one_line(exc)
        with pytest.raises(ConfigError, match="cut as"):
            whole.compare(face, other)


def _settings(**changes):
    from edgedml.runtime.faces.detection import DetectorSettings

    return DetectorSettings(**changes)


# --- results ------------------------------------------------------------------------------------

def test_results_are_small_typed_objects(bundle, tmp_path):
    from edgedml.runtime import Explanation, Gallery, LoggedDecision, Matcher, MatchResult

    with Matcher(bundle) as m:
        result = m.compare(DAISY_1, DAISY_2, threshold=0.5)
        assert isinstance(result, MatchResult)
        names = {f.name for f in dataclasses.fields(result)}
        assert not names & {"image_a", "image_b", "matcher", "inputs", "evidence_a", "attention_a"}
        assert result.frame_shape_a == (320, 349) and result.evidence_regions_a.shape == (m.manifest.regions,)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.score = 2.0
        with pytest.raises(AttributeError, match="explain"):
            result.render()
        why = m.explain(DAISY_1, DAISY_2, threshold=0.5)
        assert isinstance(why, Explanation) and why.result.score == pytest.approx(result.score, abs=1e-6)
        assert why.image_a.shape[:2] == result.frame_shape_a and why.evidence_a.shape == result.frame_shape_a
        assert why.score == why.result.score and why.render().shape[0] > 360
        with Gallery(tmp_path / "g.db", m, threshold=0.5, door="gate") as g:
            g.enroll("daisy", [DAISY_1])
            g.log_decision("verify", g.verify(DAISY_2, "daisy"), claimed="daisy", evidence="why.png",
                           details={"frame": 3})
            g.log_decision("verify", g.no_face(), claimed="daisy")
            rows = g.decisions()
    assert all(isinstance(r, LoggedDecision) for r in rows)
    newest, first = rows
    assert (first.kind, first.claimed, first.decided, first.door, first.accepted) == ("verify", "daisy", "daisy",
                                                                                      "gate", True)
    assert first.details == {"frame": 3} and first.evidence == "why.png" and first.score > 0.5
    assert newest.accepted is False and newest.score is None and newest.reason == "no face found"
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.accepted = False


def test_gallery_and_matcher_import_from_both_without_heavy_imports():
    code = ("import sys, edgedml, edgedml.runtime\n"
            "heavy = [m for m in ('cv2', 'onnxruntime', 'torch', 'onnx') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from edgedml import Gallery, Matcher, FaceResult\n"
            "from edgedml.runtime import Gallery as G2, LoggedDecision, ClosedError\n"
            "assert Gallery is G2\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# --- progress bars ------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_draw_only_when_asked_and_on_a_terminal(monkeypatch):
    from edgedml.progress import progress_bar

    for stderr, enabled, drawn in ((_Terminal(), True, True), (_Terminal(), False, False),
                                   (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, "stderr", stderr)
        assert list(progress_bar(range(3), desc="work", enabled=enabled)) == [0, 1, 2]
        assert ("work" in stderr.getvalue()) == drawn, (enabled, stderr.getvalue())


def test_cli_long_loops_are_quiet_without_a_terminal(bundle, tmp_path):
    from click.testing import CliRunner

    from edgedml.cli import main

    data = tmp_path / "pairs"
    for name, photos in (("daisy", (DAISY_1, DAISY_2)), ("pansy", (PANSY, PANSY))):
        (data / name).mkdir(parents=True)
        for k, photo in enumerate(photos):
            (data / name / f"{k}.jpg").write_bytes(Path(photo).read_bytes())
    done = CliRunner().invoke(main, ["faithfulness", "--model", str(bundle), "--data", str(data), "--pairs", "2",
                                     "--methods", "random"])
    assert done.exit_code == 0, done.output
    assert "it/s" not in done.output and "pair/s" not in done.output and "\r" not in done.output
