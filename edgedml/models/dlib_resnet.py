"""dlib's face-recognition ResNet (``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``)
in torch: 150×150 RGB chip → 128-d descriptor, the same numbers as dlib.

The network, from input to output (dlib's padding rule: a layer of stride ≠ 1 pads 0, one of
stride 1 pads ``size // 2``; pooling windows never cover padding here):

- stem: conv 7×7/2 32 (no padding) → affine → ReLU → max pool 3×3/2 (no padding)
- five levels of residual blocks (filters, blocks): (32, 3), (64, 4), (128, 3), (256, 3),
  (256, 1); the first block of every level but the first is a "residual_down" block
- block: conv 3×3/s → affine → ReLU → conv 3×3/1 → affine, plus the skip, then ReLU. The skip is
  the block's input, average-pooled 2×2/2 (no padding) in a down block; where the channel counts
  differ, dlib's ``add_prev`` adds over the overlap and zero-pads the rest (output: the larger
  size of each dimension)
- global average pool → fc 256 → 128 without bias

At 150×150 the maps are 72 (conv), 35 (pool), then 35, 17, 8, 4 and 2 per level: from 8×8 a
stride-2 conv gives 3×3 but the pooled skip 4×4, and ``add_prev`` keeps 4×4 (the conv's result
zero-padded on the bottom and right); likewise from 4×4 (conv 1×1, skip 2×2: 2×2). Measured against dlib
(``tests/models/test_dlib_network.py``): cropping the skip to the conv's size instead is
0.38 off (max |Δ| over 16 chips).
``affine`` is dlib's folded batch norm: ``y = gamma[c] · x + beta[c]``.

Input normalisation: dlib's ``input_rgb_image_sized`` feeds ``(pixel - mean[c]) / 256`` for
pixels 0…255; the same as edgedml's preprocessing (scale to [0, 1], subtract ``mean``, divide by
``std``) with :data:`DLIB_MEAN` and :data:`DLIB_STD` below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dlib_architecture import (  # noqa: F401  (re-exported)
    CHIP_SIZE,
    DESCRIPTOR_DIM,
    DLIB_MEAN,
    DLIB_MEAN_255,
    DLIB_STD,
    LEVELS,
    dlib_layers,
)


def dlib_normalize(rgb: Tensor) -> Tensor:
    """dlib's input layer: RGB pixels 0…255 (B, 3, H, W) float → ``(x - mean[c]) / 256``."""
    mean = torch.tensor(DLIB_MEAN_255, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / 256.0


class Affine(nn.Module):
    """dlib's ``affine_`` in conv mode: (B, C, H, W) → ``weight[c] · x + bias[c]``, same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: (B, Ca, Ha, Wa) + (B, Cb, Hb, Wb) → (B, max C, max H, max W), each
    operand zero-padded at the end of every dimension where it is smaller."""
    size = [max(int(x), int(y)) for x, y in zip(a.shape[1:], b.shape[1:])]

    def grow(t: Tensor) -> Tensor:
        dc, dh, dw = (s - int(n) for s, n in zip(size, t.shape[1:]))
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down``: (B, C_in, H, W) → (B, filters, H', W'), H' = H for stride 1,
    ⌊(H - 3) / 2⌋ + 1 for stride 2."""

    def __init__(self, in_channels: int, filters: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride, padding=0 if stride != 1 else 1)
        self.affine1 = Affine(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, padding=1)
        self.affine2 = Affine(filters)

    def forward(self, x: Tensor) -> Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.stride != 1 else x
        return F.relu(add_prev(y, skip))


class DlibFaceResNet(nn.Module):
    """dlib's 29-conv face ResNet. Weights: :func:`edgedml.models.dlib_format.load_dlib_face_resnet`.

    forward: images (B, 3, 150, 150), normalised as dlib does (:func:`dlib_normalize` on 0…255
    RGB, or edgedml's preprocessing with :data:`DLIB_MEAN` / :data:`DLIB_STD`) → descriptors
    (B, 128), dlib's ``compute_face_descriptor`` (not L2-normalised; dlib's same-person threshold
    is Euclidean 0.6).
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.affine = Affine(32)
        levels, channels = [], 32
        for filters, blocks, down in LEVELS:
            level = [ResidualBlock(channels if i == 0 else filters, filters, 2 if down and i == 0 else 1)
                     for i in range(blocks)]
            levels.append(nn.Sequential(*level))
            channels = filters
        self.levels = nn.ModuleList(levels)
        self.fc = nn.Linear(channels, DESCRIPTOR_DIM, bias=False)
        self.channels = tuple(f for f, _, _ in LEVELS)

    def stem(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) → (B, 32, h, w): conv 7×7/2, affine, ReLU, max pool 3×3/2 (35×35 at 150)."""
        return F.max_pool2d(F.relu(self.affine(self.conv(images))), 3, 2)

    def level_maps(self, images: Tensor) -> list[Tensor]:
        """images (B, 3, 150, 150) → the output of each residual level, input to output:
        (B, 32, 35, 35), (B, 64, 17, 17), (B, 128, 8, 8), (B, 256, 4, 4), (B, 256, 2, 2)."""
        x, maps = self.stem(images), []
        for level in self.levels:
            x = level(x)
            maps.append(x)
        return maps

    def descriptor(self, last_map: Tensor) -> Tensor:
        """last level's map (B, 256, h, w) → descriptors (B, 128): global average pool, fc."""
        return self.fc(last_map.mean(dim=(2, 3)))

    def forward(self, images: Tensor) -> Tensor:
        return self.descriptor(self.level_maps(images)[-1])
