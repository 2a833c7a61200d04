"""`edgedml export --engine fp16` as typed (fp16 checked on the photos that install with edgedml,
the ONNX bundle written, exit 3 in one line without TensorRT), INT8's need of --calib, the
[gpu] extra's environment markers, and what `edgedml info` says about TensorRT and the GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from edgedml.cli import EXIT_NO_ENGINE, main
from edgedml.errors import ConfigError
from edgedml.export.image_sets import SHIPPED_VALIDATION, shipped_validation_folder

TINY = dict(image_size=64, grid=2, upsample=4)


def _no_tensorrt_here():
    from edgedml.runtime.inference.tensorrt import availability

    if availability() is None:
        pytest.skip("TensorRT and a GPU are present here: engines would be built")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from edgedml.models import ModelConfig, build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(build_model(ModelConfig(**TINY), pretrained=False).eval(), path)
    return path


@pytest.mark.slow  # a full export by the CLI, in a subprocess
def test_export_engine_fp16_alone_writes_the_bundle_checked_on_the_shipped_photos_and_exits_3(tiny_checkpoint,
                                                                                             tmp_path):
    """No --precision, --calib or --validate-with: fp16 is added, checked against fp32 on the 8
    photos that install with edgedml, the bundle is written, and without TensorRT the command
    ends with exit 3 and one error line saying how to build the engines on the target."""
    _no_tensorrt_here()
    out = tmp_path / "b"
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                                       "--engine", "fp16"])
    assert result.exit_code == EXIT_NO_ENGINE, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [result.stderr.splitlines()[-1]], result.stderr  # one line, the last
    assert "TensorRT is not installed here" in errors[0]
    assert f"edgedml build-engine --model {out} --engine fp16" in errors[0]
    assert "8 photos that install with edgedml" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"fp32", "fp16"} and manifest["engines"] == {}
    assert (out / manifest["graphs"]["fp16"]["embedder"]).is_file()
    assert manifest["validation"]["images"] == f"8 real images from {SHIPPED_VALIDATION}"  # no machine's path
    fp16 = manifest["validation"]["precisions"]["fp16"]
    assert fp16["embedder"]["embedding_cosine_mean"] >= 0.999  # the bound the export enforced
    assert "validation/outputs.fp16.npz" in manifest["files"]
    assert "fp16: embedding cosine to fp32" in result.stdout


def test_int8_without_calib_is_one_line_naming_the_users_domain_and_writes_nothing(tiny_checkpoint, tmp_path):
    for engine in ("int8",):
        result = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_checkpoint), "--out",
                                           str(tmp_path / "b"), "--engine", engine])
        assert result.exit_code == 1, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "your own domain" in result.stderr and "--calib DIR" in result.stderr
        assert not (tmp_path / "b").exists()


def test_export_options_need_calib_for_int8_only():
    from edgedml.export.exporter import ExportOptions

    assert ExportOptions(engine="fp16").precisions == ("fp32", "fp16")
    assert ExportOptions(precisions="fp32,fp16").precisions == ("fp32", "fp16")
    for asked in ({"precisions": "fp32,int8-cpu"}, {"engine": "int8"}, {"precisions": "fp16,int8"}):
        with pytest.raises(ConfigError, match="your own domain.*--calib DIR"):
            ExportOptions(**asked)


def test_the_shipped_validation_photos_decode_and_each_has_its_licence():
    """Every image in edgedml/validation_images decodes through the deployment decoder and is
    listed in its README with a public-domain or CC0 licence (an undocumented file fails)."""
    from edgedml.runtime.inference.image import image_extensions, load_image

    folder = shipped_validation_folder()
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in image_extensions())
    assert len(photos) == 8 and sum(p.stat().st_size for p in photos) < 300_000
    readme = (folder / "README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines() if line.startswith("| `")}
    assert set(rows) == {p.name for p in photos}
    for photo in photos:
        assert "public domain" in rows[photo.name] or "CC0" in rows[photo.name], rows[photo.name]
        assert min(load_image(photo).shape[:2]) == 256


def test_export_images_default_to_the_shipped_photos_only_for_fp16():
    from edgedml.export import image_sets
    from edgedml.preprocessing import PreprocessSpec

    args = dict(calib=None, calib_images=64, quantize=False, validate_with=None, validation_images=8,
                validate_data=None)
    fp16 = image_sets.export_images(PreprocessSpec(size=64), compare_precisions=True, **args)
    assert fp16.validation.folder == SHIPPED_VALIDATION and fp16.validation.images.shape == (8, 3, 64, 64)
    assert any("photos that install with edgedml" in w for w in fp16.warnings)
    assert image_sets.export_images(PreprocessSpec(size=64), compare_precisions=False, **args).validation is None
    mine = image_sets.export_images(PreprocessSpec(size=64), compare_precisions=True,
                                    **{**args, "validate_with": str(ROOT / "samples" / "images")})
    assert mine.validation.folder == str(ROOT / "samples" / "images") and len(mine.validation.files) == 3


def test_missing_shipped_photos_are_one_line_with_the_fix(monkeypatch, tmp_path):
    from edgedml.export import image_sets
    from edgedml.preprocessing import PreprocessSpec

    monkeypatch.setattr(image_sets, "shipped_validation_folder", lambda: tmp_path)
    with pytest.raises(ConfigError, match=r"missing or unreadable .*reinstall edgedml, or pass --validate-with DIR"):
        image_sets.export_images(PreprocessSpec(size=64), calib=None, calib_images=64, quantize=False,
                                 validate_with=None, validation_images=8, validate_data=None,
                                 compare_precisions=True)


# --- the [gpu] extra's environment markers ---------------------------------------------------

PLATFORMS = {  # (sys_platform, platform_machine) → the [gpu] packages pip is asked for there
    ("linux", "x86_64"): {"onnxruntime-gpu", "tensorrt", "cuda-python"},
    ("win32", "AMD64"): {"onnxruntime-gpu", "tensorrt", "cuda-python"},
    ("linux", "aarch64"): {"cuda-python"},  # a Jetson: TensorRT is JetPack's
    ("win32", "ARM64"): set(),
    ("darwin", "arm64"): set(),
    ("darwin", "x86_64"): set(),
}


@pytest.mark.parametrize("where, wanted", PLATFORMS.items(), ids=["-".join(p) for p in PLATFORMS])
def test_gpu_extra_never_asks_for_tensorrt_or_onnxruntime_gpu_where_pypi_has_none(where, wanted):
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    env = {"sys_platform": where[0], "platform_machine": where[1]}
    asked = [requirements.Requirement(line) for line in extra]
    chosen = [r for r in asked if r.marker is None or r.marker.evaluate(env)]
    assert {r.name for r in chosen} == wanted
    assert len(chosen) == len({r.name for r in chosen})  # one pin per package and platform
    if where == ("linux", "aarch64"):
        (cuda,) = chosen
        assert "13.0" not in cuda.specifier and "12.6" in cuda.specifier  # JetPack 6's CUDA 12


# --- edgedml info: TensorRT, where it came from, the GPU ------------------------------------


def test_info_reports_tensorrt_its_origin_and_the_gpu_with_a_fake_tensorrt(monkeypatch, tmp_path):
    """A fake TensorRT 10.3 as JetPack installs it (outside the venv) and a fake cuda-python:
    `info` names the version, the folder, that it is the system's, and the GPU."""
    from fake_tensorrt import install

    install(monkeypatch, tmp_path, "10.3.0")
    sys.modules["tensorrt"].__file__ = "/usr/lib/python3.10/dist-packages/tensorrt/__init__.py"
    data = json.loads(CliRunner().invoke(main, ["info", "--json"]).output)
    assert data["tensorrt"] == {"version": "10.3.0", "folder": "/usr/lib/python3.10/dist-packages",
                                "source": "the system, outside this environment"}
    assert data["cuda_gpu"] == {"gpu": "Fake GPU", "compute_capability": "8.7"}
    text = CliRunner().invoke(main, ["info"]).output
    assert ("TensorRT               10.3.0 from /usr/lib/python3.10/dist-packages (the system, outside this "
            "environment)") in text
    assert "CUDA GPU (cuda-python) Fake GPU, compute capability 8.7" in text
    assert "onnxruntime providers  " in text
    sys.modules["tensorrt"].__file__ = str(Path(sys.prefix) / "lib" / "site-packages" / "tensorrt" / "__init__.py")
    assert json.loads(CliRunner().invoke(main, ["info", "--json"]).output)["tensorrt"]["source"] == \
        "this environment (pip)"


