"""`edgedml eval`: retrieval on held-out classes, measured the way the papers measure it.

Every test image queries all the others (itself excluded). Three rankings are scored:
- ``global``: cosine of the global embeddings;
- ``structural``: DIML's structural similarity Σ T ⊙ s over all pairs (costly: by default only
  up to 10,000 images);
- ``multiscale``: the global ranking with its top N (``k``; default 1000, the largest
  ``trunc_num`` of the official ``eval_diml.py``'s default list, while the official training and
  test scripts, and ``edgedml eval``, re-rank the top 100) re-ranked by S_struct + global cosine
  (DIML's multi-scale matching).
Recall@{1,2,4,8}, MAP@R and R-precision for each; NMI of k-means on the global embeddings.
Similarities are computed in chunks of queries, so memory stays bounded on large test sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.config import SINKHORN_ITERS
from ..models.embedder import EmbeddingModel
from ..models.matching import multiscale_rerank, structural_match
from ..preprocessing import PreprocessSpec
from . import metrics
from .image_dataset import ImageDataset
from .splits import Sample
from .transforms import EvalTransform

STRUCTURAL_AUTO_LIMIT = 10_000
RERANK_CANDIDATES = 1000  # the largest of eval_diml.py's trunc_nums; train_diml.py and test_diml.py use 100
_CHUNK_BYTES = 256 * 2**20


@dataclass
class Embedded:
    """Features of an evaluation set: embedding (N, D), local (N, R, Dl), labels (N,), and the
    region marginals (N, R) of a rollout model."""

    embedding: Tensor
    local: Tensor
    labels: Tensor
    marginal: Tensor | None = None


@torch.no_grad()
def embed_samples(model: EmbeddingModel, samples: list[Sample], spec: PreprocessSpec, device="cpu",
                  batch_size: int = 64, workers: int = 2, progress: bool = False) -> Embedded:
    """Run the model in eval mode over ``samples`` with the deployment preprocessing."""
    loader = torch.utils.data.DataLoader(ImageDataset(samples, EvalTransform(spec)), batch_size=batch_size,
                                         shuffle=False, num_workers=workers)
    was_training = model.training
    model.eval()
    embeddings, locals_, labels, marginals = [], [], [], []
    from ..progress import progress_bar

    for images, batch_labels in progress_bar(loader, desc="embedding", unit="batch", enabled=progress):
        out = model(images.to(device))
        embeddings.append(out.embedding.float().cpu())
        locals_.append(out.local.float().cpu())
        labels.append(batch_labels)
        if out.marginal is not None:
            marginals.append(out.marginal.float().cpu())
    model.train(was_training)
    return Embedded(torch.cat(embeddings), torch.cat(locals_), torch.cat(labels),
                    torch.cat(marginals) if marginals else None)


def _chunks(n_queries: int, per_query_bytes: int):
    step = max(1, min(n_queries, _CHUNK_BYTES // max(1, per_query_bytes)))
    for start in range(0, n_queries, step):
        yield start, min(n_queries, start + step)


def _score(per_query: list[dict[str, Tensor]]) -> dict[str, float]:
    keys = per_query[0].keys()
    return {k: metrics.mean_over_queries(torch.cat([p[k] for p in per_query])) for k in keys}


def _structural(data: Embedded, queries: slice, refs, settings: dict, centers: bool) -> Tensor:
    """Structural scores of the queries against ``refs``: an index (Q, K) of candidates per query,
    or ``None`` for every image; (Q, K) or (Q, N)."""
    x, x_bar = data.local[queries].unsqueeze(1), data.embedding[queries].unsqueeze(1)
    if refs is None:
        y, y_bar = data.local.unsqueeze(0), data.embedding.unsqueeze(0)
    else:
        y, y_bar = data.local[refs], data.embedding[refs]
    if not centers:
        x_bar = y_bar = None
    given = None
    if data.marginal is not None and settings.get("marginals_kind") == "rollout":
        mine = data.marginal[queries].unsqueeze(1)
        given = (mine, data.marginal.unsqueeze(0) if refs is None else data.marginal[refs])
    return structural_match(x, y, **settings, x_center=x_bar, y_center=y_bar, given=given).score


def evaluate_embeddings(data: Embedded, structural: bool | None = None, multiscale: bool = True,
                        nmi: bool = True, k: int = RERANK_CANDIDATES, keep: int | None = None,
                        eps: float = 0.05, iters: int = SINKHORN_ITERS, marginals: str = "cross",
                        form: str = "scaling", centers: bool = False, ks=(1, 2, 4, 8),
                        progress: bool = False, mass: float | None = None) -> dict[str, dict[str, float]]:
    """Score the rankings described in the module doc; returns {ranking: {metric: value}}.

    ``k``: the global top N scored structurally for the multi-scale ranking; ``keep``: how many
    of the re-ranked ones precede the global remainder (default all, see
    :func:`multiscale_rerank`). ``centers``: the marginals weigh regions against the global
    embeddings (``ModelConfig.centers_from_embedding``). ``mass``: partial transport
    (``ModelConfig.partial_mass``)."""
    n = data.embedding.shape[0]
    if n < 2:
        raise ValueError("evaluation needs at least 2 images")
    labels, emb, local = data.labels, data.embedding, data.local
    settings = dict(eps=eps, iters=iters, marginals_kind=marginals, form=form, mass=mass)
    structural = n <= STRUCTURAL_AUTO_LIMIT if structural is None else structural
    k = min(k, n - 1)
    ks = tuple(r for r in ks if r <= n - 1)  # Recall@8 needs at least 9 images
    r, dl = local.shape[1], local.shape[2]
    results: dict[str, list] = {"global": [], "multiscale": [], "structural": []}
    chunks = list(_chunks(n, n * 8 + k * r * (r + dl) * 16))
    from ..progress import progress_bar

    bar = progress_bar(total=n, desc="ranking", unit="query", enabled=progress) if progress else None
    for start, stop in chunks:
        q_labels = labels[start:stop]
        global_sim = emb[start:stop] @ emb.T  # (q, N)
        order = metrics.rank_references(global_sim, exclude_self=True, query_offset=start)
        results["global"].append(metrics.retrieval_metrics(order, q_labels, labels, ks, exclude_self=True,
                                                           reduce=False))
        if multiscale:
            top = order[:, :k]  # (q, K), never the query itself
            scores = _structural(data, slice(start, stop), top, settings, centers)  # (q, K)
            reranked = multiscale_rerank(global_sim, scores, order, keep)
            results["multiscale"].append(
                metrics.retrieval_metrics(reranked, q_labels, labels, ks, exclude_self=True, reduce=False))
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    if structural:
        for start, stop in _chunks(n, n * r * (r + dl) * 16):
            scores = _structural(data, slice(start, stop), None, settings, centers)  # (q, N)
            order = metrics.rank_references(scores, exclude_self=True, query_offset=start)
            results["structural"].append(
                metrics.retrieval_metrics(order, labels[start:stop], labels, ks, exclude_self=True, reduce=False))
    out = {name: _score(parts) for name, parts in results.items() if parts}
    if nmi:
        out["global"]["nmi"] = metrics.nmi(emb, labels)
    return out


def matching_options(cfg) -> dict:
    """The structural-matching settings of a ModelConfig, as :func:`evaluate_embeddings` takes them."""
    return {"eps": cfg.sinkhorn_eps, "iters": cfg.sinkhorn_iters, "marginals": cfg.marginals,
            "centers": cfg.centers_from_embedding, "mass": cfg.partial_mass}


def evaluate_model(model: EmbeddingModel, samples: list[Sample], device="cpu", batch_size: int = 64,
                   workers: int = 2, progress: bool = False, **options) -> dict[str, dict[str, float]]:
    """Embed ``samples`` and score them; matching settings default to the model's config."""
    cfg = model.config
    options = {**matching_options(cfg), **options}
    data = embed_samples(model, samples, cfg.preprocessing(), device, batch_size, workers, progress)
    return evaluate_embeddings(data, progress=progress, **options)
