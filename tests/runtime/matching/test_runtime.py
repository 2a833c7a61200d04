"""The torch-free runtime: Matcher.compare on each backend against PyTorch, bad input, threads."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import BLOCK_TORCH, ROOT

from edgedml.cli import main
from edgedml.errors import ChecksumError, InvalidImageError
from edgedml.export.exporter import ExportOptions, export_bundle
from edgedml.models import ModelConfig, build_model
from edgedml.models.matcher import StructuralMatcher
from edgedml.runtime import Matcher
from edgedml.runtime.inference.image import load_image
from edgedml.runtime.inference.preprocess import to_network_input

SAMPLES = ROOT / "samples" / "images"
A, B, C = SAMPLES / "daisy_1.jpg", SAMPLES / "daisy_2.jpg", SAMPLES / "pansy.jpg"


# grouping is slow: its own export, with real weights (diml reuses the session's small_bundle)
@pytest.fixture(scope="module", params=["diml", pytest.param("grouping", marks=pytest.mark.slow)])
def exported(request, tmp_path_factory):
    if request.param == "diml":
        return request.getfixturevalue("small_bundle")  # the same model, already exported
    torch.manual_seed(0)
    model = build_model(ModelConfig(head=request.param, image_size=96)).eval()  # real ImageNet weights
    bundle = tmp_path_factory.mktemp("rt") / "bundle"
    export_bundle(model, bundle, ExportOptions(validation_images=2), log=lambda m: None)
    return model, bundle


def torch_score(model, a, b):
    spec = model.config.preprocessing()
    batch = torch.from_numpy(np.stack([to_network_input(load_image(p), spec) for p in (a, b)]))
    cfg = model.config
    with torch.no_grad():
        out = model(batch)
        m = StructuralMatcher(cfg.sinkhorn_eps, cfg.sinkhorn_iters, cfg.marginals)(
            out.local[:1], out.embedding[:1], out.local[1:], out.embedding[1:])
    return float(m.multiscale[0])


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
def test_compare_equals_pytorch_on_real_images(exported, backend):
    model, bundle = exported
    matcher = Matcher(bundle, backend=backend)
    for a, b in ((A, B), (A, C)):
        result = matcher.compare(a, b)
        assert abs(result.score - torch_score(model, a, b)) < 1e-4
        assert abs(result.score - result.structural - result.global_similarity) < 1e-6
    same = matcher.compare(A, B).score
    assert same > matcher.compare(A, C).score  # two daisies beat a daisy and a pansy


def test_result_explains_in_each_images_own_pixels(exported):
    model, bundle = exported
    result = Matcher(bundle).explain(A, C, threshold=0.5)  # compare's result with its pictures
    ha, wa = cv2.imread(str(A)).shape[:2]
    hb, wb = cv2.imread(str(C)).shape[:2]
    assert result.evidence_a.shape == (ha, wa) and result.evidence_b.shape == (hb, wb)
    assert result.is_match == (result.score >= 0.5)
    assert result.matches and result.matches[0].flow >= result.matches[-1].flow
    r = model.config.regions
    assert result.plan.shape == (r, r)
    if model.config.head == "grouping":
        assert result.attention_a.shape == (3, ha, wa)
    picture = result.render()
    assert picture.ndim == 3 and picture.dtype == np.uint8 and picture.shape[0] > 360


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((2, 2, 3), np.uint8), "at least 4"),
    (np.zeros((32, 32, 3), np.int32), "dtype int32"),
    (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
    (np.full((32, 32, 3), 2.0, np.float32), "must be in \\[0, 1\\]"),
    (np.zeros((32, 32, 2), np.uint8), "shape"),
    (b"not an image", "cannot decode"),
    ("/no/such/file.jpg", "cannot read image"),
    (3.14, "float"),
])
def test_bad_input_gets_its_own_error(exported, bad, message):
    _, bundle = exported
    with pytest.raises(InvalidImageError, match=message):
        Matcher(bundle).compare(bad, A)


def test_arrays_bytes_and_paths_give_the_same_score(exported):
    _, bundle = exported
    matcher = Matcher(bundle)
    bgr = cv2.imread(str(A))
    by_path = matcher.compare(A, B).score
    assert abs(matcher.compare(bgr, B).score - by_path) < 1e-6
    assert abs(matcher.compare(A.read_bytes(), B).score - by_path) < 1e-6
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.isfinite(matcher.compare(grey, B).score)
    assert np.isfinite(matcher.compare(bgr.astype(np.float32) / 255, B).score)


def test_threads_share_one_matcher(exported):
    _, bundle = exported
    for backend in ("onnxruntime", "opencv"):
        matcher = Matcher(bundle, backend=backend)
        expected = {p: matcher.compare(A, p).score for p in (B, C)}
        errors, results = [], []

        def worker(p, matcher=matcher, results=results, errors=errors):
            try:
                for _ in range(3):
                    results.append((p, matcher.compare(A, p).score))
            except Exception as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(p,)) for p in (B, C, B, C)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert all(abs(score - expected[p]) < 1e-6 for p, score in results) and len(results) == 12


def test_tampered_bundle_is_refused(exported, tmp_path):
    import shutil

    _, bundle = exported
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    with open(copy / "embedder.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ChecksumError, match="embedder.onnx"):
        Matcher(copy)


def test_cli_compare_json_and_explanation(exported, tmp_path):
    _, bundle = exported
    out = tmp_path / "why.png"
    result = CliRunner().invoke(main, ["compare", str(A), str(B), "--model", str(bundle), "--json",
                                       "--explain", str(out), "--threshold", "0.3"])
    data = json.loads(result.output)
    assert result.exit_code == (0 if data["is_match"] else 4), result.output  # 4: NO MATCH
    assert data["is_match"] == (data["score"] >= 0.3) and cv2.imread(str(out)) is not None
    bad = CliRunner().invoke(main, ["compare", str(A), str(Path(__file__)), "--model", str(bundle)])
    assert bad.exit_code == 1 and "cannot decode" in bad.output and "Traceback" not in bad.output


def test_runtime_runs_with_torch_unimportable(exported):
    _, bundle = exported
    code = BLOCK_TORCH + (
        "from edgedml.runtime import Matcher\n"
        f"for backend in ('onnxruntime', 'opencv'):\n"
        f"    r = Matcher({str(bundle)!r}, backend=backend).explain({str(A)!r}, {str(B)!r})\n"
        "    r.render()\n"
        "    print(backend, r.score)\n"
        "from edgedml.cli import main\n"
        "try:\n"
        f"    main(['compare', {str(A)!r}, {str(C)!r}, '--model', {str(bundle)!r}], standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 5, exc.code  # uncalibrated: a score, no decision\n"
        "assert not any(m.split('.')[0] == 'torch' for m in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "onnxruntime" in done.stdout and "opencv" in done.stdout and "score" in done.stdout


def test_the_explanation_dims_what_the_model_does_not_see():
    from edgedml.runtime.matching.picture import _dim_outside

    panel = np.full((100, 160, 3), 200, np.uint8)
    outline = np.array([[30, 0], [130, 0], [130, 100], [30, 100]], np.float64)  # a centred square crop of a wide image
    out = _dim_outside(panel, outline, scale=1.0)
    assert (out[:, 30:130] == 200).all() and (out[:, :30] == 70).all() and (out[:, 130:] == 70).all()
