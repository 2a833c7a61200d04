"""The commands a device runs, in ``edgedml --help`` order (:data:`COMMANDS`): ``compare`` (two
images: score, decision and, with ``--explain``, a picture of why), the gallery commands
(:mod:`.gallery`), ``calibrate`` and ``faithfulness`` (:mod:`.assurance`), ``crop-faces``,
``build-engine`` and ``bundles`` (the shipped bundles, which ``--model objects|faces`` names).

One argument order: the gallery first, then the identity, then images; the bundle always as
``--model`` (a shipped name refused where the command writes into it, :mod:`.options`). The old
forms are read by :mod:`.forms`, with a notice, for one release.

They use only ``edgedml.runtime`` (numpy, OpenCV, ONNX Runtime or TensorRT), imported when a
command runs; nothing here imports torch or onnx."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EdgeDMLError
from .assurance import calibrate, faithfulness
from .common import EXIT_REJECTED, EXIT_UNDECIDED, _build_engines_or_explain, _fail
from .forms import Rewritten, bundle_option
from .gallery import enroll, gallery, identify, revoke, verify
from .options import (
    BACKEND_CHOICE,
    EXPLAIN_SUFFIXES,
    PRECISION_CHOICE,
    detector_option,
    model_option,
    own_model_option,
    threshold_option,
)
from .params import COUNT, MARGIN, DetectorSpec, OutputFile


@click.command()
@click.argument("image_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("image_b", type=click.Path(exists=True, dir_okay=False))
@model_option
@click.option("--backend", type=BACKEND_CHOICE, default="auto", show_default=True)
@threshold_option
@click.option("--precision", type=PRECISION_CHOICE, default="fp32", show_default=True,
              help="Which of the bundle's graph sets to run.")
@click.option("--explain", "explain_path", type=OutputFile(EXPLAIN_SUFFIXES),
              help="Write the side-by-side explanation picture (PNG/JPEG) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@detector_option
@click.option("--check", is_flag=True,
              help="Also measure how faithful the evidence map is: its deletion AUC against a random order's.")
def compare(image_a, image_b, bundle, backend, threshold, precision, explain_path, as_json, detector, check):
    """Compare two images: score, decision, and (with --explain) a picture of why. Exit 0 MATCH,
    4 NO MATCH (a face missing too), 5 no decision (no calibrated threshold and no --threshold)."""
    try:
        from ..runtime.matching.matcher import Matcher

        matcher = Matcher(bundle, backend=backend, threshold=threshold, precision=precision, detector=detector)
        why = matcher.explain(image_a, image_b) if explain_path or check else None  # the pictures, when needed
        result = why.result if why is not None else matcher.compare(image_a, image_b)
        check_result = matcher.faithfulness(why) if check and result.reason is None else None
        if explain_path:
            import cv2

            if not cv2.imwrite(explain_path, why.render()):
                raise click.ClickException(f"could not write {explain_path}; use a .png or .jpg path in an "
                                           f"existing folder")
    except EdgeDMLError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"a": image_a, "b": image_b, "backend": matcher.backend.describe(),
                               **result.to_dict(), **({"faithfulness": check_result} if check_result else {})},
                              indent=2))
    else:
        _print_comparison(result, matcher, explain_path, check_result)
    if result.is_match is None:  # exit 0 only for MATCH: a script must never read "no decision" as one
        raise SystemExit(EXIT_UNDECIDED)
    if not result.is_match:
        raise SystemExit(EXIT_REJECTED)


def _print_comparison(result, matcher, explain_path, check_result) -> None:
    if result.reason:
        click.echo(f"no score via {matcher.backend.describe()}, detector {matcher.detector.describe()}")
        click.echo(f"decision: NO MATCH ({result.reason})")
    else:
        decision = ("uncalibrated: run `edgedml calibrate` or pass --threshold" if result.is_match is None
                    else ("MATCH" if result.is_match else "NO MATCH") + f" at threshold {result.threshold:.4f}")
        click.echo(f"score {result.score:.4f} (structural {result.structural:.4f} + global "
                   f"{result.global_similarity:.4f}) via {matcher.backend.describe()}")
        for name, face in (("a", result.face_a), ("b", result.face_b)):
            if face is not None:
                x, y, w, h = face.box
                click.echo(f"face in {name}: {w:.0f}×{h:.0f} px at ({x:.0f}, {y:.0f}), detector score {face.score:.2f}")
        click.echo(f"decision: {decision}")
    if explain_path:
        click.echo(f"explanation: {explain_path}")
    if check_result:
        verdict = "faithful" if check_result["evidence_deletion_auc"] < check_result["random_deletion_auc"] else \
            "no more faithful than a random order"
        click.echo(f"faithfulness: deletion AUC {check_result['evidence_deletion_auc']:.3f} for the evidence map, "
                   f"{check_result['random_deletion_auc']:.3f} for a random order ({verdict} on this pair; lower is "
                   f"better)")


@click.command(name="crop-faces")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--detector", "spec", required=True, type=DetectorSpec(), metavar="yunet:PATH",
              help="The face detector (a YuNet ONNX file).")
@click.option("--chip", type=click.Choice(["square", "dlib"]), default="square", show_default=True,
              help="The crop: a square around the face box (--margin, --align), or dlib's 150×150 face chip (the "
                   "crop of a dlib_resnet bundle).")
@click.option("--margin", type=MARGIN, help="Square crops: margin around the face box [default: the detector's "
                                            "default].")
@click.option("--align/--no-align", default=None, help="Square crops: level the eyes [default: align].")
@click.option("--overwrite", is_flag=True,
              help="Replace OUT when it holds nothing but the crops an earlier crop-faces run wrote there.")
def crop_faces(source, out, spec, chip, margin, align, overwrite):
    """Write the largest face of every photo of a class-per-folder SOURCE to OUT (same classes),
    cut as a detector bundle cuts it: train and calibrate on what the door sees. OUT must be new
    or empty (or, with --overwrite, an earlier run's crops); photos without a face or that cannot
    be read are listed and left out."""
    import dataclasses

    from ..runtime.faces.detection import DetectorSettings, load_detector
    from ..runtime.faces.face_crops import crop_dataset

    given = [name for name, value in (("--margin", margin), ("--align" if align else "--no-align", align))
             if value is not None]
    if chip != "square" and given:
        named = " and ".join(given)
        raise click.UsageError(f"{named} {'applies' if len(given) == 1 else 'apply'} to square crops only; --chip "
                               f"{chip} cuts dlib's 150×150 face chip from the five landmarks: leave {named} out")
    try:
        chosen = {"margin": margin, "align": align}
        settings = DetectorSettings(chip=chip, **{k: v for k, v in chosen.items() if v is not None})
        detector = load_detector(spec, settings)
        if detector is None:
            raise click.UsageError("crop-faces needs a detector: --detector yunet:PATH")
        report = crop_dataset(source, out, detector, progress=True, overwrite=overwrite)
    except EdgeDMLError as exc:
        _fail(exc)
    shown = {k: v for k, v in dataclasses.asdict(settings).items() if chip == "square" or k not in ("margin", "align")}
    for photo in report.without_face:
        click.echo(f"no face found: {photo}", err=True)
    for reason in report.unreadable:
        click.echo(f"unreadable photo left out: {reason}", err=True)
    click.echo(f"{report.written} face crops of {report.classes} classes in {out} "
               f"({len(report.without_face)} photos without a face, {len(report.unreadable)} unreadable left out); "
               f"settings {shown}")


@click.command(name="build-engine", cls=Rewritten, rewrite=bundle_option, options_metavar="--model BUNDLE [OPTIONS]")
@own_model_option
@click.option("--engine", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="The bundle's graph set to build (the precision is in the graphs; INT8 was calibrated at export).")
@click.option("--max-batch", default=8, show_default=True, type=COUNT)
@click.option("--max-candidates", default=100, show_default=True, type=COUNT)
def build_engine_command(bundle, engine, max_batch, max_candidates):
    """Build strongly typed TensorRT engines from a bundle's ONNX graphs, on the target device
    (engines do not move between GPUs or TensorRT versions): export on a workstation, build on
    the Jetson. Needs no torch. Every engine is checked against ONNX Runtime's stored outputs."""
    try:
        _build_engines_or_explain(bundle, engine, max_batch, max_candidates)
    except EdgeDMLError as exc:
        _fail(exc)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON (with each bundle's folder).")
def bundles(as_json):
    """List the bundles that install with edgedml (--model objects|faces): precisions, size on
    disk, calibration, folder. Exit 1 when one fails its checksums."""
    from ..runtime.shipped import describe, shipped_bundles

    found = [describe(name, folder) for name, folder in shipped_bundles().items()]
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no shipped bundle is installed; reinstall edgedml (or run scripts/ship_bundles.py all)")
    for entry in [] if as_json else found:
        if entry["problem"]:
            click.echo(f"{entry['name']:<8} BROKEN: {entry['problem']}")
            continue
        calibration = entry["calibration"]
        said = "uncalibrated (pass --threshold, or calibrate a copy on your own images)" if calibration is None else (
            f"default threshold {calibration['threshold']:.4f} ({calibration['precision']}, FAR "
            f"{calibration['far']:.1e} on {calibration['impostor_pairs']:,} impostor pairs of {calibration['data']})")
        face = f", face detector {Path(entry['detector']).name}" if entry["detector"] else ""
        click.echo(f"{entry['name']:<8} {', '.join(entry['precisions'])}  {entry['bytes'] / 1e6:.1f} MB{face}  "
                   f"{said}  {entry['path']}")
    if any(entry["problem"] for entry in found):
        raise SystemExit(1)


COMMANDS = [compare, calibrate, enroll, verify, identify, revoke, gallery, faithfulness, crop_faces,
            build_engine_command, bundles]  # in `edgedml --help` order
