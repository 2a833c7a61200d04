import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import BLOCK_TORCH

import edgedml
from edgedml.bundle import GraphIO, Manifest, read_manifest
from edgedml.cli import main
from edgedml.errors import BundleError, ChecksumError
from edgedml.preprocessing import PreprocessSpec


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and edgedml.__version__ in result.output


def test_info_reports_installed_packages():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["packages"]["numpy"] and data["packages"]["opencv"]
    assert "tensorrt" in data["packages"] and isinstance(data["gpus"], list)
    text = CliRunner().invoke(main, ["info"])
    assert text.exit_code == 0 and "onnxruntime providers" in text.output


def test_manifest_checksums_catch_tampering(tmp_path):
    (tmp_path / "embedder.onnx").write_bytes(b"graph bytes")
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "e.plan").write_bytes(b"engine")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ep.engine").write_bytes(b"a device's cache")
    (tmp_path / "calibration_roc.png").write_bytes(b"a report")
    graph = GraphIO("embedder.onnx", {"images": ["batch", 3, 224, 224]}, {"embedding": ["batch", 8]})
    Manifest(model={"head": "diml"}, preprocessing=PreprocessSpec(), embedder=graph, matcher=graph).write(tmp_path)
    manifest = read_manifest(tmp_path)
    assert set(manifest.files) == {"embedder.onnx", "engines/e.plan"}  # caches and reports excluded by rule
    (tmp_path / "cache" / "ep.engine").write_bytes(b"rebuilt")  # a cache may change without breaking the bundle
    read_manifest(tmp_path)
    (tmp_path / "embedder.onnx").write_bytes(b"graph bytez")
    with pytest.raises(ChecksumError, match="embedder.onnx"):
        read_manifest(tmp_path)
    (tmp_path / "engines" / "e.plan").unlink()
    with pytest.raises(ChecksumError):
        read_manifest(tmp_path, verify=True)
    assert read_manifest(tmp_path, verify=False).model == {"head": "diml"}


def test_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(BundleError, match="edgedml export"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("module", ["edgedml", "edgedml.runtime", "edgedml.bundle", "edgedml.preprocessing",
                                    "edgedml.errors", "edgedml.cli"])
def test_light_modules_import_without_torch(module):
    code = BLOCK_TORCH + f"import {module}\nassert 'torch' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_info_runs_without_torch():
    code = BLOCK_TORCH + "from edgedml.cli import main\nmain(['info'])\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "torch" in out.stdout and "not installed" in out.stdout


def _tiny_bundle(root):
    (root / "embedder.onnx").write_bytes(b"graph bytes")
    graph = GraphIO("embedder.onnx", {"images": ["batch", 3, 224, 224]}, {"embedding": ["batch", 8]})
    return Manifest(model={}, preprocessing=PreprocessSpec(), embedder=graph, matcher=graph).write(root)


def test_manifest_update_rewrites_fields_and_checksums_and_keeps_unknown_keys(tmp_path):
    _tiny_bundle(tmp_path)
    body = json.loads((tmp_path / "manifest.json").read_text())
    body["from_a_newer_edgedml"] = {"kept": True}
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    manifest = read_manifest(tmp_path, verify=False)
    (tmp_path / "engine.plan").write_bytes(b"new engine")
    updated = manifest.update(thresholds={"default": {"threshold": 0.7}})
    again = read_manifest(tmp_path)  # the new file is checksummed, the old ones still verify
    assert again == updated and again.thresholds["default"]["threshold"] == 0.7
    assert "engine.plan" in again.files and again.extra == {"from_a_newer_edgedml": {"kept": True}}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_malformed_graph_entry_is_a_bundle_error_naming_it(tmp_path):
    _tiny_bundle(tmp_path)
    body = json.loads((tmp_path / "manifest.json").read_text())
    body["matcher"]["input"] = body["matcher"].pop("inputs")
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(BundleError, match="matcher.*re-export"):
        read_manifest(tmp_path)
