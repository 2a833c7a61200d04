"""Error rates of a verifier from its genuine and impostor scores (numpy only): the false-accept
and true-accept rates at a threshold, the lowest threshold at a target false-accept rate, the
equal error rate, the points of the ROC curve, and how many impostor pairs a false-accept rate
needs before it can be measured at all."""

from __future__ import annotations

import math

import numpy as np


def pairs_needed(far: float) -> int:
    """Impostor pairs needed to resolve a false-accept rate: 1/far (one false accept among them)."""
    return math.ceil(1 / far - 1e-9)


def far_tar(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-accept rate, true-accept rate) when accepting scores ≥ threshold."""
    return float((impostor >= threshold).mean()), float((genuine >= threshold).mean())


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate is at most ``far``."""
    ordered = np.sort(impostor)[::-1]  # best impostors first
    allowed = int(np.floor(far * len(ordered)))  # impostors that may pass
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))  # just above the first impostor that must fail


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, its threshold): where false accepts and false rejects are closest. O(n log n)."""
    candidates = np.unique(np.concatenate([genuine, impostor]))  # sorted
    # counts by binary search over the sorted scores: O(n log n), not one pass per candidate
    far = 1.0 - np.searchsorted(np.sort(impostor), candidates, side="left") / len(impostor)  # impostor ≥ t
    frr = np.searchsorted(np.sort(genuine), candidates, side="left") / len(genuine)  # genuine < t
    best = int(np.argmin(np.abs(far - frr)))
    return float((far[best] + frr[best]) / 2), float(candidates[best])


def roc_points(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every distinct score as the threshold (accept ≥ t), FAR ascending: (T,) each."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))[::-1]
    far = 1.0 - np.searchsorted(np.sort(impostor), thresholds, side="left") / len(impostor)
    tar = 1.0 - np.searchsorted(np.sort(genuine), thresholds, side="left") / len(genuine)
    return far, tar
