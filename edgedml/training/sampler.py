"""m-per-class batches that shard across DistributedDataParallel ranks.

pytorch-metric-learning's MPerClassSampler builds good batches but knows nothing of ranks; under
torchrun every rank must see a different slice of the *same* global batch, so that the gathered
embeddings form exactly the batch one process would have built. This sampler draws the global
batches from a generator seeded by (seed, epoch), identical on every rank, and hands each rank
its contiguous slice. With one rank it is a plain m-per-class batch sampler.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import ConfigError


class MPerClassBatchSampler:
    """Yields lists of dataset indices (or, with ``with_seeds``, of (index, augmentation seed)
    pairs, the seed fixed by the sample's place in the global batch): each global batch holds
    ``batch_size // m`` classes with ``m`` images each (drawn without replacement when a class has
    at least m images); rank r of ``world_size`` gets positions [r·b, (r+1)·b) of it,
    b = batch_size / world_size.

    One epoch has ceil(len(labels) / batch_size) batches. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, m: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, batches_per_epoch: int | None = None,
                 with_seeds: bool = False):
        if batch_size % m:
            raise ConfigError(f"batch size {batch_size} must be a multiple of m_per_class {m}")
        if batch_size % world_size or (batch_size // world_size) % m:
            raise ConfigError(f"the global batch {batch_size} must split into {world_size} shards "
                              f"that are multiples of m_per_class {m}; e.g. batch size {m * world_size * 4}")
        by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_class[int(label)].append(index)
        self.by_class = {c: np.asarray(ix) for c, ix in sorted(by_class.items())}
        self.classes_per_batch = batch_size // m
        if len(self.by_class) < self.classes_per_batch:
            raise ConfigError(
                f"a batch of {batch_size} with m_per_class={m} needs {self.classes_per_batch} "
                f"classes but the training set has {len(self.by_class)}; lower the batch size or "
                f"raise m_per_class (e.g. --batch-size {m * len(self.by_class)})")
        self.batch_size, self.m, self.seed = batch_size, m, seed
        self.rank, self.world_size, self.with_seeds = rank, world_size, with_seeds
        self.batches = batches_per_epoch or -(-len(labels) // batch_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def global_batches(self) -> list[np.ndarray]:
        """The epoch's global batches, identical on every rank."""
        rng = np.random.default_rng([self.seed, self.epoch])
        classes = np.asarray(list(self.by_class))
        batches = []
        for _ in range(self.batches):
            chosen = rng.choice(classes, size=self.classes_per_batch, replace=False)
            batch = [rng.choice(self.by_class[c], size=self.m, replace=len(self.by_class[c]) < self.m)
                     for c in chosen]
            batches.append(np.concatenate(batch))
        return batches

    def __iter__(self) -> Iterator[list]:
        local = self.batch_size // self.world_size
        part = slice(self.rank * local, (self.rank + 1) * local)
        for number, batch in enumerate(self.global_batches()):
            if self.with_seeds:
                seeds = np.random.default_rng([self.seed, self.epoch, number]).integers(2**62, size=len(batch))
                yield list(zip(batch[part].tolist(), seeds[part].tolist()))
            else:
                yield batch[part].tolist()
