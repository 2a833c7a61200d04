"""A split's images for torch, decoded by the runtime's :func:`read_rgb` so training sees exactly
the pixels a device sees. :func:`check_readable` decodes every image once before training so
unreadable files are reported by name and left out; :class:`ImageDataset` decodes on demand and
survives a file that breaks mid-epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InvalidImageError
from ..runtime.inference.image import read_rgb
from .splits import Sample


def _readable(sample: Sample) -> bool:
    try:
        read_rgb(sample.path)
        return True
    except InvalidImageError:
        return False


def check_readable(samples: list[Sample], progress: bool = False,
                   workers: int = 4) -> tuple[list[Sample], list[Path]]:
    """Decode every image once; return (the readable samples, in order; the unreadable paths).

    Callers print the unreadable names and their count, then train on the readable samples.
    ``workers`` threads decode in parallel (OpenCV releases the GIL); ``progress`` shows a tqdm
    bar when stderr is a terminal.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(_readable, samples)
        from ..progress import progress_bar

        ok = list(progress_bar(results, total=len(samples), desc="checking images", unit="img", enabled=progress))
    return ([s for s, good in zip(samples, ok) if good],
            [s.path for s, good in zip(samples, ok) if not good])


class ImageDataset(Dataset):
    """``dataset[i]`` → ``(transform(read_rgb(path)), label)``; without a transform, the decoded
    RGB array itself.

    An image that fails to decode (changed since :func:`check_readable`) does not stop training:
    its path is appended to ``self.failed`` (with a warning) and the next readable sample of the
    same label is returned instead, so class-balanced batches stay valid. Only when every sample
    of that label fails is :class:`InvalidImageError` raised. With DataLoader workers, ``failed``
    fills in each worker's copy; the warnings reach the console either way.
    """

    def __init__(self, samples: list[Sample], transform: Callable[[np.ndarray], torch.Tensor] | None = None):
        self.samples = list(samples)
        self.transform = transform
        self.failed: list[Path] = []
        self._bad: set[int] = set()
        self._by_label: dict[int, list[int]] = {}
        self._rank: list[int] = []  # position of each sample among those of its label
        for i, sample in enumerate(self.samples):
            same = self._by_label.setdefault(sample.label, [])
            self._rank.append(len(same))
            same.append(i)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        """The label of every sample, in order (for samplers such as PML's MPerClassSampler)."""
        return [s.label for s in self.samples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor | np.ndarray, int]:
        index = range(len(self.samples))[index]  # accepts negative indices, rejects out-of-range
        label = self.samples[index].label
        same = self._by_label[label]
        start = self._rank[index]
        for j in same[start:] + same[:start]:  # this sample first, then the next ones of its label
            if j in self._bad:
                continue
            try:
                image = read_rgb(self.samples[j].path)
            except InvalidImageError as exc:
                self._bad.add(j)
                self.failed.append(self.samples[j].path)
                warnings.warn(f"{exc}; using another image of label {label} instead", stacklevel=2)
                continue
            return (image if self.transform is None else self.transform(image)), label
        raise InvalidImageError(f"every image of label {label} ({self.samples[index].class_name!r}, "
                                f"{len(same)} files) failed to decode; run check_readable first")
