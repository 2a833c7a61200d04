"""The commands a device runs: compare, calibrate, enroll, verify, identify, build-engine.

They use only ``edgedml.runtime`` (numpy, OpenCV, ONNX Runtime or TensorRT), imported when a
command runs; nothing here imports torch or onnx."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EdgeDMLError
from .common import EXIT_REJECTED, _build_engines_or_explain, _fail

EXPLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_PRECISION_CHOICE = click.Choice(["fp32", "fp16", "int8", "int8-cpu"])


@click.command()
@click.argument("image_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("image_b", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "bundle", required=True, type=click.Path(exists=True, file_okay=False),
              help="A bundle folder written by `edgedml export`.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--threshold", type=float, help="Decision threshold [default: the bundle's calibrated one].")
@click.option("--precision", type=_PRECISION_CHOICE, default="fp32", show_default=True,
              help="Which of the bundle's graph sets to run.")
@click.option("--explain", "explain_path", type=click.Path(dir_okay=False),
              help="Write the side-by-side explanation picture (PNG/JPEG) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compare(image_a, image_b, bundle, backend, threshold, precision, explain_path, as_json):
    """Compare two images: score, decision, and (with --explain) a picture of why."""
    if explain_path and (Path(explain_path).suffix.lower() not in EXPLAIN_SUFFIXES
                         or not Path(explain_path).resolve().parent.is_dir()):
        raise click.ClickException(f"--explain {explain_path}: give a path ending in "
                                   f"{', '.join(EXPLAIN_SUFFIXES)} in an existing folder")
    try:
        from ..runtime.matcher import Matcher

        matcher = Matcher(bundle, backend=backend, threshold=threshold, precision=precision)
        result = matcher.compare(image_a, image_b)
        if explain_path:
            import cv2

            if not cv2.imwrite(explain_path, result.render()):
                raise click.ClickException(f"could not write {explain_path}; use a .png or .jpg path in an "
                                           f"existing folder")
    except EdgeDMLError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"a": image_a, "b": image_b, "backend": matcher.backend.describe(),
                               **result.to_dict()}, indent=2))
        return
    decision = ("uncalibrated: run `edgedml calibrate` or pass --threshold" if result.is_match is None
                else ("MATCH" if result.is_match else "NO MATCH") + f" at threshold {result.threshold:.4f}")
    click.echo(f"score {result.score:.4f} (structural {result.structural:.4f} + global "
               f"{result.global_similarity:.4f}) via {matcher.backend.describe()}")
    click.echo(f"decision: {decision}")
    if explain_path:
        click.echo(f"explanation: {explain_path}")


_model_option = click.option("--model", "bundle", required=True, type=click.Path(exists=True, file_okay=False),
                             help="A bundle folder written by `edgedml export`.")
_threshold_option = click.option("--threshold", type=float,
                                 help="Decision threshold [default: the bundle's calibrated one].")
_precision_option = click.option("--precision", type=_PRECISION_CHOICE, default="fp32", show_default=True,
                                 help="Which of the bundle's graph sets to run (a gallery keeps to one).")


def _open_gallery(gallery, bundle, threshold, precision="fp32"):
    from ..runtime.gallery import Gallery
    from ..runtime.matcher import Matcher

    return Gallery(gallery, Matcher(bundle, precision=precision), threshold=threshold)


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images (one folder per identity).")
@click.option("--per-class", type=int, help="Use at most this many images of each class.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto")
@_precision_option
def calibrate(bundle, data, per_class, backend, precision):
    """Score all genuine and impostor pairs of --data; write EER, TAR at FAR 1e-2/1e-3/1e-4 and
    their thresholds into the bundle, with a ROC curve and score histograms (PNG)."""
    from ..runtime.calibration import calibrate as run

    try:
        report = run(bundle, data, per_class, backend, progress=True, precision=precision)
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"{report['images']} images, {report['genuine_pairs']} genuine and {report['impostor_pairs']} "
               f"impostor pairs; EER {report['eer']:.4f}")
    if report.get("skipped"):
        click.echo(f"skipped {len(report['skipped'])} unreadable images (listed above, and in the manifest)")
    for name, entry in report["thresholds"].items():
        click.echo(f"  {name:<10} threshold {entry['threshold']:.4f}  FAR {entry['far']:.2e}  TAR {entry['tar']:.4f}")
    click.echo(f"written to {bundle}/manifest.json, calibration_roc.png, calibration_scores.png")


@click.command()
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_model_option
@_precision_option
def enroll(gallery, name, images, bundle, precision):
    """Enroll NAME into the GALLERY file (SQLite) from one or more images, all or nothing."""
    try:
        with _open_gallery(gallery, bundle, None, precision) as g:
            count = g.enroll(name, list(images))
            total = g.identities()[name]
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"enrolled {name!r}: {count} new templates ({total} in all) in {gallery}")


def _report(decision, as_json, kind):
    if as_json:
        click.echo(json.dumps({"kind": kind, "accepted": decision.accepted, "name": decision.name,
                               "score": decision.score, "threshold": decision.threshold,
                               "candidates": [c.__dict__ for c in decision.candidates]}, indent=2))
    else:
        verdict = "ACCEPTED" if decision.accepted else "REJECTED"
        click.echo(f"{verdict}: {decision.name} score {decision.score:.4f} (threshold {decision.threshold:.4f})")
        for c in decision.candidates[1:]:
            click.echo(f"  then {c.name} {c.score:.4f}")
    if not decision.accepted:
        raise SystemExit(EXIT_REJECTED)


@click.command()
@click.argument("gallery", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@_model_option
@_threshold_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@_precision_option
def verify(gallery, image, name, bundle, threshold, as_json, log, precision):
    """1:1 — is IMAGE the enrolled NAME? Exit 0 accepted, 4 rejected, 1 on error."""
    try:
        with _open_gallery(gallery, bundle, threshold, precision) as g:
            decision = g.verify(image, name)
            if log:
                g.log_decision("verify", decision, claimed=name, details={"image": image})
    except EdgeDMLError as exc:
        _fail(exc)
    _report(decision, as_json, "verify")


@click.command()
@click.argument("gallery", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@_model_option
@_threshold_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many identities to list, best first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@_precision_option
def identify(gallery, image, bundle, threshold, top_k, as_json, log, precision):
    """1:N — who in GALLERY is IMAGE? Exit 0 when the best is above the threshold, 4 otherwise."""
    try:
        with _open_gallery(gallery, bundle, threshold, precision) as g:
            decision = g.identify(image, top_k=top_k)
            if log:
                g.log_decision("identify", decision, details={"image": image})
    except EdgeDMLError as exc:
        _fail(exc)
    _report(decision, as_json, "identify")


@click.command(name="build-engine")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--engine", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="The bundle's graph set to build (the precision is in the graphs; INT8 was calibrated at export).")
@click.option("--max-batch", default=8, show_default=True)
@click.option("--max-candidates", default=100, show_default=True)
def build_engine_command(bundle, engine, max_batch, max_candidates):
    """Build strongly typed TensorRT engines from a bundle's ONNX graphs, on the target device
    (engines do not move between GPUs or TensorRT versions): export on a workstation, build on
    the Jetson. Needs no torch. Every engine is checked against ONNX Runtime's stored outputs."""
    try:
        _build_engines_or_explain(bundle, engine, max_batch, max_candidates)
    except EdgeDMLError as exc:
        _fail(exc)


COMMANDS = [compare, calibrate, enroll, verify, identify, build_engine_command]  # in `edgedml --help` order
