"""The `edgedml` command line. Each command imports the heavy packages it needs, when it runs."""

from __future__ import annotations

import importlib
import json
import platform

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    return info


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Report what is installed: torch, ONNX Runtime providers, TensorRT, GPUs."""
    data = collect_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"edgedml {data['edgedml']} on Python {data['python']} ({data['platform']})")
    for name, version in data["packages"].items():
        click.echo(f"  {name:<24} {version or 'not installed'}")
    click.echo(f"  onnxruntime providers    {', '.join(data['onnxruntime_providers']) or 'none'}")
    click.echo(f"  GPUs                     {', '.join(data['gpus']) or 'none visible to torch'}")
    click.echo(f"  OpenCV CUDA devices      {data['opencv_cuda_devices']}")


if __name__ == "__main__":  # pragma: no cover
    main()
