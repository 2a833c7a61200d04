import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import BLOCK_TORCH

import edgedml
from edgedml.bundle import read_manifest, write_manifest
from edgedml.cli import main
from edgedml.errors import BundleError, ChecksumError


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
    write_manifest(tmp_path, {"model": {"head": "diml"}, "preprocessing": {}, "embedder": {}, "matcher": {}})
    manifest = read_manifest(tmp_path)
    assert set(manifest["files"]) == {"embedder.onnx", "engines/e.plan"}
    (tmp_path / "embedder.onnx").write_bytes(b"graph bytez")
    with pytest.raises(ChecksumError, match="embedder.onnx"):
        read_manifest(tmp_path)
    (tmp_path / "engines" / "e.plan").unlink()
    with pytest.raises(ChecksumError):
        read_manifest(tmp_path, verify=True)
    assert read_manifest(tmp_path, verify=False)["model"] == {"head": "diml"}


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
