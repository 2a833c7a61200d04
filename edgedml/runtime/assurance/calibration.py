"""`edgedml calibrate`: decision thresholds from genuine and impostor pairs of a labelled set.

Every pair of images of a class-per-folder set is scored with the bundle's multi-scale score
(same class: genuine, different classes: impostor). From the two score sets
(:mod:`.error_rates`): the equal error rate (EER), the true-accept rate at false-accept rates
1e-2, 1e-3 and 1e-4 with their thresholds, a ROC curve and score histograms (PNG,
:mod:`.calibration_picture`). The thresholds go into the bundle's manifest; ``default`` is the
threshold at the target FAR 1e-3.

A false-accept rate below 1/n cannot be measured on n impostor pairs: a set with fewer than 1,000
impostor pairs is refused before anything is written, unless ``force`` (``--force``) is given;
then ``default`` is the FAR 1e-3 row all the same (just above the highest impostor score seen,
never the laxer EER threshold), and every row the pairs cannot resolve is marked
``"resolvable": false``. A calibration that lowers the bundle's previous default threshold says
so (``report["lowered"]``, a warning, and the CLI prints old → new).

The calibration records how its images were cut (``calibration.detector``: the detector's
fingerprint, or "none") and with which graphs (``calibration.precision``); a matcher that cuts or
runs otherwise may not decide with these thresholds (:func:`.thresholds.calibrated_threshold`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ...bundle import read_manifest
from ...errors import EdgeDMLError
from ..matching.features import Features
from ..matching.matcher import Matcher
from .calibration_picture import draw_histograms, draw_roc, threshold_label, write_report
from .error_rates import equal_error_rate, far_tar, pairs_needed, threshold_at_far
from .labelled_set import labelled_images

FARS = (1e-2, 1e-3, 1e-4)
TARGET_FAR = 1e-3  # the default threshold's
log = logging.getLogger(__name__)


class CalibrationError(EdgeDMLError):
    """The labelled set cannot calibrate the bundle (too few pairs, no genuine pairs)."""


def impostor_pair_count(labels: np.ndarray) -> int:
    """Pairs i < j of different labels."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1].astype(np.int64)
    return int((counts.sum() ** 2 - (counts ** 2).sum()) // 2)


def require_resolvable(impostor_pairs: int, force: bool, far: float = TARGET_FAR) -> None:
    """:class:`CalibrationError` when ``impostor_pairs`` cannot resolve ``far`` and not ``force``."""
    needed = pairs_needed(far)
    if impostor_pairs < needed and not force:
        raise CalibrationError(
            f"{impostor_pairs} impostor pairs cannot measure FAR {far:g} (it needs at least {needed}: one false "
            f"accept among them); nothing was written. Calibrate on more images and identities (e.g. 10 identities "
            f"of 12 images give 6480), or pass --force (force=True) to write thresholds marked unresolved")


def embed_readable(matcher: Matcher, paths: list[Path], batch: int = 16,
                   progress: bool = False) -> tuple[Features, list[int], list[str]]:
    """Embed ``paths`` in batches; a batch with an unreadable image (or, with a detector, one
    without a face) is embedded one image at a time and the bad ones are left out. Returns
    (features, indices kept, skipped: "unreadable image PATH: reason" or "image without a face PATH: reason")."""
    from ...errors import InvalidImageError
    from ...progress import progress_bar
    from ..faces.detection import NoFaceFound

    parts, kept, skipped = [], [], []
    bar = progress_bar(total=len(paths), desc="embedding", unit="image", enabled=progress)
    for start in range(0, len(paths), batch):
        chunk = list(range(start, min(len(paths), start + batch)))
        bar.update(len(chunk))
        try:
            parts.append(matcher.embed([paths[i] for i in chunk]))
            kept += chunk
        except (InvalidImageError, NoFaceFound):
            for i in chunk:
                try:
                    parts.append(matcher.embed(paths[i]))
                    kept.append(i)
                except InvalidImageError as exc:
                    skipped.append(f"unreadable image {paths[i]}: {exc}")
                except NoFaceFound as exc:
                    skipped.append(f"image without a face {paths[i]}: {exc}")
    bar.close()
    if not parts:
        raise EdgeDMLError("no image could be read; " + (skipped[0] if skipped else "the folder has none"))
    feats = Features.concat(parts)
    return feats, kept, skipped


def pair_scores(matcher: Matcher, feats: Features, labels: np.ndarray,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Multi-scale scores of all pairs i < j of ``feats`` (N rows, labels (N,), as
    :func:`embed_readable` returns them): (genuine scores, impostor scores)."""
    genuine, impostor = [], []
    from ...progress import progress_bar

    for i in progress_bar(range(len(feats) - 1), desc="scoring pairs", unit="query", enabled=progress):
        scores = matcher.match(feats[i], feats[i + 1:])["multiscale"]
        same = labels[i + 1:] == labels[i]
        genuine.append(scores[same])
        impostor.append(scores[~same])
    return np.concatenate(genuine), np.concatenate(impostor)


def calibrate(bundle: str | Path, data: str | Path, per_class: int | None = None, backend: str = "auto",
              progress: bool = False, precision: str = "fp32", detector: str | None = None,
              force: bool = False) -> dict:
    """Score all pairs of ``data``, write thresholds, ROC and histograms into ``bundle``.
    ``detector``: as :class:`Matcher`'s (default: the bundle's); calibrate the way the door runs.
    A set whose impostor pairs cannot resolve FAR 1e-3 is refused (:class:`CalibrationError`,
    nothing written) unless ``force``. The report holds the thresholds, the calibration record,
    ``previous_default`` (the default threshold it replaces, or None) and ``lowered``."""

    started = time.perf_counter()
    matcher = Matcher(bundle, backend=backend, precision=precision, detector=detector)
    paths, labels, names = labelled_images(data, per_class)
    require_resolvable(impostor_pair_count(labels), force)  # before the work: even every image is too few
    features, kept, skipped = embed_readable(matcher, paths, progress=progress)
    for line in skipped:  # listed, and left out of every count
        log.warning("edgedml: skipped %s", line)
    paths, labels = [paths[i] for i in kept], labels[kept]
    require_resolvable(impostor_pair_count(labels), force)  # what is left once the unreadable are out
    genuine, impostor = pair_scores(matcher, features, labels, progress=progress)
    if len(genuine) == 0:
        raise CalibrationError(f"{data} has no class with two images: no genuine pairs to calibrate on")
    if len(impostor) == 0:
        raise CalibrationError(f"{data} has no two readable classes: no impostor pairs to calibrate on")
    eer, eer_threshold = equal_error_rate(genuine, impostor)
    eer_far, eer_tar = far_tar(genuine, impostor, eer_threshold)
    thresholds = {"eer": {"threshold": eer_threshold, "far": eer_far, "tar": eer_tar}}
    for far in FARS:
        t = threshold_at_far(impostor, far)
        measured_far, tar = far_tar(genuine, impostor, t)
        thresholds[f"far_{far:g}"] = {"threshold": t, "far": measured_far, "tar": tar,
                                      "resolvable": len(impostor) >= pairs_needed(far)}
    default = f"far_{TARGET_FAR:g}"  # unresolved (forced): just above every impostor seen, never the EER's
    thresholds["default"] = {**thresholds[default], "from": default}
    root = matcher.bundle  # the folder the matcher read (a shipped name resolved: runtime.shipped)
    manifest = read_manifest(root)  # verified before anything is written: a broken bundle stays as it was
    before = manifest.thresholds.get("default")
    previous = float(before["threshold"]) if before else None
    lowered = previous is not None and thresholds["default"]["threshold"] < previous
    if not thresholds["default"]["resolvable"]:
        log.warning("edgedml: %d impostor pairs cannot resolve FAR %g; the thresholds are written unresolved "
                    "(forced)", len(impostor), TARGET_FAR)
    if lowered:
        log.warning("edgedml: the default threshold goes down from %.4f to %.4f: more impostors are accepted",
                    previous, thresholds["default"]["threshold"])
    chosen = thresholds["default"]
    point = (f"default ({threshold_label(default)}): threshold {chosen['threshold']:.3f}, TAR {chosen['tar']:.3f}",
             chosen["far"], chosen["tar"])
    write_report(root / "calibration_roc.png", draw_roc({"": (genuine, impostor)}, point=point))  # not checksummed
    write_report(root / "calibration_scores.png", draw_histograms(
        genuine, impostor, {k: v["threshold"] for k, v in thresholds.items() if k != "default"}, default=default))
    calibration = {"data": str(data), "precision": precision, "images": len(paths),
                   "detector": matcher.detector.fingerprint() if matcher.detector is not None else "none",
                   "skipped": skipped, "classes": len(names),
                   "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor)),
                   "eer": eer, "impostor_min": float(impostor.min()) if len(impostor) else None,
                   "target_far": TARGET_FAR, "resolved": bool(thresholds["default"]["resolvable"]),
                   "seconds": round(time.perf_counter() - started, 1)}
    manifest.update(thresholds=thresholds, calibration=calibration)
    return {"thresholds": thresholds, **calibration, "previous_default": previous, "lowered": lowered}
