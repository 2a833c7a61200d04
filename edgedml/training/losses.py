"""The losses pytorch-metric-learning lacks: DIML's structural similarity (usable as a PML
distance, so any of its losses trains with it), attentive grouping's diversity loss and
ABE's divergence loss. Standard losses, miners and samplers come from PML itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import BaseDistance
from torch import Tensor

from ..models.config import SINKHORN_ITERS
from ..models.matching import SINKHORN_FORMS, mean_feature, structural_match


class StructuralSimilarity(BaseDistance):
    """DIML's training similarity as a PML distance: S = (Σ T ⊙ s + x̄·ȳ) / 2.

    Embeddings are the flattened local features (N, R·D) of L2-normalised regions, x̄ being their
    normalised mean; or, with ``centers=True``, the regions followed by the global feature
    (N, (R+1)·D), which is then x̄ in the global term and in the marginals (DIML's official
    raw-mean x̄, see :func:`flatten_features`). The transport plan T is computed without gradient
    (as in the official code); gradients flow through s and x̄·ȳ. Use it as
    ``MultiSimilarityLoss(distance=...)``.
    """

    def __init__(self, regions: int, eps: float = 0.05, iters: int = SINKHORN_ITERS,
                 marginals_kind: str = "cross", form: str = "log", centers: bool = False,
                 mass: float | None = None, **kwargs):
        super().__init__(normalize_embeddings=False, is_inverted=True, **kwargs)
        if form not in SINKHORN_FORMS:
            raise ValueError(f"unknown Sinkhorn form {form!r}; choose one of {sorted(SINKHORN_FORMS)}")
        self.regions, self.eps, self.iters = regions, eps, iters
        self.marginals_kind, self.form, self.centers = marginals_kind, form, centers
        self.mass = mass  # partial transport (ModelConfig.partial_mass), or None

    def _unflatten(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        """(N, rows·D) → regions (N, R, D) and their centres (N, D)."""
        rows = self.regions + int(self.centers)
        n, flat = emb.shape
        if flat % rows:
            what = "the regions and the global feature (N, (R+1)·D)" if self.centers else "the local features (N, R·D)"
            raise ValueError(f"embedding size {flat} is not a multiple of {rows} rows; pass the flattened {what}")
        features = emb.view(n, rows, flat // rows)
        if self.centers:
            return features[:, :-1], features[:, -1]
        return features, mean_feature(features)

    def _similarity(self, x: tuple[Tensor, Tensor], y: tuple[Tensor, Tensor]) -> Tensor:
        (x, x_bar), (y, y_bar) = x, y
        match = structural_match(x, y, self.eps, self.iters, self.marginals_kind, self.form, detach_plan=True,
                                 x_center=x_bar, y_center=y_bar, mass=self.mass)
        global_term = (x_bar * y_bar).sum(-1)
        return (match.score + global_term) / 2

    def compute_mat(self, query_emb: Tensor, ref_emb: Tensor) -> Tensor:
        """query (N, R·D), ref (M, R·D) → S (N, M)."""
        (x, x_bar), (y, y_bar) = self._unflatten(query_emb), self._unflatten(ref_emb)
        # (N, 1, R, D) against (1, M, R, D)
        return self._similarity((x.unsqueeze(1), x_bar.unsqueeze(1)), (y.unsqueeze(0), y_bar.unsqueeze(0)))

    def pairwise_distance(self, query_emb: Tensor, ref_emb: Tensor) -> Tensor:
        """Aligned pairs: query (N, R·D), ref (N, R·D) → S (N,)."""
        return self._similarity(self._unflatten(query_emb), self._unflatten(ref_emb))


def flatten_features(local: Tensor, embedding: Tensor | None = None) -> Tensor:
    """What :class:`StructuralSimilarity` takes: local (N, R, D) → (N, R·D), or with the global
    feature as the centre, local (N, R, D) and embedding (N, D) → (N, (R+1)·D)."""
    if embedding is None:
        return local.flatten(1)
    return torch.cat([local, embedding.unsqueeze(1)], dim=1).flatten(1)


def diversity_loss(parts: Tensor, margin: float = 0.5, scale: float = 50.0) -> Tensor:
    """Attentive grouping's diversity loss over the k group embeddings of each image.

    L_div = 1/(k−1) · Σ_{i<j} mean_images softplus(scale · (cos(e_i, e_j) − margin)).
    parts (B, k, d) → scalar. Zero groups to compare (k = 1) gives 0.
    """
    b, k, _ = parts.shape
    if k < 2:
        return parts.new_zeros(())
    unit = F.normalize(parts, dim=-1)
    cos = unit @ unit.transpose(1, 2)  # (B, k, k)
    i, j = torch.triu_indices(k, k, offset=1, device=parts.device)
    pair_terms = F.softplus(scale * (cos[:, i, j] - margin))  # (B, k(k−1)/2)
    return pair_terms.mean(0).sum() / (k - 1)


DIVERGENCE_REDUCTIONS = ("sum", "mean")


def divergence_loss(parts: Tensor, margin: float = 1.0, reduction: str = "sum") -> Tensor:
    """ABE's divergence loss over the M learner embeddings of each image.

    "sum" (the paper, Kim et al. ECCV 2018): L_div = Σ_images Σ_{i≠j} max(0, m − ‖f_i − f_j‖²),
    over ordered learner pairs; "mean": the mean over images and unordered pairs (what earlier
    edgedml did; smaller by a factor B·M(M−1)). parts (B, M, d) → scalar. One learner gives 0.
    """
    if reduction not in DIVERGENCE_REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {list(DIVERGENCE_REDUCTIONS)}")
    b, m, _ = parts.shape
    if m < 2:
        return parts.new_zeros(())
    i, j = torch.triu_indices(m, m, offset=1, device=parts.device)
    sq_dist = (parts[:, i] - parts[:, j]).pow(2).sum(-1)  # (B, M(M−1)/2)
    hinge = torch.relu(margin - sq_dist)
    return 2 * hinge.sum() if reduction == "sum" else hinge.mean()  # each unordered pair is two ordered ones
