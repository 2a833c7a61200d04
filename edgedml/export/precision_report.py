"""Every precision's graphs executed on real inputs by ONNX Runtime and held to bounds.

Per precision (fp16, int8, int8-cpu), against the fp32 graphs on the same inputs:
- the embedding cosine to fp32 on real images, mean and minimum (bound on the mean:
  fp16 ≥ 0.999, INT8 ≥ 0.98; the minimum is reported);
- the matcher graph alone on real feature pairs (the fp32 embedder's features of real images):
  max |Δ| of the structural and multi-scale scores ≤ 1e-2, and no inf or NaN anywhere;
- with a labelled folder (``--validate-data``), the change of MAP@R on it, for global and for
  multi-scale ranking: a drop of at most 0.01 (fp16, int8-cpu) or 0.02 (int8), on the ranking
  the bundle serves (multi-scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.inference.agreement import EMBEDDING_COSINE, MAP_AT_R_DROP, SCORE_TOL, row_cosines
from ..runtime.inference.chunking import CHUNKED, Limit, run_in_chunks
from .validate import session

MATCHER_SCORE_TOL = SCORE_TOL


@dataclass(frozen=True)
class PrecisionBounds:
    cosine_mean: float
    map_drop: float


BOUNDS = {p: PrecisionBounds(EMBEDDING_COSINE[p], MAP_AT_R_DROP[p]) for p in MAP_AT_R_DROP}


class GraphRunner:
    """An ONNX Runtime CPU session for one graph file, run within its axis-0 limit."""

    def __init__(self, path: str | Path, chunked: tuple[str, ...], limit: Limit = Limit()):
        self.session = session(path)
        self.names = [o.name for o in self.session.get_outputs()]
        self.chunked, self.limit = chunked, limit

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        def run(part):
            return dict(zip(self.names, self.session.run(None, part)))

        return run_in_chunks(run, feeds, self.chunked, self.limit)


def embedder_runner(path, limit: Limit = Limit()) -> GraphRunner:
    return GraphRunner(path, CHUNKED["embedder"], limit)


def matcher_runner(path) -> GraphRunner:
    return GraphRunner(path, CHUNKED["matcher"])


def matcher_feeds(embedding: np.ndarray, local: np.ndarray,
                  marginal: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The first image as the query against all of them: real feature pairs, self pair included
    (with their region marginals, for a rollout matcher)."""
    feeds = {"query_local": local[:1], "query_embedding": embedding[:1],
             "candidate_local": local, "candidate_embedding": embedding}
    if marginal is not None:
        feeds.update(query_marginal=marginal[:1], candidate_marginal=marginal)
    return feeds


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict:
    """Embedder outputs at one precision against fp32: cosines per image, finiteness."""
    cos = row_cosines(got["embedding"], want["embedding"])
    local = row_cosines(got["local"].reshape(-1, got["local"].shape[-1]),
                        want["local"].reshape(-1, want["local"].shape[-1]))
    return {"embedding_cosine_mean": float(cos.mean()), "embedding_cosine_min": float(cos.min()),
            "local_cosine_mean": float(local.mean()),
            "finite": bool(all(np.isfinite(v).all() for v in got.values()))}


def compare_matchers(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict:
    return {"max_abs_diff_structural": float(np.abs(got["structural"] - want["structural"]).max()),
            "max_abs_diff_multiscale": float(np.abs(got["multiscale"] - want["multiscale"]).max()),
            "finite": bool(all(np.isfinite(v).all() for v in got.values()))}


def map_at_r(embedding: np.ndarray, local: np.ndarray, labels: np.ndarray, k: int, sinkhorn: dict) -> dict:
    """MAP@R of global and multi-scale ranking on a labelled set (every image queries the rest)."""
    import torch

    from ..training.evaluate import Embedded, evaluate_embeddings

    data = Embedded(torch.from_numpy(embedding).float(), torch.from_numpy(local).float(), torch.from_numpy(labels))
    results = evaluate_embeddings(data, structural=False, multiscale=True, nmi=False, k=k, **sinkhorn)
    return {name: round(values["map@r"], 5) for name, values in results.items()}


def check(precision: str, report: dict) -> list[str]:
    """The failures of one precision's report against its bounds."""
    bounds, failures = BOUNDS[precision], []
    emb = report["embedder"]
    if not emb["finite"]:
        failures.append(f"{precision} embedder produced inf or NaN")
    if emb["embedding_cosine_mean"] < bounds.cosine_mean:
        failures.append(f"{precision} embedding cosine to fp32 {emb['embedding_cosine_mean']:.4f} < "
                        f"{bounds.cosine_mean} (minimum {emb['embedding_cosine_min']:.4f})")
    match = report["matcher"]
    if not match["finite"]:
        failures.append(f"{precision} matcher produced inf or NaN")
    worst = max(match["max_abs_diff_structural"], match["max_abs_diff_multiscale"])
    if worst > MATCHER_SCORE_TOL:
        failures.append(f"{precision} matcher score |Δ| {worst:.2e} > {MATCHER_SCORE_TOL}")
    drop = report.get("map_at_r", {}).get("drop_multiscale")
    if drop is not None and drop > bounds.map_drop:
        failures.append(f"{precision} MAP@R (multi-scale) drops by {drop:.4f} > {bounds.map_drop} on the labelled "
                        f"folder; calibrate on more images (--calib) or another --calib-method")
    return failures
