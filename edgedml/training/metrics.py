"""Retrieval and clustering metrics as deep-metric-learning papers report them: Recall@k
(ProxyAnchor, DIML), MAP@R and R-precision (Musgrave et al., "A Metric Learning Reality Check")
and NMI of k-means on the embeddings.

Conventions
-----------
* ``order`` (Q, W) holds reference indices, most similar first, as made by `rank_references`.
  W may be smaller than N (a top-W ranking) as long as it covers max(ks) and max(R).
* Self-retrieval (query set == reference set): rank with ``rank_references(..., exclude_self=True,
  query_offset=...)``, which moves each query's own index to the last column, and pass
  ``exclude_self=True`` to the metrics: R then excludes the query, and only the first N - 1
  columns are read, so the self match never counts.
* Queries with R = 0 (no other reference shares their label) are skipped by every retrieval
  metric, as in pytorch-metric-learning's AccuracyCalculator: their per-query value is NaN.
* Chunking: every function works on a chunk of query rows. With ``reduce=False`` the metrics
  return per-query tensors (Q,); concatenate the chunks and call `mean_over_queries`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def rank_references(similarity: Tensor, exclude_self: bool = False, query_offset: int = 0) -> Tensor:
    """similarity (Q, N) → order (Q, N) of reference indices, most similar first (stable sort,
    so ties keep reference order). With ``exclude_self`` query row q is reference
    ``query_offset + q`` (the chunk's offset in the shared set) and is moved to the last column."""
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be (queries, references), got shape {tuple(similarity.shape)}")
    if torch.isnan(similarity).any():
        raise ValueError("similarity contains NaN; check the embeddings for NaN or zero vectors")
    q, n = similarity.shape
    order = torch.sort(similarity, dim=1, descending=True, stable=True).indices
    if not exclude_self:
        return order
    if query_offset < 0 or query_offset + q > n:
        raise ValueError(f"exclude_self needs query rows {query_offset}..{query_offset + q - 1} to be "
                         f"reference indices < {n}; pass the chunk's offset as query_offset")
    own = torch.arange(query_offset, query_offset + q, device=order.device).unsqueeze(1)
    others = order[order != own].view(q, n - 1)
    return torch.cat([others, own], dim=1)


def _float(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _check(order: Tensor, query_labels: Tensor, ref_labels: Tensor) -> tuple[Tensor, Tensor]:
    if order.dim() != 2 or order.dtype.is_floating_point:
        raise ValueError(f"order must be an integer (queries, ranked) tensor from rank_references, "
                         f"got {order.dtype} {tuple(order.shape)}")
    if query_labels.shape != (order.shape[0],) or ref_labels.dim() != 1:
        raise ValueError(f"need query_labels ({order.shape[0]},) and 1-D ref_labels, got "
                         f"{tuple(query_labels.shape)} and {tuple(ref_labels.shape)}")
    if ref_labels.numel() == 0:
        raise ValueError("ref_labels is empty; pass the labels of the reference set")
    return query_labels.to(order.device, ref_labels.dtype), ref_labels.to(order.device)


def _relevant_counts(query_labels: Tensor, ref_labels: Tensor, exclude_self: bool) -> Tensor:
    """R (Q,): references sharing each query's label, the query itself excluded."""
    values, counts = torch.unique(ref_labels, return_counts=True)
    at = torch.searchsorted(values, query_labels).clamp_max(len(values) - 1)
    r = torch.where(values[at] == query_labels, counts[at], torch.zeros_like(counts[at]))
    return (r - 1).clamp_min(0) if exclude_self else r


def _hits(order: Tensor, query_labels: Tensor, ref_labels: Tensor, cols: int, exclude_self: bool,
          what: str) -> Tensor:
    """(Q, cols) bool: is the reference at each rank of the query's label."""
    usable = min(order.shape[1], len(ref_labels) - int(exclude_self))
    if cols > usable:
        raise ValueError(f"{what} needs the first {cols} ranked references but order has only {usable} "
                         f"usable columns; rank more references (or lower k)")
    return ref_labels[order[:, :cols]] == query_labels.unsqueeze(1)


def mean_over_queries(values: Tensor) -> float:
    """Per-query values (Q,) with NaN for skipped queries → their mean over the others."""
    kept = values[~torch.isnan(values)]
    if kept.numel() == 0:
        raise ValueError("no query has another reference with its label (R = 0 for all); "
                         "check the labels, or that the reference set is the right one")
    return float(kept.mean())


def recall_at_k(order: Tensor, query_labels: Tensor, ref_labels: Tensor,
                ks: Sequence[int] = (1, 2, 4, 8), exclude_self: bool = False,
                reduce: bool = True) -> dict[int, float] | dict[int, Tensor]:
    """Fraction of queries with at least one same-label reference among the first k of `order`.
    order (Q, W), labels (Q,) and (N,) → {k: recall}, or {k: per-query 0/1/NaN (Q,)} unreduced."""
    query_labels, ref_labels = _check(order, query_labels, ref_labels)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive ranks like (1, 2, 4, 8), got {tuple(ks)}")
    hits = _hits(order, query_labels, ref_labels, max(ks), exclude_self, "recall@k")
    skip = _relevant_counts(query_labels, ref_labels, exclude_self) == 0
    out = {}
    for k in ks:
        per_query = hits[:, :k].any(dim=1).to(_float(order.device)).masked_fill(skip, float("nan"))
        out[k] = mean_over_queries(per_query) if reduce else per_query
    return out


def _ranked_relevance(order: Tensor, query_labels: Tensor, ref_labels: Tensor, exclude_self: bool,
                      what: str) -> tuple[Tensor, Tensor, Tensor]:
    """→ rel (Q, max R) bool, true only within each query's first R; R (Q,); skip (Q,) bool."""
    query_labels, ref_labels = _check(order, query_labels, ref_labels)
    r = _relevant_counts(query_labels, ref_labels, exclude_self)
    cols = int(r.max()) if r.numel() else 0
    rel = _hits(order, query_labels, ref_labels, cols, exclude_self, what)
    ranks = torch.arange(1, cols + 1, device=order.device)
    return rel & (ranks <= r.unsqueeze(1)), r, r == 0


def map_at_r(order: Tensor, query_labels: Tensor, ref_labels: Tensor, exclude_self: bool = False,
             reduce: bool = True) -> float | Tensor:
    """MAP@R: R = references with the query's label (the query excluded), AP@R =
    (1/R) Σ_{i≤R} P(i)·rel(i), P(i) = precision of the first i. Only the first max(R) columns of
    order (Q, W) are read. Queries with R = 0 are skipped (NaN unreduced); raises if all are."""
    rel, r, skip = _ranked_relevance(order, query_labels, ref_labels, exclude_self, "MAP@R")
    dtype = _float(order.device)
    ranks = torch.arange(1, rel.shape[1] + 1, device=order.device, dtype=dtype)
    precision = rel.cumsum(dim=1).to(dtype) / ranks
    ap = (precision * rel).sum(dim=1) / r.clamp_min(1).to(dtype)
    ap = ap.masked_fill(skip, float("nan"))
    return mean_over_queries(ap) if reduce else ap


def r_precision(order: Tensor, query_labels: Tensor, ref_labels: Tensor, exclude_self: bool = False,
                reduce: bool = True) -> float | Tensor:
    """Mean over queries of (# same-label among the first R) / R; R = 0 queries skipped."""
    rel, r, skip = _ranked_relevance(order, query_labels, ref_labels, exclude_self, "R-precision")
    dtype = _float(order.device)
    rp = (rel.sum(dim=1).to(dtype) / r.clamp_min(1).to(dtype)).masked_fill(skip, float("nan"))
    return mean_over_queries(rp) if reduce else rp


def retrieval_metrics(order: Tensor, query_labels: Tensor, ref_labels: Tensor,
                      ks: Sequence[int] = (1, 2, 4, 8), exclude_self: bool = False,
                      reduce: bool = True) -> dict[str, float] | dict[str, Tensor]:
    """{'recall@1': ..., 'recall@2': ..., ..., 'map@r': ..., 'r_precision': ...} (floats, or
    per-query tensors (Q,) with ``reduce=False``)."""
    args = (order, query_labels, ref_labels)
    out = {f"recall@{k}": v for k, v in
           recall_at_k(*args, ks=ks, exclude_self=exclude_self, reduce=reduce).items()}
    out["map@r"] = map_at_r(*args, exclude_self=exclude_self, reduce=reduce)
    out["r_precision"] = r_precision(*args, exclude_self=exclude_self, reduce=reduce)
    return out


def _assign(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """x (N, D), centers (K, D) → nearest center (N,), squared distance to it (N,); row chunks
    keep the (chunk, K) distance block near 16M entries."""
    labels, dist = [], []
    c2 = (centers * centers).sum(dim=1)
    step = max(1, (1 << 24) // len(centers))
    for part in x.split(step):
        d2 = (part * part).sum(dim=1, keepdim=True) - 2 * part @ centers.T + c2
        best = d2.min(dim=1)
        labels.append(best.indices)
        dist.append(best.values.clamp_min(0))
    return torch.cat(labels), torch.cat(dist)


def _kmeans_pp(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each next center drawn with probability ∝ squared distance (K, D)."""
    n = len(x)
    draws = torch.rand(k, generator=generator).to(x.device)
    first = int(torch.randint(n, (1,), generator=generator))
    centers = x[first].repeat(k, 1)
    d2 = ((x - x[first]) ** 2).sum(dim=1)
    for j in range(1, k):
        cdf = d2.cumsum(dim=0)
        pick = torch.searchsorted(cdf, (draws[j] * cdf[-1]).reshape(1), right=True).clamp_max(n - 1)
        centers[j:j + 1] = x[pick]
        d2 = torch.minimum(d2, ((x - x[pick]) ** 2).sum(dim=1))
    return centers


def _lloyd(x: Tensor, centers: Tensor, iters: int) -> tuple[Tensor, float]:
    """Lloyd iterations from centers (K, D) → labels (N,), inertia. Empty clusters are re-seeded
    at the points farthest from their centers."""
    k = len(centers)
    labels, d2 = _assign(x, centers)
    for _ in range(iters):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        centers = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        empty = counts == 0
        if empty.any():
            centers[empty] = x[d2.topk(int(empty.sum())).indices]
        new_labels, d2 = _assign(x, centers)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return labels, float(d2.sum())


def kmeans(embeddings: Tensor, k: int, iters: int = 100, seed: int = 0, n_init: int = 3) -> Tensor:
    """embeddings (N, D) → cluster labels (N,) in [0, k): k-means++ seeding, Lloyd iterations on
    the embeddings' device, best of n_init runs by inertia. Deterministic for a seed on a given
    device (CUDA's atomic index_add_ may differ in the last bit between runs)."""
    if embeddings.dim() != 2 or not 1 <= k <= len(embeddings):
        raise ValueError(f"need embeddings (N, D) and 1 <= k <= N, got {tuple(embeddings.shape)} and k={k}")
    if iters < 1 or n_init < 1:
        raise ValueError(f"iters and n_init must be >= 1, got {iters} and {n_init}")
    x = embeddings.detach()
    x = x if x.dtype == torch.float64 else x.float()
    generator = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        labels, inertia = _lloyd(x, _kmeans_pp(x, k, generator), iters)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def _entropy(counts: Tensor, n: int) -> Tensor:
    p = counts.double() / n
    return -(p * p.log()).sum()


def normalized_mutual_info(labels_true: Tensor, labels_pred: Tensor) -> float:
    """labels (N,), (N,) → I(U;V) / ((H(U) + H(V)) / 2), natural log (sklearn's default
    'arithmetic' normalisation); 1.0 when both labelings have a single cluster."""
    if labels_true.dim() != 1 or labels_true.shape != labels_pred.shape or labels_true.numel() == 0:
        raise ValueError(f"need two non-empty 1-D labelings of equal length, got "
                         f"{tuple(labels_true.shape)} and {tuple(labels_pred.shape)}")
    u, u_idx, u_counts = torch.unique(labels_true.cpu(), return_inverse=True, return_counts=True)
    v, v_idx, v_counts = torch.unique(labels_pred.cpu(), return_inverse=True, return_counts=True)
    if len(u) == 1 and len(v) == 1:
        return 1.0
    n = len(u_idx)
    cells, n_ij = torch.unique(u_idx * len(v) + v_idx, return_counts=True)  # non-empty cells only
    a, b, n_ij = u_counts[cells // len(v)].double(), v_counts[cells % len(v)].double(), n_ij.double()
    mi = float((n_ij / n * (n * n_ij / (a * b)).log()).sum().clamp_min(0))
    normaliser = float(_entropy(u_counts, n) + _entropy(v_counts, n)) / 2
    return min(mi / max(normaliser, torch.finfo(torch.float64).eps), 1.0)


def nmi(embeddings: Tensor, labels: Tensor, seed: int = 0) -> float:
    """embeddings (N, D), labels (N,) → NMI of k-means (k = distinct labels) on the L2-normalised
    embeddings against the labels."""
    if embeddings.dim() != 2 or labels.shape != (len(embeddings),):
        raise ValueError(f"need embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} "
                         f"and {tuple(labels.shape)}")
    x = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
    clusters = kmeans(x, int(torch.unique(labels).numel()), seed=seed)
    return normalized_mutual_info(labels, clusters)
