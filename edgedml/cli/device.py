"""The commands a device runs: compare, calibrate, enroll, verify, identify, revoke, gallery backup,
build-engine, bundles (the shipped bundles, which ``--model objects|faces`` names).

One argument order: the gallery first, then the identity, then images (``enroll GALLERY NAME
IMG…``, ``verify GALLERY NAME IMG``, ``identify GALLERY IMG``, ``revoke GALLERY NAME``: no
bundle); the bundle always as ``--model`` (a shipped name refused where the command writes into
it). The old forms are read by :mod:`.forms`, with a notice, for one release.

They use only ``edgedml.runtime`` (numpy, OpenCV, ONNX Runtime or TensorRT), imported when a
command runs; nothing here imports torch or onnx."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EdgeDMLError
from .common import EXIT_REJECTED, EXIT_UNDECIDED, _build_engines_or_explain, _fail
from .forms import Rewritten, bundle_option, enroll_name, revoke_options, verify_order
from .params import COUNT, MARGIN, BundleFolder, DetectorSpec, OutputFile, Threshold, WritableBundle

BUNDLE = BundleFolder()
BUNDLE_HELP = ("A bundle folder written by `edgedml export`, or a shipped bundle: objects or faces (`edgedml bundles` "
               "lists them; a bundle folder of that name here wins).")
OWN_BUNDLE_HELP = ("A bundle folder of your own, which this command writes into (a shipped bundle is refused: copy the "
                   "folder `edgedml bundles` prints).")
EXPLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_PRECISION_CHOICE = click.Choice(["fp32", "fp16", "int8", "int8-cpu"])
_detector_option = click.option(
    "--detector", type=DetectorSpec(), metavar="yunet:PATH|none",
    help="Detect faces first and embed the largest one's aligned crop (a YuNet ONNX file), or none for whole "
         "images [default: the bundle's detector, if it was exported with one].")


@click.command()
@click.argument("image_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("image_b", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "bundle", required=True, type=BUNDLE, help=BUNDLE_HELP)
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--threshold", type=Threshold(),
              help="Decision threshold, a score in (-2, 2] [default: the bundle's calibrated one].")
@click.option("--precision", type=_PRECISION_CHOICE, default="fp32", show_default=True,
              help="Which of the bundle's graph sets to run.")
@click.option("--explain", "explain_path", type=OutputFile(EXPLAIN_SUFFIXES),
              help="Write the side-by-side explanation picture (PNG/JPEG) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_detector_option
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


_model_option = click.option("--model", "bundle", required=True, type=BUNDLE, help=BUNDLE_HELP)
_threshold_option = click.option("--threshold", type=Threshold(),
                                 help="Decision threshold, a score in (-2, 2] [default: the bundle's calibrated one].")
_precision_option = click.option("--precision", type=_PRECISION_CHOICE, default="fp32", show_default=True,
                                 help="Which of the bundle's graph sets to run (a gallery keeps to one).")


class GalleryLocation(click.ParamType):
    """A gallery file (SQLite) or a postgresql:// URL (a fleet gallery); ``exists``: the file must
    exist already (a URL is checked when it is opened)."""

    name = "GALLERY"

    def __init__(self, exists: bool):
        self.exists = exists

    def convert(self, value, param, ctx):
        from ..runtime.gallery.store import is_url

        if is_url(value):
            return value
        return click.Path(exists=self.exists, dir_okay=False).convert(value, param, ctx)


_door_option = click.option("--door", help="This door's name in the decision log [default: the host name].")


def _open_gallery(gallery, bundle, threshold, precision="fp32", detector=None, door=None):
    from ..runtime.gallery.gallery import Gallery
    from ..runtime.matching.matcher import Matcher

    return Gallery(gallery, Matcher(bundle, precision=precision, detector=detector), threshold=threshold, door=door)


@click.command(cls=Rewritten, rewrite=bundle_option, options_metavar="--model BUNDLE --data DIR [OPTIONS]")
@click.option("--model", "bundle", required=True, type=WritableBundle(), help=OWN_BUNDLE_HELP)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images (one folder per identity).")
@click.option("--per-class", type=click.IntRange(min=2),
              help="Use at most this many images of each class (two or more: a genuine pair needs two).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto")
@_precision_option
@_detector_option
@click.option("--force", is_flag=True,
              help="Write the thresholds even when the impostor pairs are too few to resolve FAR 1e-3 (fewer than "
                   "1000); the rows they cannot resolve are marked.")
def calibrate(bundle, data, per_class, backend, precision, detector, force):
    """Score all genuine and impostor pairs of --data; write EER, TAR at FAR 1e-2/1e-3/1e-4 and
    their thresholds into the bundle, with a ROC curve and score histograms (PNG). A set too small
    to resolve FAR 1e-3 (fewer than 1000 impostor pairs) is refused unless --force."""
    from ..runtime.assurance.calibration import calibrate as run
    from ..runtime.assurance.error_rates import pairs_needed

    try:
        report = run(bundle, data, per_class, backend, progress=True, precision=precision, detector=detector,
                     force=force)
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"{report['images']} images, {report['genuine_pairs']} genuine and {report['impostor_pairs']} "
               f"impostor pairs; EER {report['eer']:.4f}")
    if report.get("skipped"):
        click.echo(f"skipped {len(report['skipped'])} images: unreadable, or without a face "
                   "(listed above, and in the manifest)")
    for name, entry in report["thresholds"].items():
        far = f"FAR {entry['far']:.2e}"
        if entry.get("resolvable") is False:  # a FAR below 1/pairs is not measured: never print it as one
            target = float(entry.get("from", name).removeprefix("far_"))
            far = f"FAR UNRESOLVED (needs {pairs_needed(target)} impostor pairs)"
        click.echo(f"  {name:<10} threshold {entry['threshold']:.4f}  {far}  TAR {entry['tar']:.4f}")
    if not report["resolved"]:
        click.echo(f"warning: --force: {report['impostor_pairs']} impostor pairs cannot resolve FAR "
                   f"{report['target_far']:g}; the default threshold lies just above the highest impostor score seen")
    if report["lowered"]:
        click.echo(f"warning: the default threshold goes DOWN from {report['previous_default']:.4f} to "
                   f"{report['thresholds']['default']['threshold']:.4f}: more impostors will be accepted")
    click.echo(f"written to {bundle}/manifest.json, calibration_roc.png, calibration_scores.png")


@click.command(cls=Rewritten, rewrite=enroll_name)
@click.argument("gallery", type=GalleryLocation(exists=False))
@click.argument("name")
@click.argument("images", metavar="IMG...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_model_option
@_precision_option
@_detector_option
@click.option("--add", is_flag=True,
              help="Add the images to NAME, already enrolled (without it, an enrolled NAME is refused).")
def enroll(gallery, name, images, bundle, precision, detector, add):
    """Enroll NAME into GALLERY (a file, or a postgresql:// URL) from one or more images, all or nothing (with a
    detector, each image's largest face; an image without one stops the enrollment). NAME must be new; --add
    adds images to an enrolled NAME."""
    from ..runtime.gallery.names import identity_name

    try:
        name = identity_name(name)  # before the gallery is opened (or created)
        with _open_gallery(gallery, bundle, None, precision, detector) as g:
            count = g.enroll(name, list(images), add=add)
            total, where = g.identities()[name], g.path
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"enrolled {name!r}: {count} new templates ({total} in all) in {where}")


_ignored = {"hidden": True, "default": None}  # an old revoke line's options: accepted, ignored with a notice


@click.command()
@click.argument("gallery", type=GalleryLocation(exists=True))
@click.argument("name")
@click.option("--model", "bundle", **_ignored)
@click.option("--precision", **_ignored)
@click.option("--detector", **_ignored)
def revoke(gallery, name, bundle, precision, detector):
    """Remove NAME and all its templates from GALLERY (at every door, for a postgresql:// one);
    needs no bundle. Exit 0 when removed, 1 when NAME was not enrolled."""
    from ..runtime.gallery.gallery import Gallery

    revoke_options(bundle, precision, detector)
    try:
        with Gallery(gallery) as g:  # no matcher: a revocation embeds nothing, whatever the model
            if not g.remove(name):
                raise EdgeDMLError(f"{name!r} is not enrolled in {g.path}; nothing was removed")
            path = g.path
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"revoked {name!r} in {path}")


def _line(decision) -> str:
    from ..runtime.gallery.names import escaped  # a name stored before names were checked prints as one line

    verdict = "ACCEPTED" if decision.accepted else "REJECTED"
    if decision.score is None:
        return f"{verdict}: {decision.reason}"
    where = ""
    if decision.face is not None:
        x, y, w, h = decision.face.box
        where = f" (face {w:.0f}×{h:.0f} px at {x:.0f}, {y:.0f})"
    return f"{verdict}: {escaped(decision.name)} score {decision.score:.4f} (threshold {decision.threshold:.4f}){where}"


def _report(decisions, as_json, kind, every_face=False):
    """Print one decision (or one per face); exit 4 unless one was accepted."""
    from ..runtime.gallery.names import escaped

    if as_json:
        body = ({"kind": kind, "faces": [d.to_dict() for d in decisions]} if every_face
                else {"kind": kind, **decisions[0].to_dict()})
        click.echo(json.dumps(body, indent=2))
    elif every_face and not decisions:
        click.echo("REJECTED: no face found")
    else:
        for number, decision in enumerate(decisions, 1):
            click.echo((f"face {number}: " if every_face else "") + _line(decision))
            for c in decision.candidates[1:]:
                click.echo(f"  then {escaped(c.name)} {c.score:.4f}")
    if not any(d.accepted for d in decisions):
        raise SystemExit(EXIT_REJECTED)


@click.command(cls=Rewritten, rewrite=verify_order)
@click.argument("gallery", type=GalleryLocation(exists=True))
@click.argument("name")
@click.argument("image", metavar="IMG", type=click.Path(exists=True, dir_okay=False))
@_model_option
@_threshold_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@_precision_option
@_detector_option
@_door_option
def verify(gallery, name, image, bundle, threshold, as_json, log, precision, detector, door):
    """1:1 — is IMG the enrolled NAME in GALLERY (a file, or a postgresql:// URL)? (With a
    detector: its largest face; no face is a rejection.) Exit 0 accepted, 4 rejected, 1 on error."""
    try:
        with _open_gallery(gallery, bundle, threshold, precision, detector, door) as g:
            decision = g.verify(image, name)
            if log:
                g.log_decision("verify", decision, claimed=name, details={"image": image})
    except EdgeDMLError as exc:
        _fail(exc)
    _report([decision], as_json, "verify")


@click.command()
@click.argument("gallery", type=GalleryLocation(exists=True))
@click.argument("image", metavar="IMG", type=click.Path(exists=True, dir_okay=False))
@_model_option
@_threshold_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many identities to list, best first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@_precision_option
@_detector_option
@click.option("--all-faces", is_flag=True,
              help="With a detector: identify every face in IMG (largest first), not only the largest.")
@_door_option
def identify(gallery, image, bundle, threshold, top_k, as_json, log, precision, detector, all_faces, door):
    """1:N — who in GALLERY (a file, or a postgresql:// URL) is IMG? Exit 0 when the best (with
    --all-faces: any face) is above the threshold, 4 otherwise."""
    try:
        with _open_gallery(gallery, bundle, threshold, precision, detector, door) as g:
            if all_faces and g.matcher.detector is None:
                raise click.UsageError("--all-faces needs a detector: pass --detector yunet:PATH or use a bundle "
                                       "exported with one")
            decisions = g.identify_faces(image, top_k=top_k) if all_faces else [g.identify(image, top_k=top_k)]
            if log:
                for decision in decisions or [g.no_face()]:  # no face: one "no face found" row
                    g.log_decision("identify", decision, details={"image": image})
    except EdgeDMLError as exc:
        _fail(exc)
    _report(decisions, as_json, "identify", every_face=all_faces)


@click.command()
@click.option("--model", "bundle", required=True, type=BUNDLE, help=BUNDLE_HELP)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images; genuine pairs are drawn from it.")
@click.option("--pairs", default=20, show_default=True, type=COUNT,
              help="Distinct genuine pairs to explain, drawn without replacement (all of them where there are fewer).")
@click.option("--seed", default=0, show_default=True)
@click.option("--methods", help="Comma-separated: evidence, attention (grouping and abe heads only), occlusion, random "
                                "[default: every one the bundle's head has].")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report (curves included) here.")
@click.option("--plot", "plot_path", type=OutputFile(EXPLAIN_SUFFIXES), help="Draw the mean curves (PNG) here.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto")
@_precision_option
@_detector_option
def faithfulness(bundle, data, pairs, seed, methods, json_path, plot_path, backend, precision, detector):
    """How faithful are the explanations? Deletion and insertion curves of each method's region
    order on seeded genuine pairs, their AUCs and each method's cost."""
    from ..runtime.assurance.faithfulness import METHODS, draw, evaluate
    from ..runtime.matching.matcher import Matcher

    chosen = None if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = sorted(set(chosen or ()) - set(METHODS))
    if unknown or chosen == ():
        raise click.BadParameter(f"unknown {unknown}; choose from {', '.join(METHODS)}", param_hint="--methods")
    try:
        matcher = Matcher(bundle, backend=backend, precision=precision, detector=detector)
        report = evaluate(matcher, data, pairs, seed, chosen, progress=True)  # a bar where stderr is a terminal
    except (EdgeDMLError, ValueError) as exc:
        _fail(exc)
    if report["pairs"] < pairs:
        click.echo(f"--pairs {pairs}: {data} has only {report['pairs']} distinct genuine pairs; explained all of them")
    click.echo(f"{report['pairs']} genuine pairs of {data}, {report['grid']}×{report['grid']} cells, "
               f"removed cells set to {report['replacement']}; a compare takes {report['compare_ms']:.0f} ms")
    click.echo(f"{'method':<10} {'deletion AUC':>13} {'insertion AUC':>14} {'extra ms':>9}")
    for name, m in report["methods"].items():
        click.echo(f"{name:<10} {m['deletion_auc']:>13.3f} {m['insertion_auc']:>14.3f} {m['extra_ms']:>9.1f}")
    if json_path:
        Path(json_path).write_text(json.dumps({"model": bundle, "data": data, **report}, indent=2) + "\n")
    if plot_path:
        import cv2

        if not cv2.imwrite(plot_path, draw(report)):
            _fail(EdgeDMLError(f"could not write {plot_path}; use a .png path in an existing folder"))


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
@click.option("--model", "bundle", required=True, type=WritableBundle(), help=OWN_BUNDLE_HELP)
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


@click.group()
def gallery():
    """Look after a gallery file: `gallery backup SRC DST`."""


@gallery.command()
@click.argument("source", metavar="SRC", type=GalleryLocation(exists=True))
@click.argument("target", metavar="DST", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True,
              help="Replace DST when it is an earlier backup (an edgedml gallery); never another file.")
def backup(source, target, overwrite):
    """Copy the gallery file SRC into DST as one consistent file, with every commit its write-ahead
    log (SRC-wal) holds, while doors keep it open (SQLite's online backup; checked with
    integrity_check, renamed into place only when complete). DST must not exist unless --overwrite."""
    from ..runtime.gallery.backup import backup_gallery

    try:
        done = backup_gallery(source, target, overwrite=overwrite)
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"backed up {source} to {done.path}: {done.identities} identities, {done.templates} templates, "
               f"{done.decisions} logged decisions; integrity check ok")


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
