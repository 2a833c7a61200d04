"""What the runtime loads from a bundle, and how: the one definition of the chunked inputs (a
rollout matcher's marginals included), the OpenCV CUDA target of each precision, the TensorRT
execution provider's profile and the backend's chunking from one Limit, a matcher's scores held to
their range, and files opened only inside the bundle with a checksum (issue 22, items 5, 16-18).
No GPU, no torch: fakes stand for the backends."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgedml.bundle import GraphIO, Manifest, read_manifest
from edgedml.errors import BundleError
from edgedml.preprocessing import PreprocessSpec
from edgedml.runtime.inference import backends, opencv_backend
from edgedml.runtime.inference.chunking import CHUNKED, Limit, run_in_chunks
from edgedml.runtime.matching import matcher as matcher_module
from edgedml.runtime.matching.features import Features
from edgedml.runtime.matching.matcher import Matcher
from edgedml.runtime.matching.score_checks import check_scores

R, D, E, S = 4, 3, 5, 8
MATCHER_INPUTS = {"query_local": [1, R, D], "query_embedding": [1, E], "candidate_local": ["K", R, D],
                  "candidate_embedding": ["K", E], "query_marginal": [1, R], "candidate_marginal": ["K", R]}
MATCHER_OUTPUTS = {"structural": ["K"], "multiscale": ["K"], "plan": ["K", R, R], "query_evidence": ["K", R],
                   "candidate_evidence": ["K", R]}


def rollout_matcher(feeds: dict) -> dict:
    """A stand-in rollout matcher: every candidate input (marginal included) must have K rows;
    scores in range, the candidate's marginal mass in them."""
    k = len(feeds["candidate_local"])
    assert len(feeds["candidate_embedding"]) == k and len(feeds["candidate_marginal"]) == k, \
        {name: value.shape for name, value in feeds.items()}
    share = feeds["candidate_marginal"].sum(1) / R
    return {"structural": share.astype(np.float32), "multiscale": (share + 0.5).astype(np.float32),
            "plan": np.full((k, R, R), 1 / R ** 2, np.float32), "query_evidence": np.zeros((k, R), np.float32),
            "candidate_evidence": np.zeros((k, R), np.float32)}


class FakeBackend:
    """The backend interface: a graph run by a function, within recorded limits."""

    def __init__(self, limits: dict[str, Limit], run=rollout_matcher):
        self.limits, self._run, self.calls = limits, run, []

    def run(self, graph, feeds):
        self.calls.append((graph, {name: value.shape for name, value in feeds.items()}))
        return self._run(feeds)


