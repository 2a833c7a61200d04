from collections import Counter

import pytest

from edgedml.errors import ConfigError
from edgedml.training.sampler import MPerClassBatchSampler

LABELS = [c for c in range(6) for _ in range(10)]


def test_batches_hold_m_per_class_and_cover_an_epoch():
    sampler = MPerClassBatchSampler(LABELS, batch_size=12, m=3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    for batch in batches:
        counts = Counter(LABELS[i] for i in batch)
        assert len(batch) == 12 and set(counts.values()) == {3} and len(counts) == 4
        assert len(set(batch)) == 12  # no repeats within a class that has enough images


def test_ranks_shard_the_same_global_batch():
    single = MPerClassBatchSampler(LABELS, 12, 3, seed=5)
    ranks = [MPerClassBatchSampler(LABELS, 12, 3, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(3)
    for whole, first, second in zip(single, *ranks):
        assert first + second == whole
        assert len(first) == 6 and set(Counter(LABELS[i] for i in first).values()) == {3}


def test_epochs_differ_and_repeat():
    sampler = MPerClassBatchSampler(LABELS, 12, 3, seed=1)
    sampler.set_epoch(0)
    a = list(sampler)
    sampler.set_epoch(1)
    b = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == a and a != b


@pytest.mark.parametrize("kwargs, fix", [
    (dict(batch_size=10, m=3), "multiple of m_per_class"),
    (dict(batch_size=12, m=3, world_size=8), "e.g. batch size"),
    (dict(batch_size=60, m=3), "--batch-size 18"),
])
def test_impossible_batches_say_how_to_fix(kwargs, fix):
    with pytest.raises(ConfigError, match=fix):
        MPerClassBatchSampler(LABELS, **kwargs)
