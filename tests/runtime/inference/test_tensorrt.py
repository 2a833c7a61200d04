"""edgedml.runtime.inference.tensorrt: no removed TensorRT API anywhere, no torch on import, the build →
check → manifest flow against a fake TensorRT 10/11 surface, and the real thing where it exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import BLOCK_TORCH, ROOT, TINY
from fake_tensorrt import D, R, S, fake_embedder, install, make_fake_bundle

from edgedml.bundle import read_manifest
from edgedml.errors import BundleError, EdgeDMLError

PACKAGE = ROOT / "edgedml"

# Names TensorRT 11 removed (weak typing, implicit INT8 calibration), built from pieces so that
# this file does not contain them.
_BF = "BuilderFlag."
REMOVED_IN_TRT11 = [
    _BF + "FP16", _BF + "INT8", _BF + "BF16", _BF + "FP8",
    "int8" + "_calibrator", "set_calibration" + "_profile", "get_calibration" + "_profile",
    "OBEY_PRECISION" + "_CONSTRAINTS", "PREFER_PRECISION" + "_CONSTRAINTS", "BuilderFlag." + "DIRECT_IO",
    "IInt8" + "EntropyCalibrator2", "IInt8" + "Calibrator", "IInt8" + "MinMaxCalibrator",
    "platform_has" + "_fast_fp16", "platform_has" + "_fast_int8", "set_quantization" + "_flag",
    "set_output" + "_type",
]
# ILayer.precision's setter (removed): "<something>.precision = ...", except an object's own
# attribute "self.precision = ..." (edgedml's backends record their precision that way).
LAYER_PRECISION = re.compile(r"(?<!\bself)\.precision\s*=(?!=)")


def test_no_api_removed_in_tensorrt_11_appears_in_the_package():
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(PACKAGE.parent)}:{number}"
            hits += [f"{where}: {name}" for name in REMOVED_IN_TRT11 if name in line]
    assert not hits, "TensorRT 11 removed these APIs:\n" + "\n".join(hits)


def test_import_pulls_neither_torch_nor_onnx():
    code = BLOCK_TORCH + (
        "import edgedml.runtime.inference.tensorrt as t\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)\n"
        "print(t.TensorRTBackend.name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tensorrt"


@pytest.fixture
def fake_bundle(tmp_path):
    return make_fake_bundle(tmp_path / "bundle")


@pytest.mark.parametrize("version, flags", [("10.3.0", 1 << 1), ("11.0.0", 0)])
def test_fake_build_checks_engines_and_records_them(fake_bundle, monkeypatch, tmp_path, version, flags):
    """Fake TensorRT: checks the call surface and the flow, not TensorRT itself."""
    from edgedml.runtime.inference import tensorrt as t

    calls, memory = install(monkeypatch, tmp_path, version)
    entry = t.build_engines(fake_bundle, "fp16", max_batch=4, max_candidates=5, log=lambda m: None)
    assert calls["network_flags"] == [flags, flags]  # STRONGLY_TYPED on 10.x, nothing on 11.x
    assert calls["tf32"] == {"embedder": True, "matcher": False}
    manifest = read_manifest(fake_bundle)  # checksums of the new engine files verify
    assert manifest.engines["fp16"] == entry
    assert entry["limits"] == {"embedder": {"size": 4, "fixed": False}, "matcher": {"size": 5, "fixed": False}}
    assert entry["check"]["passed"] and entry["check"]["embedder"]["embedding_cosine_mean"] > 0.999
    assert entry["check"]["matcher"]["max_abs_diff_structural"] < 1e-5
    assert entry["embedder"]["strongly_typed"] and entry["embedder"]["profile"]["images"][2] == [4, 3, S, S]
    assert entry["matcher"]["profile"]["candidate_local"] == [[1, R, D], [2, R, D], [5, R, D]]
    assert sorted(p.name for p in (fake_bundle / "engines").iterdir()) == ["embedder.fp16.engine",
                                                                         "matcher.fp16.engine"]
    assert (tmp_path / "cache/tensorrt/timing.cache").read_bytes() == b"timing"
    assert not memory  # the check's backend freed its buffers

    backend = t.TensorRTBackend(fake_bundle, manifest, "fp16")
    assert backend.limits["embedder"].size == 4 and backend.name == "tensorrt"
    images = np.random.default_rng(1).standard_normal((3, 3, S, S)).astype(np.float32)
    out = backend.run("embedder", {"images": images})
    np.testing.assert_allclose(out["embedding"], fake_embedder(images)["embedding"], rtol=1e-6)
    assert out["embedding"].dtype == np.float32
    with pytest.raises(ValueError, match="Matcher chunks"):
        backend.run("embedder", {"images": np.zeros((5, 3, S, S), np.float32)})
    backend.close()
    assert not memory


def test_fake_failed_check_deletes_the_engines_and_keeps_the_manifest(fake_bundle, monkeypatch, tmp_path):
    """Fake TensorRT whose engines drift from ONNX Runtime: the check must refuse them."""
    from edgedml.runtime.inference import tensorrt as t

    install(monkeypatch, tmp_path, drift=0.5)
    before = (fake_bundle / "manifest.json").read_bytes()
    with pytest.raises(EdgeDMLError, match="failed their check"):
        t.build_engines(fake_bundle, "fp16", log=lambda m: None)
    assert (fake_bundle / "manifest.json").read_bytes() == before
    assert list((fake_bundle / "engines").iterdir()) == []


def test_precision_errors_and_missing_engines(fake_bundle, monkeypatch, tmp_path):
    from edgedml.runtime.inference import tensorrt as t

    install(monkeypatch, tmp_path)
    with pytest.raises(EdgeDMLError, match="CPUs"):
        t.build_engines(fake_bundle, "int8-cpu", log=lambda m: None)
    with pytest.raises(EdgeDMLError, match="no int8 graphs"):
        t.build_engines(fake_bundle, "int8", log=lambda m: None)
    with pytest.raises(BundleError, match="edgedml build-engine"):
        t.TensorRTBackend(fake_bundle, read_manifest(fake_bundle), "fp16")


def test_fake_engines_load_only_with_a_checksum(fake_bundle, monkeypatch, tmp_path):
    """An engine the manifest records but does not checksum is refused (issue 22, item 5)."""
    from edgedml.runtime.inference import tensorrt as t

    install(monkeypatch, tmp_path)
    t.build_engines(fake_bundle, "fp16", max_batch=4, max_candidates=5, log=lambda m: None)
    t.TensorRTBackend(fake_bundle, read_manifest(fake_bundle), "fp16").close()
    body = json.loads((fake_bundle / "manifest.json").read_text())
    del body["files"]["engines/matcher.fp16.engine"]
    (fake_bundle / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(BundleError, match="matcher.fp16.engine has no checksum"):
        t.TensorRTBackend(fake_bundle, read_manifest(fake_bundle), "fp16")


def test_fake_engine_check_reads_validation_data_only_inside_the_bundle(fake_bundle, monkeypatch, tmp_path):
    """Validation data symlinked out of the bundle (checksums rewritten to agree) is refused, and
    the manifest stays as it was (issue 22, item 5)."""
    from edgedml.runtime.inference import tensorrt as t

    install(monkeypatch, tmp_path)
    outside = tmp_path / "inputs.npz"
    (fake_bundle / "validation" / "inputs.npz").rename(outside)
    (fake_bundle / "validation" / "inputs.npz").symlink_to(outside)
    read_manifest(fake_bundle, verify=False).write(fake_bundle)
    before = (fake_bundle / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="validation/inputs.npz lies outside the bundle"):
        t.build_engines(fake_bundle, "fp16", log=lambda m: None)
    assert (fake_bundle / "manifest.json").read_bytes() == before


def test_fake_build_never_writes_through_a_symlink_out_of_the_bundle(fake_bundle, monkeypatch, tmp_path):
    """engines/ (or a staged engine) planted as a symlink to a user's folder or file: nothing of
    theirs is written (issue 22, item 5)."""
    from edgedml.runtime.inference import tensorrt as t

    install(monkeypatch, tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (fake_bundle / "engines").symlink_to(mine)
    with pytest.raises(BundleError, match="leads outside the bundle"):
        t.build_engines(fake_bundle, "fp16", log=lambda m: None)
    assert list(mine.iterdir()) == []
    (fake_bundle / "engines").unlink()
    (fake_bundle / "engines").mkdir()
    (mine / "thesis.txt").write_text("years of work")
    (fake_bundle / "engines" / "embedder.fp16.engine.tmp").symlink_to(mine / "thesis.txt")
    t.build_engines(fake_bundle, "fp16", max_batch=4, max_candidates=5, log=lambda m: None)
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_without_tensorrt_the_error_says_the_onnx_bundle_is_complete(fake_bundle, monkeypatch):
    from edgedml.runtime.inference import tensorrt as t

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt → ImportError
    assert "TensorRT is not installed" in t.availability()
    with pytest.raises(t.EngineUnavailable, match=r"complete.*edgedml build-engine .* --engine fp16"):
        t.build_engines(fake_bundle, "fp16", log=lambda m: None)


# --- the real thing -------------------------------------------------------------------------


def test_real_tensorrt_builds_and_checks_engines(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt")
    from edgedml.runtime.inference import tensorrt as t

    if t.availability():
        pytest.skip(t.availability())
    torch = pytest.importorskip("torch")
    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.models import ModelConfig, build_model

    monkeypatch.setenv("EDGEDML_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)

    model = build_model(ModelConfig(**TINY), pretrained=False).eval()
    export_bundle(model, tmp_path / "b", ExportOptions(validation_images=3), log=lambda m: None)
    entry = t.build_engines(tmp_path / "b", "fp32", max_batch=4, max_candidates=8, log=lambda m: None)
    assert entry["check"]["passed"]
    backend = t.TensorRTBackend(tmp_path / "b", read_manifest(tmp_path / "b"), "fp32")
    try:
        size = read_manifest(tmp_path / "b").embedder.inputs["images"][2]
        out = backend.run("embedder", {"images": np.zeros((2, 3, size, size), np.float32)})
        assert out["embedding"].shape[0] == 2
    finally:
        backend.close()
