"""The preprocessing specification: written once, stored in checkpoints and bundle manifests.

Stdlib only, so that the runtime (numpy + OpenCV) and training (torch) read the same spec.
Training implements it with torch for evaluation, the runtime with OpenCV; a test asserts both
give the same tensor on real images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ConfigError, build_dataclass

RESIZE_MODES = ("center_crop", "stretch")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an RGB image becomes the network input tensor (1, 3, size, size).

    Steps: decode to RGB; resize (``center_crop``: shorter side to ``size / crop_fraction``
    then a centred ``size``×``size`` crop; ``stretch``: the whole image to ``size``×``size``);
    scale to [0, 1]; subtract ``mean`` and divide by ``std`` per channel; HWC → CHW.
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: str = "center_crop"
    crop_fraction: float = 0.875

    def __post_init__(self):
        if self.size < 32:
            raise ConfigError(f"preprocessing size must be at least 32 pixels, got {self.size}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"unknown resize mode {self.resize!r}; choose one of {RESIZE_MODES}")
        if not 0.1 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction must be in (0.1, 1], got {self.crop_fraction}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need three values each, and std must be positive")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        return build_dataclass(cls, data, "preprocessing")
