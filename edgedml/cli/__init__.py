"""The `edgedml` command line. Each command imports the heavy packages it needs, when it runs.

- ``training``: train, eval, export (torch, onnx)
- ``device``: the device section, in order (``edgedml.runtime`` only): compare, crop-faces,
  build-engine, bundles, and the commands of
  - ``gallery``: enroll, verify, identify, revoke, gallery backup;
  - ``assurance``: calibrate, faithfulness;
- ``options``: the options the device commands share (--model, --precision, --detector, …)
- ``common``: exit codes, one-line errors and engine building, used by both
- ``params``: option types, and ``forms``: the old argument forms, read for one release
"""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path

import click

from .. import __version__
from . import device, training
from .common import EXIT_NO_ENGINE, EXIT_REJECTED

__all__ = ["EXIT_NO_ENGINE", "EXIT_REJECTED", "collect_info", "main"]


class SectionedGroup(click.Group):
    """A group whose --help lists its commands under a heading per section, in the order added."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sections: list[tuple[str, list[click.Command]]] = []

    def add_section(self, title: str, commands: list[click.Command]) -> None:
        for command in commands:
            self.add_command(command)
        self.sections.append((title, commands))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # names padded to one width, so that the help texts of every section line up
        width = max(len(command.name) for _, commands in self.sections for command in commands)
        limit = formatter.width - 6 - width  # as click.Group's: three times the default spacing
        for title, commands in self.sections:
            with formatter.section(title):
                formatter.write_dl([(c.name.ljust(width), c.get_short_help_str(limit)) for c in commands])


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgedml")
def main() -> None:
    """edgedml: interpretable deep metric learning, from training to devices."""


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except Exception:  # not installed, or broken: report it as absent rather than crash `info`
        return None


def collect_info() -> dict:
    """What is installed: versions of the optional packages, ONNX Runtime providers, GPUs."""
    info: dict = {
        "edgedml": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(module) for name, module in [
            ("numpy", "numpy"), ("opencv", "cv2"), ("torch", "torch"), ("torchvision", "torchvision"),
            ("timm", "timm"), ("pytorch-metric-learning", "pytorch_metric_learning"), ("pot", "ot"),
            ("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt"),
        ]},
    }
    shipped = Path(__file__).resolve().parents[1] / "presets"  # the trained presets' files (no torch to list them)
    info["presets"] = sorted(p.stem for p in shipped.glob("*.safetensors")) + ["imagenet"]
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = []
    gpus: list[str] = []
    if info["packages"]["torch"]:
        import torch

        info["torch_cuda"] = torch.cuda.is_available()
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import cv2

        info["opencv_cuda_devices"] = int(cv2.cuda.getCudaEnabledDeviceCount())
    except Exception:  # OpenCV built without its CUDA module
        info["opencv_cuda_devices"] = 0
    info["gpus"] = gpus
    info["tensorrt"] = _tensorrt_found()
    info["cuda_gpu"] = _cuda_gpu()
    return info


def _tensorrt_found() -> dict:
    """TensorRT as this environment imports it: its version and folder, and whether that folder
    is this environment's (pip) or the system's (JetPack's python3-libnvinfer, seen through a
    venv made with --system-site-packages)."""
    import sys

    try:
        import tensorrt
    except Exception as exc:  # not installed, or a broken install: say so rather than crash `info`
        from ..runtime.inference.tensorrt.gpu import install_hint

        return {"version": None, "problem": f"{type(exc).__name__}: {exc}", "fix": install_hint()}
    file = getattr(tensorrt, "__file__", None)
    folder = Path(file).resolve().parents[1] if file else None
    inside = folder is not None and folder.is_relative_to(Path(sys.prefix).resolve())
    return {"version": str(getattr(tensorrt, "__version__", "unknown")), "folder": str(folder) if folder else None,
            "source": "this environment (pip)" if inside else "the system, outside this environment"}


def _cuda_gpu() -> dict:
    """GPU 0 as cuda-python sees it (no torch needed), or why none is seen."""
    try:
        from ..runtime.inference.tensorrt.gpu import gpu_info

        return gpu_info()
    except Exception as exc:  # EngineUnavailable (no cuda-python, no GPU) or a broken driver
        return {"gpu": None, "problem": str(exc)}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Report what is installed: torch, ONNX Runtime providers, TensorRT, GPUs."""
    data = collect_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"edgedml {data['edgedml']} on Python {data['python']} ({data['platform']})")
    for name, version in data["packages"].items():
        if name != "tensorrt":  # in the inference block below, with where it came from
            click.echo(f"  {name:<24} {version or 'not installed'}")
    trt, gpu = data["tensorrt"], data["cuda_gpu"]
    click.echo("  inference on this machine:")
    providers = ", ".join(data["onnxruntime_providers"]) or "none (onnxruntime not installed)"
    click.echo(f"    onnxruntime providers  {providers}")
    click.echo("    TensorRT               " + (f"{trt['version']} from {trt['folder']} ({trt['source']})"
                                                if trt["version"] else f"not found (fix: {trt['fix']})"))
    click.echo("    CUDA GPU (cuda-python) " + (f"{gpu['gpu']}, compute capability {gpu['compute_capability']}"
                                                if gpu.get("gpu") else f"none: {gpu['problem']}"))
    click.echo(f"  GPUs                     {', '.join(data['gpus']) or 'none visible to torch'}")
    click.echo(f"  OpenCV CUDA devices      {data['opencv_cuda_devices']}")
    click.echo(f"  presets (--checkpoint)   {', '.join(data['presets'])}")


main.add_section("Training and export (torch)", training.COMMANDS)
main.add_section("On the device (numpy + OpenCV)", device.COMMANDS)
main.add_section("General", [info])
