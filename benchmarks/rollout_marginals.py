"""Which marginals suit ViT features: cross-correlation, uniform, full attention rollout, or the
truncated rollout (the last L′ blocks, the weakest entries cut)?

    python benchmarks/rollout_marginals.py [--backbone-weights PATH]
    # → benchmarks/results/rollout_marginals.{json,md}

On flowers17 test (classes 09–17, 720 photos), a DIML model on deit_tiny_patch16_224 (CLS token
as the global embedding, patch tokens pooled to 4×4 regions) is scored with each kind of
marginals on the same features: structural and multi-scale ranking, MAP@R and Recall@1. No ViT
weights ship in any package edgedml can install, so without --backbone-weights the backbone is
random (seed 0): a fixed model, not a trained one. Its numbers say whether the pipeline runs and
how far the marginals move the ranking of the same features, not which marginals a trained ViT
needs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "flowers17"
SETTINGS = {  # name: (marginals, rollout blocks, discard)
    "cross-correlation": ("cross", None, None),
    "uniform": ("uniform", None, None),
    "full rollout (12 blocks, no cut)": ("rollout", 12, 0.0),
    "truncated rollout (last 4 blocks, cut 0.9)": ("rollout", 4, 0.9),
    "truncated rollout (last 2 blocks, cut 0.9)": ("rollout", 2, 0.9),
}


def main() -> int:
    import torch

    from edgedml.models import ModelConfig, build_model
    from edgedml.models.rollout import region_marginals, truncated_rollout
    from edgedml.training.datasets import load_split
    from edgedml.training.evaluate import Embedded, evaluate_embeddings
    from edgedml.training.image_dataset import ImageDataset
    from edgedml.training.transforms import EvalTransform

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone-weights", default="random")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="deit_tiny_patch16_224", backbone_weights=args.backbone_weights)
    model = build_model(cfg).eval()
    train = sorted(p.name for p in DATA.iterdir() if p.is_dir())[:8]  # the protocol: classes 01–08 train
    samples = load_split(DATA, train_classes=train).test
    loader = torch.utils.data.DataLoader(ImageDataset(samples, EvalTransform(cfg.preprocessing())), batch_size=32)
    started = time.perf_counter()
    embeddings, locals_, labels = [], [], []
    marginals = {name: [] for name, (kind, _, _) in SETTINGS.items() if kind == "rollout"}
    with torch.no_grad():
        for images, batch_labels in loader:
            features = model.backbone(images)
            out = model.head(features.map, cls=features.cls)
            embeddings.append(out.embedding)
            locals_.append(out.local)
            labels.append(batch_labels)
            for name in marginals:
                _, blocks, discard = SETTINGS[name]
                patches = truncated_rollout(features.attention, blocks, discard)
                marginals[name].append(region_marginals(patches, cfg.grid, cfg.upsample, cfg.align_corners))
    emb, local, labels = torch.cat(embeddings), torch.cat(locals_), torch.cat(labels)
    report = {"backbone": cfg.backbone, "weights": args.backbone_weights, "images": len(samples), "results": {}}
    for name, (kind, _, _) in SETTINGS.items():
        data = Embedded(emb, local, labels, torch.cat(marginals[name]) if name in marginals else None)
        scores = evaluate_embeddings(data, structural=True, nmi=False, marginals=kind, centers=True)
        report["results"][name] = {r: {"recall@1": v["recall@1"], "map@r": v["map@r"]}
                                   for r, v in scores.items() if r in ("structural", "multiscale")}
        print(name, json.dumps(report["results"][name]), flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    lines = ["| marginals | structural R@1 | structural MAP@R | multi-scale R@1 | multi-scale MAP@R |",
             "|---|---|---|---|---|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['structural']['recall@1']:.3f} | {r['structural']['map@r']:.3f} | "
                     f"{r['multiscale']['recall@1']:.3f} | {r['multiscale']['map@r']:.3f} |")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "rollout_marginals.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "rollout_marginals.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
