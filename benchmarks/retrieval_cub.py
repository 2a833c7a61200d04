"""Retrieval on cub_birds test (classes 39–76, 2,245 photos of 38 species no model trained on):
the untrained ImageNet backbone against trained diml, grouping and abe, each ranked three ways.

    python scripts/train_presets.py objects        # the trained diml (the `objects` preset)
    python scripts/train_presets.py cub_grouping   # runs/cub_grouping
    python scripts/train_presets.py cub_abe        # runs/cub_abe
    python benchmarks/retrieval_cub.py             # → benchmarks/results/retrieval_cub.{json,md}

Rankings: global (cosine of the embeddings), structural (Σ T ⊙ s against every image) and
multi-scale (the global top 1000 re-ranked by structural + global, the official DIML
evaluation). Metrics: Recall@{1,2,4,8}, MAP@R, R-precision. Every model is evaluated exactly as
`edgedml eval --data ../shared/data/cub_birds --checkpoint MODEL` does. CUB-200-2011 (Wah et
al., Caltech) is a research-use set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cub_birds"
MODELS = {
    "untrained ImageNet Lite0 (preset imagenet)": "imagenet",
    "trained diml (preset objects)": "objects",
    "trained grouping": str(ROOT / "runs" / "cub_grouping" / "best.safetensors"),
    "trained abe": str(ROOT / "runs" / "cub_abe" / "best.safetensors"),
}
RANKINGS = ("global", "structural", "multiscale")
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision")


def markdown(report: dict) -> str:
    lines = ["| model | ranking | R@1 | R@2 | R@4 | R@8 | MAP@R | R-precision |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        for ranking in [r for r in RANKINGS if r in entry["metrics"]]:
            m = entry["metrics"][ranking]
            lines.append(f"| {name} | {ranking} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
    lines += ["", *(f"- {line}" for line in targets(report))]
    return "\n".join(lines) + "\n"


def targets(report: dict) -> list[str]:
    """The issue's targets, checked on the numbers (met or missed, and by how much)."""
    models = report["models"]
    out = []
    base = models.get("untrained ImageNet Lite0 (preset imagenet)")
    diml = models.get("trained diml (preset objects)")
    if base and diml:
        r1 = diml["metrics"]["multiscale"]["recall@1"] - base["metrics"]["global"]["recall@1"]
        mapr = diml["metrics"]["multiscale"]["map@r"] - base["metrics"]["global"]["map@r"]
        out.append(f"trained diml multi-scale R@1 − untrained global R@1 = {100 * r1:+.1f} points "
                   f"(target ≥ +5: {'met' if r1 >= 0.05 else 'missed'})")
        out.append(f"trained diml multi-scale MAP@R − untrained global MAP@R = {mapr:+.3f} "
                   f"(target ≥ +0.05: {'met' if mapr >= 0.05 else 'missed'})")
    for name, entry in models.items():
        m = entry["metrics"]
        if "multiscale" not in m:
            continue
        d_r1 = m["multiscale"]["recall@1"] - m["global"]["recall@1"]
        d_map = m["multiscale"]["map@r"] - m["global"]["map@r"]
        ok = d_r1 >= 0 and d_map >= 0
        out.append(f"{name}: multi-scale − global: R@1 {100 * d_r1:+.1f} points, MAP@R {d_map:+.3f} "
                   f"(target ≥ 0: {'met' if ok else 'missed'})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names of MODELS to (re)run")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--global-only", action="store_true",
                        help="only the global ranking (minutes instead of the structural rankings' hour for "
                             "the 1,280-dimensional regions of the imagenet preset on a 2-core CPU)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    from edgedml.models import load_checkpoint
    from edgedml.training.datasets import load_split
    from edgedml.training.evaluate import evaluate_model

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "retrieval_cub.json"
    report = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    split = load_split(DATA)
    report.update(dataset="cub_birds", test_classes=len(split.test_classes), test_images=len(split.test),
                  command="python benchmarks/retrieval_cub.py",
                  machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    for name in args.models.split(","):
        model = load_checkpoint(MODELS[name])
        started = time.perf_counter()
        rankings = dict(structural=False, multiscale=False) if args.global_only else {}
        metrics = evaluate_model(model, split.test, workers=2, progress=False, **rankings)
        report["models"][name] = {"checkpoint": MODELS[name].replace(str(ROOT) + "/", ""), "metrics": metrics,
                                  "config": model.config.to_dict(),
                                  "eval_seconds": round(time.perf_counter() - started, 1)}
        report["models"] = {k: report["models"][k] for k in MODELS if k in report["models"]}
        path.write_text(json.dumps(report, indent=2) + "\n")  # after every model: nothing lost on a crash
        print(name, json.dumps(metrics), flush=True)
    (results / "retrieval_cub.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
