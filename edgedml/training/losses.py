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

    Embeddings are the flattened local features (N, R·D) of L2-normalised regions; x̄ is their
    normalised mean. The transport plan T is computed without gradient (as in the official
    code); gradients flow through s and x̄·ȳ. Use it as ``MultiSimilarityLoss(distance=...)``.
    """

    def __init__(self, regions: int, eps: float = 0.05, iters: int = SINKHORN_ITERS,
                 marginals_kind: str = "cross", form: str = "log", **kwargs):
        super().__init__(normalize_embeddings=False, is_inverted=True, **kwargs)
        if form not in SINKHORN_FORMS:
            raise ValueError(f"unknown Sinkhorn form {form!r}; choose one of {sorted(SINKHORN_FORMS)}")
        self.regions, self.eps, self.iters = regions, eps, iters
        self.marginals_kind, self.form = marginals_kind, form

    def _unflatten(self, emb: Tensor) -> Tensor:
        n, flat = emb.shape
        if flat % self.regions:
            raise ValueError(f"embedding size {flat} is not a multiple of regions={self.regions}; "
                             f"pass the flattened local features (N, R·D)")
        return emb.view(n, self.regions, flat // self.regions)

    def _similarity(self, x: Tensor, y: Tensor) -> Tensor:
        match = structural_match(x, y, self.eps, self.iters, self.marginals_kind, self.form, detach_plan=True)
        global_term = (mean_feature(x) * mean_feature(y)).sum(-1)
        return (match.score + global_term) / 2

    def compute_mat(self, query_emb: Tensor, ref_emb: Tensor) -> Tensor:
        """query (N, R·D), ref (M, R·D) → S (N, M)."""
        x = self._unflatten(query_emb).unsqueeze(1)  # (N, 1, R, D)
        y = self._unflatten(ref_emb).unsqueeze(0)  # (1, M, R, D)
        return self._similarity(x, y)

    def pairwise_distance(self, query_emb: Tensor, ref_emb: Tensor) -> Tensor:
        """Aligned pairs: query (N, R·D), ref (N, R·D) → S (N,)."""
        return self._similarity(self._unflatten(query_emb), self._unflatten(ref_emb))


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


def divergence_loss(parts: Tensor, margin: float = 1.0) -> Tensor:
    """ABE's divergence loss: mean over images and learner pairs of max(0, m − ‖f_i − f_j‖²).

    parts (B, M, d) → scalar. One learner gives 0.
    """
    b, m, _ = parts.shape
    if m < 2:
        return parts.new_zeros(())
    i, j = torch.triu_indices(m, m, offset=1, device=parts.device)
    sq_dist = (parts[:, i] - parts[:, j]).pow(2).sum(-1)  # (B, M(M−1)/2)
    return torch.relu(margin - sq_dist).mean()
