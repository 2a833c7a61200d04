"""How many Sinkhorn iterations the scores need, measured on real features.

    python benchmarks/sinkhorn_iterations.py [--checkpoint runs/cub_diml/best.safetensors]

For flowers17 test (classes 09–17) and cub_birds test (classes 39–76), with the default model
(ImageNet EfficientNet-Lite0 + DIML head, seeded) and, when given, a trained checkpoint:
- the official DIML early stop (wl-zhao/DIML: stop when the mean |Δr| of the row scaling falls
  below 0.1, at most 100 iterations): how many iterations it runs, over every query's top-K pairs.
  Counted per pair here, in edgedml's orientation (the query's regions on rows); the official
  loop takes one mean over the whole batch it is given (a query's K candidates, all regions) and
  stops them all at once, with the candidate's regions on rows. So these counts are not the
  official loop's iteration counts, only how soon each pair alone would meet the criterion;
- the structural score after n iterations against n = 1000, max and mean |Δ|, on the same pairs;
- multi-scale MAP@R (global top K = 100 re-ranked) for each n, and the largest change in it
  against n = 100 (the previous default).
Results: benchmarks/results/sinkhorn_iterations.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {"flowers17": 8, "cub_birds": 38}  # the first N sorted classes train
ITERS = (10, 20, 30, 40, 50, 100)
REFERENCE = 1000


def official_stop(s, u, v, eps: float, thresh: float = 0.1, most: int = 100):
    """Iterations the official criterion would take for each pair alone: r ← u / (K c),
    c ← v / (Kᵀ r), stop when mean |r − r_prev| < thresh. The official loop instead takes that
    mean over its whole batch (every pair, all regions) and stops the batch at once, with the
    candidate's regions on rows (r the candidate's scaling; here r is the query's).
    s (P, R, R), u, v (P, R) → (P,) iteration counts."""
    import torch

    kernel = torch.exp(-(1 - s) / eps)
    r, c = torch.ones_like(u), torch.ones_like(v)
    stopped = torch.full(u.shape[:1], most, dtype=torch.long)
    running = torch.ones(u.shape[:1], dtype=torch.bool)
    for i in range(most):
        r_prev = r
        r = u / (kernel @ c.unsqueeze(-1)).squeeze(-1)
        c = v / (kernel.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        done = running & ((r - r_prev).abs().mean(-1) < thresh)
        stopped[done] = i + 1
        running &= ~done
        if not running.any():
            break
    return stopped


def measure(data, eps: float, marginals: str, k: int) -> dict:
    from edgedml.models.matching import marginals as marginals_of
    from edgedml.models.matching import region_similarity, sinkhorn_scaling
    from edgedml.training import metrics
    from edgedml.training.evaluate import evaluate_embeddings

    # the pairs multi-scale ranking scores: every query against its global top K
    global_sim = data.embedding @ data.embedding.T
    order = metrics.rank_references(global_sim, exclude_self=True, query_offset=0)[:, :k]
    x = data.local.unsqueeze(1)  # (N, 1, R, D)
    y = data.local[order]  # (N, K, R, D)
    s = region_similarity(x, y).double()
    u, v = (m.double() for m in marginals_of(x, y, marginals))
    flat = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731
    valid = (u.sum(-1) > 0.5) & (v.sum(-1) > 0.5)
    stops = official_stop(flat(s), flat(u), flat(v), eps)[flat(valid).reshape(-1)].float()
    reference = (sinkhorn_scaling(s, u, v, eps, REFERENCE) * s).sum((-1, -2))
    out = {"pairs": int(valid.sum()), "official_stop": {
        "mean": float(stops.mean()), "median": float(stops.median()), "p95": float(stops.quantile(0.95)),
        "max": float(stops.max())}, "by_iters": {}}
    for n in ITERS:
        scores = (sinkhorn_scaling(s, u, v, eps, n) * s).sum((-1, -2))
        diff = (scores - reference).abs()[valid]
        ranks = evaluate_embeddings(data, structural=False, nmi=False, k=k, eps=eps, iters=n, marginals=marginals)
        out["by_iters"][n] = {"max_abs_diff_vs_1000": float(diff.max()), "mean_abs_diff_vs_1000": float(diff.mean()),
                              "map_at_r": ranks["multiscale"]["map@r"],
                              "recall_at_1": ranks["multiscale"]["recall@1"]}
    base = out["by_iters"][100]["map_at_r"]
    for row in out["by_iters"].values():
        row["map_at_r_change_vs_100"] = row["map_at_r"] - base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="A trained checkpoint to measure besides the default model.")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    import torch

    from edgedml.models import ModelConfig, build_model, load_checkpoint
    from edgedml.training.class_folders import class_folder_split
    from edgedml.training.evaluate import embed_samples

    torch.manual_seed(0)
    models = {"default (untrained head)": build_model(ModelConfig())}
    if args.checkpoint:
        models[f"trained {Path(args.checkpoint).parent.name}"] = load_checkpoint(args.checkpoint)
    results = {"machine": platform.processor() or platform.machine(), "k": args.k, "reference_iters": REFERENCE,
               "models": {}}
    for name, model in models.items():
        cfg = model.config
        results["models"][name] = {}
        for dataset, train_classes in DATASETS.items():
            classes = sorted(p.name for p in (DATA / dataset).iterdir() if p.is_dir())
            split = class_folder_split(DATA / dataset, train_classes=classes[:train_classes])
            data = embed_samples(model, split.test, cfg.preprocessing(), workers=0)
            print(f"{name} / {dataset}: {len(split.test)} test images", flush=True)
            results["models"][name][dataset] = measure(data, cfg.sinkhorn_eps, cfg.marginals, args.k)
            print(json.dumps(results["models"][name][dataset]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sinkhorn_iterations.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| model | data | official stop (mean / p95) | "
             + " | ".join(f"n={n}: max Δscore, ΔMAP@R" for n in ITERS) + " |",
             "|---|---|---|" + "---|" * len(ITERS)]
    for name, per_data in results["models"].items():
        for dataset, r in per_data.items():
            stop = r["official_stop"]
            cells = [f"{row['max_abs_diff_vs_1000']:.1e}, {row['map_at_r_change_vs_100']:+.4f}"
                     for row in r["by_iters"].values()]
            lines.append(f"| {name} | {dataset} | {stop['mean']:.1f} / {stop['p95']:.0f} | " + " | ".join(cells) + " |")
    (out / "sinkhorn_iterations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
