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

from ..bundle import Manifest
from ..errors import ConfigError

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
