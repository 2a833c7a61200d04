"""The commands that say how far the decisions and their explanations can be trusted:
``calibrate`` (thresholds at target false-accept rates, written into the bundle) and
``faithfulness`` (deletion and insertion curves of each explanation method).

They use only ``edgedml.runtime`` (its assurance room, and the matcher), imported when a command
runs; nothing here imports torch or onnx."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EdgeDMLError
from .common import _fail
from .forms import Rewritten, bundle_option
from .options import BACKEND_CHOICE, EXPLAIN_SUFFIXES, detector_option, model_option, own_model_option, precision_option
from .params import COUNT, OutputFile


@click.command(cls=Rewritten, rewrite=bundle_option, options_metavar="--model BUNDLE --data DIR [OPTIONS]")
@own_model_option
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images (one folder per identity).")
@click.option("--per-class", type=click.IntRange(min=2),
              help="Use at most this many images of each class (two or more: a genuine pair needs two).")
@click.option("--backend", type=BACKEND_CHOICE, default="auto")
@precision_option
@detector_option
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


@click.command()
@model_option
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images; genuine pairs are drawn from it.")
@click.option("--pairs", default=20, show_default=True, type=COUNT,
              help="Distinct genuine pairs to explain, drawn without replacement (all of them where there are fewer).")
@click.option("--seed", default=0, show_default=True)
@click.option("--methods", help="Comma-separated: evidence, attention (grouping and abe heads only), occlusion, random "
                                "[default: every one the bundle's head has].")
@click.option("--json", "json_path", type=OutputFile(), help="Write the report (curves included) here.")
@click.option("--plot", "plot_path", type=OutputFile(EXPLAIN_SUFFIXES), help="Draw the mean curves (PNG) here.")
@click.option("--backend", type=BACKEND_CHOICE, default="auto")
@precision_option
@detector_option
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
