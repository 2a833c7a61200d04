"""Training (torch): the losses edgedml adds to pytorch-metric-learning. The trainer, datasets
and evaluation arrive with `edgedml train` and `edgedml eval`."""

from .losses import StructuralSimilarity, divergence_loss, diversity_loss

__all__ = ["StructuralSimilarity", "divergence_loss", "diversity_loss"]
