"""DistributedDataParallel helpers: this process's rank and the world size, and gathering a
batch's outputs and labels from every rank (identities when ``torch.distributed`` is not
initialised, so one process runs the same code)."""

from __future__ import annotations

import torch


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from all ranks along dim 0. The backward pass sums the gradients
    of all ranks for each rank's own piece, so with DDP's gradient averaging the update equals
    one process training on the whole global batch."""
    dist = _dist()
    if dist is None:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    dist = _dist()
    if dist is None:
        return labels
    out = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(out, labels)
    return torch.cat(out)
