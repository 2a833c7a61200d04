"""The gallery commands: ``enroll GALLERY NAME IMG…``, ``verify GALLERY NAME IMG``, ``identify
GALLERY IMG``, ``revoke GALLERY NAME`` (no bundle) and ``gallery backup SRC DST``. GALLERY is a
file (SQLite) or a postgresql:// URL (a fleet gallery); verify and identify print one decision
line each (``ACCEPTED``/``REJECTED``, or JSON) and exit 4 on a rejection.

They use only ``edgedml.runtime``, imported when a command runs; nothing here imports torch or onnx."""

from __future__ import annotations

import json

import click

from ..errors import EdgeDMLError
from .common import EXIT_REJECTED, _fail
from .forms import Rewritten, enroll_name, revoke_options, verify_order
from .options import detector_option, model_option, precision_option, threshold_option


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


@click.command(cls=Rewritten, rewrite=enroll_name)
@click.argument("gallery", type=GalleryLocation(exists=False))
@click.argument("name")
@click.argument("images", metavar="IMG...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@model_option
@precision_option
@detector_option
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
@model_option
@threshold_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@precision_option
@detector_option
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
@model_option
@threshold_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many identities to list, best first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@precision_option
@detector_option
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
