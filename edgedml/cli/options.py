"""The options the device commands share, with one help text each: the bundle (``--model``: one
to read, a shipped name allowed, or one of your own that the command writes into),
``--backend``, ``--precision``, ``--detector`` and ``--threshold``.

Imports neither torch nor onnx (the device commands use it)."""

from __future__ import annotations

import click

from .params import BundleFolder, DetectorSpec, Threshold, WritableBundle

BUNDLE = BundleFolder()
BUNDLE_HELP = ("A bundle folder written by `edgedml export`, or a shipped bundle: objects or faces (`edgedml bundles` "
               "lists them; a bundle folder of that name here wins).")
OWN_BUNDLE_HELP = ("A bundle folder of your own, which this command writes into (a shipped bundle is refused: copy the "
                   "folder `edgedml bundles` prints).")
EXPLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # the pictures --explain and --plot write
BACKEND_CHOICE = click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"])
PRECISION_CHOICE = click.Choice(["fp32", "fp16", "int8", "int8-cpu"])
detector_option = click.option(
    "--detector", type=DetectorSpec(), metavar="yunet:PATH|none",
    help="Detect faces first and embed the largest one's aligned crop (a YuNet ONNX file), or none for whole "
         "images [default: the bundle's detector, if it was exported with one].")
model_option = click.option("--model", "bundle", required=True, type=BUNDLE, help=BUNDLE_HELP)
own_model_option = click.option("--model", "bundle", required=True, type=WritableBundle(), help=OWN_BUNDLE_HELP)
threshold_option = click.option("--threshold", type=Threshold(),
                                help="Decision threshold, a score in (-2, 2] [default: the bundle's calibrated one].")
precision_option = click.option("--precision", type=PRECISION_CHOICE, default="fp32", show_default=True,
                                help="Which of the bundle's graph sets to run (a gallery keeps to one).")