def _features(k: int, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    return Features(rng.random((k, E), np.float32), rng.random((k, R, D), np.float32),
                    marginal=rng.random((k, R), np.float32))


def _matcher(backend, precision="fp32") -> Matcher:
    """A Matcher over a rollout bundle's matcher inputs, without a bundle."""
    matcher = Matcher.__new__(Matcher)
    matcher.manifest = SimpleNamespace(matcher=SimpleNamespace(inputs=MATCHER_INPUTS))
    matcher.backend, matcher.precision = backend, precision
    return matcher


# --- item 17: one list of chunked inputs --------------------------------------------------------


def test_the_matcher_the_precision_report_and_the_engine_check_chunk_the_same_inputs(monkeypatch, tmp_path):
    from edgedml.export import precision_report
    from edgedml.runtime.inference.tensorrt import check

    seen = []

    def spy(run, feeds, chunked, limit):
        seen.append(chunked)
        return run_in_chunks(run, feeds, chunked, limit)

    monkeypatch.setattr(matcher_module, "run_in_chunks", spy)
    monkeypatch.setattr(check, "run_in_chunks", spy)
    _matcher(FakeBackend({"matcher": Limit(3)})).match(_features(1), _features(7, 1))
    root = _rollout_bundle(tmp_path)
    check.check_engines(FakeBackend({"embedder": Limit(2), "matcher": Limit(3)}, _graphs), root,
                        read_manifest(root), "fp32")
    monkeypatch.setattr(precision_report, "session", lambda path: SimpleNamespace(get_outputs=lambda: []))
    report = precision_report.matcher_runner(tmp_path / "matcher.onnx")
    assert seen[0] is CHUNKED["matcher"] and seen[-1] is CHUNKED["matcher"] and report.chunked is CHUNKED["matcher"]
    assert precision_report.embedder_runner(tmp_path / "embedder.onnx").chunked is CHUNKED["embedder"]
    assert "candidate_marginal" in CHUNKED["matcher"]


def test_a_rollout_matcher_runs_in_chunks_below_k_with_its_marginals():
    backend = FakeBackend({"matcher": Limit(3)})
    query, candidates = _features(1), _features(7, 1)
    out = _matcher(backend).match(query, candidates)
    assert [shapes["candidate_marginal"][0] for _, shapes in backend.calls] == [3, 3, 1]
    whole = rollout_matcher({"candidate_local": candidates.local, "candidate_embedding": candidates.embedding,
                             "candidate_marginal": candidates.marginal})
    assert np.allclose(out["structural"], whole["structural"]) and out["plan"].shape == (7, R, R)
    fixed = FakeBackend({"matcher": Limit(4, fixed=True)})  # a fixed-K graph: the last chunk is padded
    assert np.allclose(_matcher(fixed).match(query, candidates)["multiscale"], whole["multiscale"])


def _graphs(feeds):
    if "images" in feeds:
        images = feeds["images"]
        return {"embedding": images.mean(axis=(2, 3)), "local": images[:, :1, :R, :D].reshape(len(images), R, D)}
    return rollout_matcher(feeds)


def _rollout_bundle(root):
    """A bundle (dummy graph files) of a rollout matcher with stored validation data of 7 candidates."""
    (root / "validation").mkdir()
    for name in ("embedder.onnx", "matcher.onnx"):
        (root / name).write_bytes(b"graph")
    rng = np.random.default_rng(0)
    images = rng.random((5, 3, S, S), np.float32)
    candidates = _features(7, 2)
    feeds = {"query_local": candidates.local[:1], "query_embedding": candidates.embedding[:1],
             "query_marginal": candidates.marginal[:1], "candidate_local": candidates.local,
             "candidate_embedding": candidates.embedding, "candidate_marginal": candidates.marginal}
    np.savez(root / "validation" / "inputs.npz", images=images, **feeds)
    want = {**{f"embedder.{k}": v for k, v in _graphs({"images": images}).items()},
            **{f"matcher.{k}": v for k, v in rollout_matcher(feeds).items()}}
    np.savez(root / "validation" / "outputs.fp32.npz", **want)
    return _write(root, limits={"embedder": {"size": None, "fixed": False}, "matcher": {"size": None, "fixed": False}},
                  validation_inputs={"inputs": "validation/inputs.npz",
                                     "outputs": {"fp32": "validation/outputs.fp32.npz"}}).root


def _write(root, **fields) -> Manifest:
    embedder = GraphIO("embedder.onnx", {"images": ["batch", 3, S, S]}, {"embedding": ["batch", E]})
    matcher = GraphIO("matcher.onnx", MATCHER_INPUTS, MATCHER_OUTPUTS)
    return Manifest(model={}, preprocessing=PreprocessSpec(), embedder=embedder, matcher=matcher,
                    **fields).write(root)


def test_the_engine_check_of_a_rollout_bundle_passes_with_fewer_candidates_than_k(tmp_path):
    from edgedml.runtime.inference.tensorrt.check import check_engines

    root = _rollout_bundle(tmp_path)
    engines = FakeBackend({"embedder": Limit(2), "matcher": Limit(3)}, _graphs)  # --max-candidates 3 < K = 7
    result, failures = check_engines(engines, root, read_manifest(root), "fp32")
    assert not failures and result["passed"]
    assert [s["candidate_marginal"][0] for g, s in engines.calls if g == "matcher"] == [3, 3, 1]


# --- item 16: OpenCV runs FP16 only for the fp16 graphs ------------------------------------------


@pytest.mark.parametrize("precision, target", [("fp32", "cuda"), ("int8", "cuda"), ("int8-cpu", "cuda"),
                                               ("fp16", "cuda_fp16")])
def test_opencv_cuda_target_is_fp16_only_for_fp16_graphs(precision, target):
    assert opencv_backend.opencv_cuda_target(precision) == target


def test_the_opencv_backend_runs_fp32_graphs_on_the_fp32_cuda_target(tmp_path, monkeypatch):
    import cv2

    for name in ("embedder.onnx", "matcher.onnx"):
        (tmp_path / name).write_bytes(b"graph")
    manifest = _write(tmp_path)
    targets = []

    class Net:
        def empty(self):
            return False

        def setPreferableBackend(self, backend):
            pass

        def setPreferableTarget(self, target):
            targets.append(target)

    monkeypatch.setattr(cv2.dnn, "readNetFromONNX", lambda path: Net())
    opencv_backend.OpenCVBackend(tmp_path, manifest, "fp32", cuda=True)
    assert targets == [cv2.dnn.DNN_TARGET_CUDA, cv2.dnn.DNN_TARGET_CUDA]


# --- item 18: the TensorRT EP's profile and the backend's chunking from one Limit -----------------


def test_tensorrt_provider_profile_and_backend_limits_come_from_one_limit(tmp_path, monkeypatch):
    import onnxruntime as ort

    for name in ("embedder.onnx", "matcher.onnx"):
        (tmp_path / name).write_bytes(b"graph")
    manifest = _write(tmp_path, limits={"embedder": {"size": None, "fixed": False}, "matcher": {"size": None,
                                                                                                 "fixed": False}})
    limits = backends.tensorrt_ep_limits(manifest)
    assert limits == {"embedder": Limit(8), "matcher": Limit(100)}  # calibration asks for 16 images, K = N - 1
    options = {}

    class Session:
        def __init__(self, path, session_options, providers):
            options[path.rsplit("/", 1)[-1]] = dict(p for p in providers if isinstance(p, tuple))[
                "TensorrtExecutionProvider"]

        def get_providers(self):
            return ["TensorrtExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    backend = backends.OnnxRuntimeBackend(tmp_path, manifest, "fp32",  # the TensorRT EP only when asked (issue 24)
                                          providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    assert backend.limits == limits  # requests beyond the profile are chunked
    assert options["embedder.onnx"]["trt_profile_max_shapes"] == f"images:8x3x{S}x{S}"
    assert f"candidate_local:100x{R}x{D}" in options["matcher.onnx"]["trt_profile_max_shapes"]
    assert options["embedder.onnx"] == backends.tensorrt_ep_options(manifest, "embedder", "embedder.onnx",
                                                                    limit=limits["embedder"])


def test_an_exported_limit_is_the_tensorrt_providers_profile(tmp_path):
    for name in ("embedder.onnx", "matcher.onnx"):
        (tmp_path / name).write_bytes(b"graph")
    manifest = _write(tmp_path, limits={"embedder": {"size": 4, "fixed": True},
                                        "matcher": {"size": 50, "fixed": False}})
    limits = backends.tensorrt_ep_limits(manifest)
    assert limits == {"embedder": Limit(4, True), "matcher": Limit(50)}
    options = backends.tensorrt_ep_options(manifest, "embedder", "embedder.onnx", limit=limits["embedder"])
    assert options["trt_profile_min_shapes"] == options["trt_profile_max_shapes"] == f"images:4x3x{S}x{S}"


# --- item 5: scores out of range decide nothing; files only inside the bundle -----------------------


def test_scores_are_held_to_their_range():
    def out(structural, multiscale):
        return {"structural": np.array([structural], np.float32), "multiscale": np.array([multiscale], np.float32)}

    check_scores(out(1.0, 2.0))  # a self pair
    check_scores(out(-1.0, -2.0))
    check_scores(out(1.0005, 2.0008))  # float32 rounding
    for structural, multiscale, what in ((1.02, 1.5, "structural"), (0.5, 2.1, "multi-scale"),
                                         (0.2, 1.5, "global cosine"), (0.5, np.nan, "inf or NaN")):
        with pytest.raises(BundleError, match=what):
            check_scores(out(structural, multiscale))
    check_scores(out(1.005, 2.009), tolerance=1e-2)  # the fp16 graphs' bound
    with pytest.raises(BundleError, match="global cosine"):
        check_scores(out(0.5, 1.503))  # a cosine of 1.003: more than 1 + 1e-3 in fp32


def test_a_matcher_whose_graph_leaves_the_range_decides_nothing():
    def plus_one(feeds):
        out = rollout_matcher(feeds)
        return {**out, "multiscale": out["multiscale"] + 1.0}

    with pytest.raises(BundleError, match="tampered"):
        _matcher(FakeBackend({"matcher": Limit()}, plus_one)).match(_features(1), _features(3, 1))


def test_manifest_path_opens_only_checksummed_files_inside_the_bundle(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("embedder.onnx", "matcher.onnx"):
        (bundle / name).write_bytes(b"graph")
    (tmp_path / "outside.onnx").write_bytes(b"graph")
    (bundle / "link.onnx").symlink_to(tmp_path / "outside.onnx")
    (bundle / "inner.onnx").symlink_to(bundle / "matcher.onnx")
    _write(bundle)
    manifest = read_manifest(bundle)
    assert manifest.path("matcher.onnx") == bundle / "matcher.onnx"
    assert manifest.path("inner.onnx") == bundle / "inner.onnx"  # a link inside, to a listed file
    with pytest.raises(BundleError, match="lies outside the bundle"):
        manifest.path("link.onnx")
    (bundle / "late.onnx").write_bytes(b"graph")
    with pytest.raises(BundleError, match="late.onnx has no checksum"):
        manifest.path("late.onnx")
    for name, why in (("../outside.onnx", "not a path inside"), ("/etc/passwd", "not a path inside"),
                      ("manifest.json", "the manifest itself"), ("cache/x.onnx", "never checksums"),
                      (None, "not a file name")):
        with pytest.raises(BundleError, match=why):
            manifest.path(name)
    body = json.loads((bundle / "manifest.json").read_text())
    body["graphs"] = {"fp32": {"embedder": "embedder.onnx", "matcher": "link.onnx"}}
    (bundle / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(BundleError, match="link.onnx lies outside the bundle"):
        backends.create_backend(bundle, read_manifest(bundle), "onnxruntime")


def test_rewriting_a_manifest_never_writes_through_a_planted_symlink(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "embedder.onnx").write_bytes(b"graph")
    (tmp_path / "thesis.txt").write_text("years of work")
    (bundle / "manifest.json.tmp").symlink_to(tmp_path / "thesis.txt")
    _write(bundle).update(thresholds={"default": {"threshold": 1.5}})
    assert (tmp_path / "thesis.txt").read_text() == "years of work"
    assert read_manifest(bundle).thresholds["default"]["threshold"] == 1.5