def test_info_without_tensorrt_gives_the_fix_of_this_platform(monkeypatch):
    import platform

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt → ImportError
    text = CliRunner().invoke(main, ["info"]).output
    assert 'TensorRT               not found (fix: pip install "edgedml[gpu]")' in text
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(sys, "platform", "linux")
    text = CliRunner().invoke(main, ["info"]).output
    assert "apt install python3-libnvinfer" in text and "--system-site-packages" in text


def test_info_block_runs_with_torch_and_onnx_blocked():
    from conftest import BLOCK_TORCH

    code = BLOCK_TORCH + "from edgedml.cli import main\nmain(['info'])\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "TensorRT " in done.stdout and "CUDA GPU (cuda-python)" in done.stdout


@pytest.mark.slow
def test_export_engine_fp16_as_typed_on_the_objects_preset(tmp_path):
    """The README's command, exactly: `edgedml export --out b --engine fp16` (the objects preset)."""
    pytest.importorskip("torch")
    _no_tensorrt_here()
    done = subprocess.run([sys.executable, "-m", "edgedml.cli", "export", "--out", "b", "--engine", "fp16"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == EXIT_NO_ENGINE, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: TensorRT is not installed here")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"fp32", "fp16"}
    assert manifest["validation"]["precisions"]["fp16"]["embedder"]["embedding_cosine_mean"] >= 0.999
