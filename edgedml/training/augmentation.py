"""The training dataset: every sample augmented by a generator seeded from its place in the
global batch, so every rank and DataLoader worker draws the same crop for it."""

from __future__ import annotations

import torch

from .image_dataset import ImageDataset
from .splits import Sample
from .transforms import TrainTransform


class SeededAugmentation(torch.utils.data.Dataset):
    """``dataset[(index, seed)]`` → (augmented image, label), the augmentation drawn from a
    generator seeded by ``seed``: the same sample in the same place of the same global batch gets
    the same crop whichever rank or worker loads it (this is what makes a 2-process run follow
    the 1-process trajectory). Decoding and unreadable-image fallback are ImageDataset's."""

    def __init__(self, samples: list[Sample], transform: TrainTransform):
        self.images = ImageDataset(samples)
        self.transform = transform

    @property
    def failed(self) -> list:
        return self.images.failed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        rgb, label = self.images[index]
        return self.transform(rgb, torch.Generator().manual_seed(seed)), label
