"""Decision thresholds: which values may decide access.

The multi-scale score is S_struct + cos(x̄, ȳ). The plan's mass is at most 1 and every region
similarity lies in [−1, 1], so S_struct ∈ [−1, 1]; with the cosine, the score lies in
``SCORE_BOUNDS`` = [−2, 2]. A threshold must be a finite number inside that range: at −2 or
below every pair is accepted, above 2 none is. Where the bundle is calibrated, the floor is
tighter: a threshold at or below the lowest impostor score of the calibration set would accept
every impostor it was measured on, and is refused as well.
"""

from __future__ import annotations

import math

from ...bundle import Manifest
from ...errors import ConfigError

SCORE_BOUNDS = (-2.0, 2.0)


def check_threshold(value, manifest: Manifest | None = None) -> float:
    """``value`` as a float, or :class:`ConfigError` saying why it may not decide access."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"the threshold must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"the threshold must be finite, got {value}; pass a calibrated value "
                          f"(`edgedml calibrate` writes them into the bundle)")
    low, high = SCORE_BOUNDS
    calibration = (manifest.calibration if manifest else None) or {}
    impostor_min = calibration.get("impostor_min")
    if isinstance(impostor_min, (int, float)) and value <= impostor_min:
        raise ConfigError(f"the threshold {value:g} would accept every impostor of the calibration set (lowest "
                          f"impostor score {impostor_min:.4f}); use a calibrated threshold from the bundle")
    if value <= low:
        raise ConfigError(f"the threshold {value:g} accepts every pair: scores lie in [{low:g}, {high:g}]")
    if value > high:
        raise ConfigError(f"the threshold {value:g} rejects every pair: scores lie in [{low:g}, {high:g}]")
    return value


class CalibrationMismatch(ConfigError):
    """The bundle's calibrated thresholds were measured on another cropping or graph set than the
    one a matcher runs: they may not decide for it."""


def calibrated_conditions(manifest: Manifest) -> tuple[str | None, str]:
    """(cropping, precision) the bundle's thresholds were measured with. A calibration from before
    the cropping was recorded: whole images ("none") when the bundle carries no detector (there
    was nothing else to cut with), unknown (None: it serves no matcher) when it carries one."""
    calibration = manifest.calibration or {}
    cropping = calibration.get("detector")
    if not isinstance(cropping, str):
        cropping = None if manifest.detector else "none"
    precision = calibration.get("precision")
    return cropping, precision if isinstance(precision, str) else "fp32"


def calibrated_threshold(manifest: Manifest, name: str, cropping: str,
                         precision: str) -> tuple[float | None, str | None]:
    """The threshold ``name`` for a matcher that cuts images as ``cropping`` (a detector's
    fingerprint or "none") and runs ``precision``: (threshold, None), (None, None) when the bundle
    has none, or (None, why it may not decide) when it was calibrated another way."""
    entry = manifest.thresholds.get(name)
    if not entry:
        return None, None
    value = check_threshold(entry["threshold"], manifest)
    measured_cropping, measured_precision = calibrated_conditions(manifest)
    fix = ("pass --threshold (Matcher(..., threshold=...)), or calibrate again the way the door runs "
           "(`edgedml calibrate --model BUNDLE --data DIR` with the same --detector and --precision)")
    if measured_cropping != cropping:
        measured = (f"{measured_cropping.split(':')[0]!r} ({measured_cropping})" if measured_cropping
                    else "an unrecorded cropping (a calibration older than that record, on a bundle with a detector)")
        return None, (f"the bundle's thresholds were calibrated on images cut by detector {measured} and this "
                      f"matcher cuts with {cropping.split(':')[0]!r} ({cropping}): scores of other crops are not "
                      f"measured; {fix}")
    if measured_precision != precision:
        return None, (f"the bundle's thresholds were calibrated with the {measured_precision} graphs and this "
                      f"matcher runs {precision}: its scores differ; {fix}")
    return value, None
