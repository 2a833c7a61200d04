"""What each change toward the official DIML code does to retrieval (before → after), on
flowers17 test (classes 09–17) and cub_birds test (classes 39–76).

    python benchmarks/fidelity.py       # → benchmarks/results/fidelity.{json,md}

The changes (ModelConfig / evaluation options; the official behaviour is now the default):
- ``align_corners``: the 7×7 → 16×16 upsample with corners aligned (before: half-pixel);
- ``global_feature``: x̄ = the normalised mean of the raw regions, also the marginals' centre
  (before: the normalised mean of the normalised regions);
- multi-scale re-ranks the global top 1000 (before: the top 100).
Each is switched back alone on the same weights, then all three together. Models: the
untrained `imagenet` preset (no weights depend on the options) and the trained `objects`
preset (trained with the official options, so its "before" rows change a trained model's
inputs). ABE's divergence reduction is a training option; its before/after is two trained
models: runs/cub_abe (sum, as in the paper) and runs/cub_abe_mean, when both exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {"flowers17": [f"{i:02d}" for i in range(9, 18)], "cub_birds": None}  # test classes (prefixes)
CHANGES = {
    "official (every change)": ({}, {}),
    "align_corners=False (before)": ({"align_corners": False}, {}),
    "global_feature=normalised_mean (before)": ({"global_feature": "normalised_mean"}, {}),
    "multi-scale over the top 100 (before)": ({}, {"k": 100}),
    "all three before": ({"align_corners": False, "global_feature": "normalised_mean"}, {"k": 100}),
}
ABE_RUNS = {"divergence summed (paper)": ROOT / "runs" / "cub_abe" / "best.safetensors",
            "divergence averaged (before)": ROOT / "runs" / "cub_abe_mean" / "best.safetensors"}


def with_config(model, **changes):
    """The same weights under a config with ``changes`` (options that add or drop no weights)."""
    from edgedml.models.embedder import EmbeddingModel

    if not changes:
        return model
    other = EmbeddingModel(dataclasses.replace(model.config, **changes), model.backbone)
    other.head.load_state_dict(model.head.state_dict())
    return other.eval()


def test_samples(dataset: str):
    from edgedml.training.datasets import load_split

    root = DATA / dataset
    if DATASETS[dataset] is None:
        return load_split(root).test
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    test = [c for c in classes if c[:2] in DATASETS[dataset]]
    return load_split(root, test_classes=test, train_classes=[c for c in classes if c not in test]).test


def summary(metrics: dict) -> dict:
    return {f"{r} {m}": metrics[r][m] for r in ("global", "multiscale") for m in ("recall@1", "map@r")}


def markdown(report: dict) -> str:
    cols = ["global recall@1", "global map@r", "multiscale recall@1", "multiscale map@r"]
    lines = ["| data | model | setting | R@1 global | MAP@R global | R@1 multi-scale | MAP@R multi-scale |",
             "|---|---|---|---|---|---|---|"]
    for dataset, models in report["results"].items():
        for model, rows in models.items():
            base = next(iter(rows.values()))  # today's default; the others say what switching back changes
            for setting, row in rows.items():
                cells = []
                for c in cols:
                    delta = "" if row is base else f" ({row[c] - base[c]:+.3f})"
                    cells.append(f"{row[c]:.3f}{delta}")
                lines.append(f"| {dataset} | {model} | {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--parts", default="imagenet,objects,abe",
                        help="which to (re)run: the presets imagenet, objects, and the two abe runs")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="which test sets to (re)run")
    args = parser.parse_args()
    parts = args.parts.split(",")
    for dataset in DATASETS:
        if not (DATA / dataset).is_dir():
            sys.exit(f"{DATA / dataset} not found: this benchmark needs ../shared/data")
    from edgedml.models import load_checkpoint
    from edgedml.training.evaluate import embed_samples, evaluate_embeddings, matching_options

    if "abe" in parts and not all(run.is_file() for run in ABE_RUNS.values()):
        sys.exit(f"the abe part needs {[str(r) for r in ABE_RUNS.values()]}: python scripts/train_presets.py "
                 f"cub_abe, then cub_abe_mean")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "fidelity.json"
    report = json.loads(path.read_text()) if path.is_file() else {"results": {}}  # other parts are kept
    report.update(command="python benchmarks/fidelity.py",
                  machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    for dataset in args.datasets.split(","):
        samples = test_samples(dataset)
        report["results"].setdefault(dataset, {})
        for model_name in [p for p in ("imagenet", "objects") if p in parts]:
            base = load_checkpoint(model_name).eval()
            rows = report["results"][dataset][f"preset {model_name}"] = {}
            embedded = {}
            for setting, (config_changes, eval_changes) in CHANGES.items():
                model = with_config(base, **config_changes)
                key = json.dumps(config_changes, sort_keys=True)
                if key not in embedded:  # the re-ranking depth needs no new embeddings
                    embedded[key] = embed_samples(model, samples, model.config.preprocessing(), workers=2)
                metrics = evaluate_embeddings(embedded[key], structural=False, nmi=False,
                                              **matching_options(model.config), **eval_changes)
                rows[setting] = summary(metrics)
                print(dataset, model_name, setting, json.dumps(rows[setting]), flush=True)
        if "abe" in parts:
            rows = report["results"][dataset]["trained abe (cub_birds)"] = {}
            for setting, run in ABE_RUNS.items():
                model = load_checkpoint(run).eval()
                cfg = model.config
                embedded = embed_samples(model, samples, cfg.preprocessing(), workers=2)
                rows[setting] = summary(evaluate_embeddings(embedded, structural=False, nmi=False,
                                                            **matching_options(cfg)))
                print(dataset, "abe", setting, json.dumps(rows[setting]), flush=True)
        path.write_text(json.dumps(report, indent=2) + "\n")  # after every dataset: nothing lost on a crash
    (results / "fidelity.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
