"""Training (torch): datasets and class-disjoint splits, m-per-class sampling and augmentation,
the losses edgedml adds to pytorch-metric-learning and each head's objective, the trainer behind
``edgedml train`` (:mod:`.trainer`) and the retrieval evaluation behind ``edgedml eval``
(:mod:`.evaluate`).

Only the losses are imported here; the other parts are imported from their modules."""

from .losses import StructuralSimilarity, divergence_loss, diversity_loss

__all__ = ["StructuralSimilarity", "divergence_loss", "diversity_loss"]
