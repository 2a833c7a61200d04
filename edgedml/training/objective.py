"""The training objective of each head: a pytorch-metric-learning base loss plus the head's own.

- diml: the base loss on DIML's structural similarity S = (Σ T ⊙ s + x̄·ȳ)/2 of the local
  features (pair-based losses); proxy-anchor, which needs vectors, uses the global embedding.
- grouping: the base loss on each group embedding, averaged over groups, plus
  ``diversity_weight`` × the diversity loss (official: λ = 0.01–0.03).
- abe: the base loss on each learner embedding, averaged over learners, plus
  ``divergence_weight`` × the divergence loss (m = 1; summed as in the paper, or averaged with
  ``divergence_reduction="mean"``).
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.config import ModelConfig
from ..models.head_output import HeadOutput
from .losses import StructuralSimilarity, divergence_loss, diversity_loss, flatten_features

BASE_LOSSES = ("multi_similarity", "margin", "triplet", "proxy_anchor")


def make_base_loss(name: str, distance, num_classes: int, dim: int) -> nn.Module:
    """A PML loss on a similarity ``distance``. Margin loss uses the official β = 1.2, margin 0.2
    on unit vectors' Euclidean distance, rewritten in similarity units (d² = 2 − 2S):
    positives pulled above S = 0.5, negatives pushed below S = 0.02 (β' = 0.26, margin 0.24)."""
    if name == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, distance=distance)
    if name == "margin":
        return losses.MarginLoss(margin=0.24, beta=0.26, nu=0.0, distance=distance)
    if name == "triplet":
        return losses.TripletMarginLoss(margin=0.1, distance=distance)
    if name == "proxy_anchor":
        return losses.ProxyAnchorLoss(num_classes=num_classes, embedding_size=dim, margin=0.1, alpha=32)
    raise ConfigError(f"unknown loss {name!r}; choose one of {list(BASE_LOSSES)}")


class Objective(nn.Module):
    """HeadOutput + labels → (total loss, {name: value}) for one (gathered) batch."""

    def __init__(self, model_config: ModelConfig, loss: str = "multi_similarity", num_classes: int = 0,
                 diversity_weight: float = 0.02, divergence_weight: float = 1.0,
                 sinkhorn_form: str = "scaling", divergence_reduction: str = "sum"):
        super().__init__()
        if loss == "proxy_anchor" and num_classes < 2:
            raise ConfigError("proxy_anchor needs the number of training classes (at least 2)")
        if model_config.marginals == "rollout" and model_config.head == "diml" and loss != "proxy_anchor":
            raise ConfigError("the training loss computes its own marginals: train with marginals='cross'; the "
                              "rollout marginals come from the attention and need no training (evaluate or export "
                              "with --marginals rollout)")
        self.head = model_config.head
        self.diversity_weight, self.divergence_weight = diversity_weight, divergence_weight
        self.divergence_reduction = divergence_reduction
        self.structural = model_config.head == "diml" and loss != "proxy_anchor"
        self.centers = model_config.centers_from_embedding
        cosine = distances.CosineSimilarity()
        if self.structural:
            distance = StructuralSimilarity(model_config.regions, model_config.sinkhorn_eps,
                                            model_config.sinkhorn_iters, model_config.marginals, sinkhorn_form,
                                            centers=self.centers, mass=model_config.partial_mass)
            self.base = nn.ModuleList([make_base_loss(loss, distance, num_classes, 0)])
        elif model_config.head == "diml":
            self.base = nn.ModuleList([make_base_loss(loss, cosine, num_classes, model_config.embed_dim)])
        else:
            parts, dim = model_config.parts, model_config.embed_dim // model_config.parts
            # proxies are per part; parameter-free losses are shared
            count = parts if loss == "proxy_anchor" else 1
            self.base = nn.ModuleList([make_base_loss(loss, cosine, num_classes, dim) for _ in range(count)])

    def forward(self, out: HeadOutput, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        if self.head == "diml":
            if self.structural:
                features = flatten_features(out.local, out.embedding if self.centers else None)
            else:
                features = out.embedding
            metric = self.base[0](features.float(), labels)
            return metric, {"metric": metric.item()}
        parts = out.parts.float()
        per_part = [self.base[p % len(self.base)](parts[:, p], labels) for p in range(parts.shape[1])]
        metric = torch.stack(per_part).mean()
        if self.head == "grouping":
            extra = diversity_loss(parts)
            return metric + self.diversity_weight * extra, {"metric": metric.item(), "diversity": extra.item()}
        extra = divergence_loss(parts, reduction=self.divergence_reduction)
        return metric + self.divergence_weight * extra, {"metric": metric.item(), "divergence": extra.item()}
