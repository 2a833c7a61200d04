"""Option types the training and the device commands share: a value out of its range, or a file
named through an option that does not exist, is a usage error (exit 2) before any work starts.

Imports neither torch nor onnx (the device commands use it)."""

from __future__ import annotations

import math
from pathlib import Path

import click


class FiniteFloat(click.FloatRange):
    """A float in [min, max] (bounds optional, open or closed) that is never NaN or infinite:
    click's FloatRange lets NaN through, since every comparison with it is false."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


COUNT = click.IntRange(min=1)  # batch sizes, epochs, iterations, images: at least one
NON_NEGATIVE = click.IntRange(min=0)  # worker processes, frozen stages: zero is "none"
RATE = FiniteFloat(min=0, min_open=True)  # learning rates: finite and > 0
WEIGHT = FiniteFloat(min=0)  # loss weights: finite and ≥ 0
FRACTION = FiniteFloat(0, 1, max_open=True)  # a share of classes held out: [0, 1)
OPEN_UNIT = FiniteFloat(0, 1, min_open=True, max_open=True)  # partial transport's mass, a face score: (0, 1)
MARGIN = FiniteFloat(-0.25, 2)  # a face crop's margin, as DetectorSettings bounds it


class Threshold(click.ParamType):
    """A decision threshold: finite and inside the score's range (``runtime.thresholds``): at the
    range's floor or below every pair is accepted, above its top none is. A threshold refused
    only because of a bundle's calibration is refused when the bundle is read (exit 1)."""

    name = "FLOAT"

    def convert(self, value, param, ctx):
        from ..errors import ConfigError
        from ..runtime.assurance.thresholds import check_threshold

        number = click.FLOAT.convert(value, param, ctx)
        try:
            return check_threshold(number)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class DetectorSpec(click.ParamType):
    """``yunet:PATH`` (the file must exist) or ``none``."""

    name = "yunet:PATH|none"

    def convert(self, value, param, ctx):
        from ..runtime.faces.detection import DetectorError, parse_spec

        try:
            kind, path = parse_spec(value)
        except DetectorError as exc:
            self.fail(str(exc), param, ctx)
        if path is not None and not path.is_file():
            self.fail(f"{kind}:{path}: the file {path} does not exist", param, ctx)
        return value


class BackboneWeights(click.ParamType):
    """A local weights file that exists, or ``random`` (an untrained backbone)."""

    name = "PATH|random"

    def convert(self, value, param, ctx):
        if value == "random":
            return value
        if not Path(value).is_file():
            self.fail(f"the weights file {value} does not exist (or is not a file); pass a local state dict "
                      f"(.safetensors or .pth) or random", param, ctx)
        return value


class OutputFile(click.ParamType):
    """A file to write: its folder must exist, it must not be a folder, and (with ``suffixes``) its
    suffix must be one of them; checked before the command's work starts."""

    name = "FILE"

    def __init__(self, suffixes: tuple[str, ...] = ()):
        self.suffixes = suffixes

    def convert(self, value, param, ctx):
        path = Path(value)
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            self.fail(f"{value}: give a path ending in {', '.join(self.suffixes)}", param, ctx)
        if path.is_dir():
            self.fail(f"{value} is a folder; give a file path", param, ctx)
        if not path.resolve().parent.is_dir():
            self.fail(f"the folder {path.parent} does not exist; create it first or write elsewhere", param, ctx)
        return value


class BundleFolder(click.ParamType):
    """``--model``: a bundle folder, or a shipped bundle's name (objects, faces), resolved by
    :func:`edgedml.runtime.shipped.resolve_bundle` (a bundle folder of that name in the working
    directory wins); a missing folder is a usage error (exit 2)."""

    name = "BUNDLE"

    def convert(self, value, param, ctx):
        from ..errors import EdgeDMLError
        from ..runtime.shipped import resolve_bundle

        try:
            folder = resolve_bundle(value)
        except EdgeDMLError as exc:
            self.fail(str(exc), param, ctx)
        return click.Path(exists=True, file_okay=False).convert(str(folder), param, ctx)


class WritableBundle(BundleFolder):
    """``--model`` of a command that writes into the bundle (calibrate, build-engine): a bundle
    folder of one's own. A shipped bundle (by name or by its installed folder) is part of the
    package, the same for every user and replaced by the next install: refused in one line
    (exit 2), telling to copy it first."""

    def convert(self, value, param, ctx):
        from ..runtime.shipped import bundles_folder
        from .forms import FormError

        path = super().convert(value, param, ctx)
        folder = Path(path).resolve()
        if folder.is_relative_to(bundles_folder().resolve()):
            command = ctx.command.name if ctx is not None else "this command"
            raise FormError(f"--model {value}: {command} writes into the bundle, and {folder} is a shipped bundle "
                            f"(part of the installed package): copy the folder `edgedml bundles` prints (cp -r "
                            f"{folder} my-{folder.name}) and pass --model my-{folder.name}")
        return path
