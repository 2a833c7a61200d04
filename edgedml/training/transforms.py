"""Torch preprocessing: the evaluation transform (the deployment spec, implemented in torch) and
the training augmentation (random resized crop and flip) using the same resampling kernel.

Resizing is separable and written as two matrix products, out = A_h · image · A_wᵀ, where each
axis matrix is the area filter (shrinking) or half-pixel bilinear (growing): the same operators as
OpenCV's INTER_AREA and INTER_LINEAR in ``edgedml.runtime.inference.preprocess``. Training crops therefore
see exactly the resampling that the device applies.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..preprocessing import PreprocessSpec
from ..runtime.inference.preprocess import crop_box


@lru_cache(maxsize=512)
def _axis_matrix(src: int, dst: int) -> Tensor:
    """(dst, src) resampling matrix of one axis: area when shrinking, bilinear when growing."""
    m = np.zeros((dst, src), np.float64)
    scale = src / dst
    if src > dst:  # area: fractional coverage of [i·scale, (i+1)·scale)
        for i in range(dst):
            start, end = i * scale, (i + 1) * scale
            for j in range(int(math.floor(start)), min(int(math.ceil(end)), src)):
                m[i, j] = (min(end, j + 1) - max(start, j)) / scale
    elif src < dst:  # bilinear, half-pixel centres, clamped at the borders
        for i in range(dst):
            x = max((i + 0.5) * scale - 0.5, 0.0)
            x0 = min(int(math.floor(x)), src - 1)
            frac = x - x0 if x0 < src - 1 else 0.0
            x1 = min(x0 + 1, src - 1)
            m[i, x0] += 1 - frac
            m[i, x1] += frac
    else:
        m = np.eye(src)
    return torch.from_numpy(m.astype(np.float32))


def resample(image: Tensor, height: int, width: int) -> Tensor:
    """image (C, H, W) float → (C, height, width) with the separable area/bilinear operators."""
    a_h = _axis_matrix(image.shape[1], height)
    a_w = _axis_matrix(image.shape[2], width)
    return a_h @ image @ a_w.T


def to_float_chw(rgb: np.ndarray) -> Tensor:
    """RGB (H, W, 3) uint8 → float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


class EvalTransform:
    """The deployment preprocessing in torch: RGB uint8 (H, W, 3) → float32 (3, size, size)."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)

    def __call__(self, rgb: np.ndarray) -> Tensor:
        top, left, ch, cw = crop_box(rgb.shape[0], rgb.shape[1], self.spec)
        image = to_float_chw(rgb[top:top + ch, left:left + cw])
        image = resample(image, self.spec.size, self.spec.size)
        return (image - self.mean) / self.std


class TrainTransform(EvalTransform):
    """Random resized crop (area fraction in ``scale``, aspect ratio in ``ratio``, as in
    Inception training) and a horizontal flip with probability ``flip``. The randomness comes
    from ``generator`` (or torch's global RNG): the trainer seeds one per sample, so a sample's
    augmentation does not depend on which process or worker loads it.
    RGB uint8 (H, W, 3) → (3, size, size)."""

    def __init__(self, spec: PreprocessSpec, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), flip: float = 0.5):
        super().__init__(spec)
        self.scale, self.ratio, self.flip = scale, ratio, flip

    def random_box(self, height: int, width: int, generator: torch.Generator | None = None
                   ) -> tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * float(torch.empty(1).uniform_(*self.scale, generator=generator))
            aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio, generator=generator)))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                return top, left, h, w
        return crop_box(height, width, self.spec)  # fall back to the evaluation crop

    def __call__(self, rgb: np.ndarray, generator: torch.Generator | None = None) -> Tensor:
        top, left, h, w = self.random_box(rgb.shape[0], rgb.shape[1], generator)
        image = resample(to_float_chw(rgb[top:top + h, left:left + w]), self.spec.size, self.spec.size)
        if float(torch.rand(1, generator=generator)) < self.flip:
            image = image.flip(-1)
        return (image - self.mean) / self.std
