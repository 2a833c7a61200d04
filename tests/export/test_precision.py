"""Precision graphs: fp16 and INT8 (QDQ) graphs written by the exporter, run by ONNX Runtime,
held to bounds, served by Matcher within each graph's shape limits."""

import dataclasses
import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import BLOCK_TORCH, TINY

from edgedml.bundle import read_manifest
from edgedml.cli import main
from edgedml.errors import BundleError, ConfigError
from edgedml.export import checks, precision_report, validate
from edgedml.export.exporter import ExportOptions, export_bundle
from edgedml.export.precision import parse_precisions
from edgedml.models import ModelConfig, build_model
from edgedml.runtime.inference import backends
from edgedml.runtime.inference.chunking import Limit, run_in_chunks
from edgedml.runtime.matching.matcher import Matcher

ALL = "fp32,fp16,int8,int8-cpu"


def _photos(folder, n=12, seed=0):
    """Smooth random colour images (a blurred noise field): natural-image-like statistics."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noise = rng.random((24, 24, 3)).astype(np.float32)
        image = cv2.resize(noise, (96, 96), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{i:02d}.png"), (np.clip(image, 0, 1) * 255).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(**TINY), pretrained=False).eval()


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("calib") / "images")


@pytest.fixture(scope="module")
def all_precisions(tiny_model, calib_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    export_bundle(tiny_model, out, ExportOptions(precisions=ALL, calib=str(calib_dir), calib_images=8,
                                                 validation_images=4), log=lambda m: None)
    return out


def test_precision_names_are_checked_and_fp32_always_comes_first():
    assert parse_precisions("int8-cpu, fp16") == ("fp32", "fp16", "int8-cpu")
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        parse_precisions("fp16,int4")
    with pytest.raises(ConfigError, match="--calib"):
        ExportOptions(precisions="int8")
    # issue 24: fp16 alone is no longer refused; without a folder it is checked on the photos that install with edgedml
    assert ExportOptions(precisions="fp16").precisions == ("fp32", "fp16")
    assert "int8" in ExportOptions(engine="int8", calib="x").precisions  # an engine's graphs are exported


@pytest.mark.slow  # all_precisions: a full export at four precisions, INT8 calibrated
def test_every_precision_is_listed_validated_and_checksummed(all_precisions):
    manifest = read_manifest(all_precisions)
    assert manifest.graphs == {
        "fp32": {"embedder": "embedder.onnx", "matcher": "matcher.onnx"},
        "fp16": {"embedder": "embedder.fp16.onnx", "matcher": "matcher.fp16.onnx"},
        "int8": {"embedder": "embedder.int8.onnx", "matcher": "matcher.onnx"},
        "int8-cpu": {"embedder": "embedder.int8-cpu.onnx", "matcher": "matcher.onnx"}}
    report = manifest.validation["precisions"]
    assert set(report) == {"fp16", "int8", "int8-cpu"}
    for name, entry in report.items():
        assert precision_report.check(name, entry) == [], name
        assert entry["embedder"]["finite"] and entry["matcher"]["finite"]
    assert report["fp16"]["embedder"]["embedding_cosine_mean"] >= 0.999
    for files in manifest.graphs.values():
        assert set(files.values()) <= set(manifest.files)
    assert {"validation/inputs.npz", "validation/outputs.int8.npz"} <= set(manifest.files)
    assert all(problems == [] for problems in manifest.tensorrt_readiness.values()), manifest.tensorrt_readiness


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_fp16_graphs_are_real_fp16_with_fp32_io_and_fp32_normalisation(all_precisions):
    import onnx
    from onnx import TensorProto

    for name in ("embedder.fp16.onnx", "matcher.fp16.onnx"):
        model = onnx.load(str(all_precisions / name))
        for value in list(model.graph.input) + list(model.graph.output):
            assert value.type.tensor_type.elem_type == TensorProto.FLOAT, (name, value.name)
        weights = [i for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)
                   and len(i.dims) > 1]
        if weights:
            assert all(w.data_type == TensorProto.FLOAT16 for w in weights), name
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        kept = [n for n in model.graph.node if n.op_type in ("ReduceL2", "ReduceSum", "Log")]
        assert kept, name
        for node in kept:  # the normalisation and the Sinkhorn reductions compute in fp32
            assert types.get(node.output[0], TensorProto.FLOAT) == TensorProto.FLOAT, (name, node.name)
        halves = [n for n in model.graph.node if n.op_type in ("Conv", "Exp")]
        assert any(types.get(n.output[0]) == TensorProto.FLOAT16 for n in halves), name
    assert read_manifest(all_precisions).precisions["fp16"]["matcher_form"] == "log"


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_int8_graph_follows_tensorrt_qdq_rules_and_int8_cpu_uses_uint8_activations(all_precisions):
    import onnx
    from onnx import numpy_helper

    assert checks.qdq_rules(all_precisions / "embedder.int8.onnx") == []
    model = onnx.load(str(all_precisions / "embedder.int8.onnx"))
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [constants[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    cpu = onnx.load(str(all_precisions / "embedder.int8-cpu.onnx"))
    constants = {i.name: numpy_helper.to_array(i) for i in cpu.graph.initializer}
    activations = {constants[n.input[2]].dtype for n in cpu.graph.node if n.op_type == "QuantizeLinear"}
    assert activations == {np.dtype(np.uint8)}
    assert any("not quantized" in p or "shared" in p or "zero-point" in p
               for p in checks.qdq_rules(all_precisions / "embedder.int8-cpu.onnx"))


def test_qdq_rule_check_catches_a_shared_pair_and_a_nonzero_zero_point(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("zp", TensorProto.INT8, [], [3])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"], name="dq"),
             helper.make_node("Relu", ["d"], ["y"]), helper.make_node("Abs", ["d"], ["z"])]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], inits),
                                opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "bad.onnx")
    text = "\n".join(checks.qdq_rules(tmp_path / "bad.onnx"))
    assert "zero-point int8 [3]" in text and "shared by 2 consumers" in text


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_every_precision_runs_in_matcher_close_to_fp32(all_precisions, calib_dir):
    images = sorted(calib_dir.iterdir())[:3]
    ref = Matcher(all_precisions, backend="onnxruntime")
    base = ref.match(ref.embed(images[0]), ref.embed(images))["multiscale"]
    for name in ("fp16", "int8", "int8-cpu"):
        matcher = Matcher(all_precisions, backend="onnxruntime", precision=name)
        assert name in repr(matcher)
        scores = matcher.match(matcher.embed(images[0]), matcher.embed(images))["multiscale"]
        assert np.isfinite(scores).all() and np.abs(scores - base).max() < 0.1, (name, scores, base)
        result = matcher.compare(images[0], images[1])
        assert np.isfinite(result.score)


@pytest.mark.slow  # a full export
def test_a_precision_the_bundle_lacks_is_refused_with_the_fix(tiny_model, tmp_path):
    export_bundle(tiny_model, tmp_path / "b", ExportOptions(validation_images=2), log=lambda m: None)
    with pytest.raises(BundleError, match="--precision int8-cpu"):
        Matcher(tmp_path / "b", precision="int8-cpu")


@pytest.mark.slow  # a full export
def test_a_broken_precision_bound_fails_the_export_and_writes_nothing(tiny_model, calib_dir, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setitem(precision_report.BOUNDS, "int8-cpu", precision_report.PrecisionBounds(1.01, 0.01))
    with pytest.raises(validate.ValidationError, match="int8-cpu embedding cosine"):
        export_bundle(tiny_model, tmp_path / "b", ExportOptions(precisions="int8-cpu", calib=str(calib_dir),
                                                                calib_images=4, validation_images=2),
                      log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a full export
def test_map_at_r_on_a_labelled_folder_is_reported_per_precision(tiny_model, tmp_path):
    data = tmp_path / "labelled"
    for label in range(3):
        _photos(data / f"class{label}", n=4, seed=label)
    manifest = export_bundle(tiny_model, tmp_path / "b", ExportOptions(
        precisions="int8-cpu", calib=str(data), calib_images=6, validation_images=3, validate_data=str(data)),
        log=lambda m: None)
    entry = manifest.validation["precisions"]["int8-cpu"]["map_at_r"]
    assert set(entry["fp32"]) == {"global", "multiscale"} and 0 <= entry["int8-cpu"]["multiscale"] <= 1
    assert entry["drop_multiscale"] == pytest.approx(entry["fp32"]["multiscale"] - entry["int8-cpu"]["multiscale"],
                                                     abs=1e-4)


def test_run_in_chunks_splits_pads_and_concatenates():
    calls = []

    def run(feeds):
        calls.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2 + feeds["c"].sum(), "n": np.full(len(feeds["x"]), len(feeds["x"]))}

    x, c = np.arange(10, dtype=np.float32).reshape(5, 2), np.ones(3, np.float32)
    whole = run({"x": x, "c": c})
    calls.clear()
    out = run_in_chunks(run, {"x": x, "c": c}, ("x",), Limit(2))
    assert calls == [2, 2, 1] and np.array_equal(out["y"], whole["y"])
    calls.clear()
    out = run_in_chunks(run, {"x": x, "c": c}, ("x",), Limit(4, fixed=True))
    assert calls == [4, 4] and np.array_equal(out["y"], whole["y"]) and len(out["n"]) == 5


@pytest.mark.slow  # two full exports
def test_a_graph_exported_at_a_fixed_batch_of_4_serves_any_batch(tiny_model, tmp_path, calib_dir):
    fixed = tmp_path / "fixed"
    export_bundle(tiny_model, fixed, ExportOptions(fixed_batch=4, validation_images=3), log=lambda m: None)
    dynamic = tmp_path / "dynamic"
    export_bundle(tiny_model, dynamic, ExportOptions(validation_images=3), log=lambda m: None)
    manifest = read_manifest(fixed)
    assert manifest.limits["embedder"] == {"size": 4, "fixed": True}
    assert manifest.embedder.inputs["images"][0] == 4
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    session = validate.session(fixed / "embedder.onnx")
    with pytest.raises(InvalidArgument, match="invalid dimensions"):  # the graph itself takes exactly 4 images
        session.run(None, {"images": np.zeros((3, 3, 64, 64), np.float32)})
    images = sorted(calib_dir.iterdir())
    want = Matcher(dynamic, backend="onnxruntime").embed(images[:9])
    for n in (1, 3, 4, 9):
        got = Matcher(fixed, backend="onnxruntime").embed(images[:n])
        assert np.allclose(got.embedding, want.embedding[:n], atol=1e-5) and len(got) == n


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_matcher_chunks_candidates_to_the_backend_limit(all_precisions, calib_dir, monkeypatch):
    matcher = Matcher(all_precisions, backend="onnxruntime")
    features = matcher.embed(sorted(calib_dir.iterdir())[:7])
    whole = matcher.match(features[0], features)
    seen = []
    run = matcher.backend.run
    monkeypatch.setattr(matcher.backend, "run", lambda g, f: seen.append((g, len(f.get("candidate_local", f.get(
        "images", []))))) or run(g, f))
    monkeypatch.setattr(matcher.backend, "limits", {"embedder": Limit(2), "matcher": Limit(3)})
    chunked = matcher.match(features[0], features)
    assert [k for g, k in seen if g == "matcher"] == [3, 3, 1]
    for name in whole:
        assert np.allclose(chunked[name], whole[name], atol=1e-6)
    matcher.embed(sorted(calib_dir.iterdir())[:5])
    assert [k for g, k in seen if g == "embedder"] == [2, 2, 1]


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_auto_falls_back_to_onnx_runtime_in_one_line_when_engines_cannot_load(all_precisions, monkeypatch, caplog):
    manifest = dataclasses.replace(read_manifest(all_precisions),
                                   engines={"fp16": {"embedder": {"file": "embedder.fp16.engine"}}})
    real_find = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real_find(name, *a))

    def refuse(bundle, manifest, precision):
        raise BundleError("TensorRT could not load the embedder engine: built for another GPU")

    monkeypatch.setattr(backends, "_tensorrt", refuse)
    with caplog.at_level(logging.WARNING, logger="edgedml"):
        backend = backends.create_backend(all_precisions, manifest, "auto", "fp16")
    assert isinstance(backend, backends.OnnxRuntimeBackend) and backend.precision == "fp16"
    [record] = [r for r in caplog.records if r.name == "edgedml.runtime.inference.backends"]
    assert "falling back to ONNX Runtime" in record.getMessage() and "\n" not in record.getMessage()
    with pytest.raises(BundleError, match="another GPU"):
        backends.create_backend(all_precisions, manifest, "tensorrt", "fp16")


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_tensorrt_execution_provider_gets_profiles_and_a_cache_outside_the_bundle(all_precisions, monkeypatch,
                                                                                   tmp_path):
    monkeypatch.setenv("EDGEDML_CACHE", str(tmp_path / "cache"))
    manifest = read_manifest(all_precisions)
    options = backends.tensorrt_ep_options(manifest, "embedder", "embedder.fp16.onnx", max_batch=8)
    assert options["trt_profile_min_shapes"] == "images:1x3x64x64"
    assert options["trt_profile_max_shapes"] == "images:8x3x64x64"
    assert "trt_fp16_enable" not in options and "trt_int8_enable" not in options
    assert options["trt_engine_cache_path"].startswith(str(tmp_path / "cache"))
    matcher = backends.tensorrt_ep_options(manifest, "matcher", "matcher.onnx", max_candidates=50)
    assert "candidate_local:50x4x" in matcher["trt_profile_max_shapes"]
    assert "query_local:1x4x" in matcher["trt_profile_max_shapes"]


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_device_side_runs_int8_cpu_and_fp16_without_torch(all_precisions, calib_dir):
    images = sorted(calib_dir.iterdir())[:2]
    code = BLOCK_TORCH + (
        "from edgedml.runtime.matching.matcher import Matcher\n"
        f"for p in ('int8-cpu', 'fp16'):\n"
        f"    r = Matcher({str(all_precisions)!r}, backend='onnxruntime', precision=p).compare({str(images[0])!r}, "
        f"{str(images[1])!r})\n"
        "    print(p, r.score)\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 2


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_cli_build_engine_without_tensorrt_explains_and_imports_no_torch(all_precisions):
    code = BLOCK_TORCH + (
        "from edgedml.cli import main\n"
        f"main(['build-engine', '--model', {str(all_precisions)!r}, '--engine', 'int8'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "edgedml build-engine" in result.stderr and "torch" not in result.stderr


@pytest.mark.slow  # a full export by the CLI
def test_cli_export_and_compare_with_a_precision(tiny_model, calib_dir, tmp_path):
    from edgedml.models import save_checkpoint

    save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    runner = CliRunner()
    refused = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--out",
                                   str(tmp_path / "b"), "--precision", "int8"])
    assert refused.exit_code != 0 and "--calib" in refused.output
    done = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--out",
                                str(tmp_path / "b"), "--precision", "fp16,int8-cpu", "--calib", str(calib_dir),
                                "--calib-images", "4"])
    assert done.exit_code == 0, done.output
    assert "int8-cpu: embedding cosine to fp32" in done.output
    images = [str(p) for p in sorted(calib_dir.iterdir())[:2]]
    compared = runner.invoke(main, ["compare", *images, "--model", str(tmp_path / "b"), "--precision", "int8-cpu",
                                    "--json"])
    assert compared.exit_code == 5, compared.output  # uncalibrated: a score, no decision
    assert "int8-cpu" in json.loads(compared.output)["backend"]


@pytest.mark.slow
def test_real_lite0_exports_all_four_precisions_calibrated_on_daffodils(tmp_path, flowers_dir):
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    options = ExportOptions(precisions=ALL, calib=str(flowers_dir / "01_daffodil"))
    manifest = export_bundle(model, tmp_path / "b", options, log=lambda m: None)
    report = manifest.validation["precisions"]
    assert report["fp16"]["embedder"]["embedding_cosine_mean"] >= 0.999
    assert report["int8"]["embedder"]["embedding_cosine_mean"] >= 0.98
    assert report["int8-cpu"]["embedder"]["embedding_cosine_mean"] >= 0.98
    assert all(problems == [] for problems in manifest.tensorrt_readiness.values())
    pair = [flowers_dir / "11_daisy" / name for name in sorted((flowers_dir / "11_daisy").iterdir())[:2]]
    fp32 = Matcher(tmp_path / "b", backend="onnxruntime").compare(*pair).score
    for name in ("fp16", "int8", "int8-cpu"):
        score = Matcher(tmp_path / "b", backend="onnxruntime", precision=name).compare(*pair).score
        assert abs(score - fp32) < 0.05, (name, score, fp32)


@pytest.mark.slow  # all_precisions: a full export at four precisions
def test_a_gallery_keeps_to_the_precision_it_was_enrolled_with(all_precisions, calib_dir, tmp_path):
    from edgedml.runtime.gallery.gallery import Gallery, GalleryError

    images = sorted(calib_dir.iterdir())
    with Gallery(tmp_path / "door.db", Matcher(all_precisions, precision="int8-cpu"), threshold=0.5) as gallery:
        gallery.enroll("ann", images[:2])
        assert gallery.identify(images[0], top_k=1).name == "ann"
    with pytest.raises(GalleryError, match="another model"):
        Gallery(tmp_path / "door.db", Matcher(all_precisions, precision="fp32"))
