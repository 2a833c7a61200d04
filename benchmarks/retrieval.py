"""Retrieval results on real images: the untrained ImageNet model against trained diml, grouping
and abe models, on class-disjoint splits of ../shared/data (flowers17, yalefaces).

    python benchmarks/retrieval.py --dataset flowers17 --dataset yalefaces

Writes benchmarks/results/retrieval_<dataset>.json (every number, the settings, timings) and
benchmarks/results/retrieval.md (the table the README quotes). Sized for a 2-core CPU: each
training run takes minutes, not hours (image size 160, first 4 backbone stages frozen).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# The protocol of shared/DESIGN.md §3: the first classes train, the rest test (class-disjoint).
PROTOCOLS = {
    "flowers17": dict(train=8, batch_size=32, m_per_class=8, epochs=6, batches_per_epoch=None),
    "yalefaces": dict(train=8, batch_size=24, m_per_class=4, epochs=6, batches_per_epoch=10),
}
COMMON = dict(image_size=160, freeze_stages=4, lr=1e-5, head_lr=1e-4, val_fraction=0.2, seed=0, workers=2)


def run(dataset: str, heads: list[str], runs: Path, epochs: int | None) -> dict:
    import torch

    from edgedml.models import ModelConfig, build_model, load_checkpoint
    from edgedml.training.config import TrainConfig
    from edgedml.training.datasets import class_folder_split
    from edgedml.training.evaluate import evaluate_model
    from edgedml.training.trainer import train

    root = DATA / dataset
    proto = dict(PROTOCOLS[dataset])
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    train_classes, test_classes = classes[:proto.pop("train")], classes[PROTOCOLS[dataset]["train"]:]
    split = class_folder_split(root, train_classes, test_classes)
    if epochs:
        proto["epochs"] = epochs
    report = {"dataset": dataset, "train_classes": train_classes, "test_classes": test_classes,
              "test_images": len(split.test), "settings": {**COMMON, **proto}, "models": {}}

    torch.manual_seed(0)
    started = time.perf_counter()
    untrained = build_model(ModelConfig(head="diml", image_size=COMMON["image_size"]))
    report["models"]["untrained (ImageNet Lite0, random DIML head)"] = {
        "metrics": evaluate_model(untrained, split.test, workers=COMMON["workers"]),
        "eval_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(report["models"], indent=1), flush=True)

    for head in heads:
        out = runs / f"{dataset}_{head}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = TrainConfig(data=str(root), out=str(out), model=ModelConfig(head=head, image_size=COMMON["image_size"]),
                          train_classes=train_classes, test_classes=test_classes,
                          **{k: v for k, v in {**COMMON, **proto}.items() if k != "image_size"}, progress=False)
        started = time.perf_counter()
        summary = train(cfg, split=split)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        metrics = evaluate_model(load_checkpoint(summary["best"]), split.test, workers=COMMON["workers"])
        report["models"][f"trained {head}"] = {
            "metrics": metrics, "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(time.perf_counter() - started, 1),
            "best_epoch": summary["best_epoch"], "best_val_map_at_r": summary["best_val_map_at_r"],
            "train_images": summary["train_images"], "val_images": summary["val_images"],
            "images_per_s": [e["images_per_s"] for e in summary["epochs"]]}
        print(head, json.dumps(report["models"][f"trained {head}"]), flush=True)
    return report


def markdown(reports: list[dict]) -> str:
    lines = ["| dataset | model | R@1 global | R@1 multi-scale | MAP@R global | MAP@R structural | MAP@R multi-scale | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        for name, entry in rep["models"].items():
            m = entry["metrics"]
            t = f"{entry['train_seconds'] / 60:.1f} min" if "train_seconds" in entry else "–"
            lines.append(f"| {rep['dataset']} | {name} | {m['global']['recall@1']:.3f} | {m['multiscale']['recall@1']:.3f} | "
                         f"{m['global']['map@r']:.3f} | {m['structural']['map@r']:.3f} | {m['multiscale']['map@r']:.3f} | {t} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", choices=sorted(PROTOCOLS))
    parser.add_argument("--heads", default="diml,grouping,abe")
    parser.add_argument("--epochs", type=int, help="override the protocol's epochs (for a quick look)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "benchmarks"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    reports = []
    for dataset in args.dataset or sorted(PROTOCOLS):
        if not (DATA / dataset).is_dir():
            sys.exit(f"{DATA / dataset} not found: this benchmark needs ../shared/data")
        report = run(dataset, args.heads.split(","), Path(args.runs), args.epochs)
        report["command"] = "python " + " ".join(sys.argv)
        report["machine"] = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"
        (results / f"retrieval_{dataset}.json").write_text(json.dumps(report, indent=2) + "\n")
        reports.append(report)
    existing = [json.loads((results / f"retrieval_{d}.json").read_text()) for d in sorted(PROTOCOLS)
                if (results / f"retrieval_{d}.json").is_file()]
    (results / "retrieval.md").write_text(markdown(existing))
    print(markdown(existing))


if __name__ == "__main__":
    main()
