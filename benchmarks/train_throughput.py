"""Training throughput (images/s) and peak memory of a training run, per head.

    python benchmarks/train_throughput.py                 # CPU, every head
    python benchmarks/train_throughput.py --device cuda   # on a GPU (mixed precision)

Each head trains for --steps steps on real flowers17 images (../shared/data), by default at
160 px with 4 stages frozen (`--image-size 224 --freeze-stages 7` are the presets' settings, see
scripts/train_presets.py); the first --warmup steps are not timed. Peak memory is the process's
maximum resident set (CPU) or torch's peak allocated CUDA memory. Results go to
benchmarks/results/train_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flowers17"


def measure(head: str, device: str, steps: int, warmup: int, batch_size: int, image_size: int,
            freeze_stages: int) -> dict:
    import torch

    from edgedml.models import ModelConfig, build_model
    from edgedml.training.augmentation import SeededAugmentation
    from edgedml.training.class_folders import class_folder_split
    from edgedml.training.config import TrainConfig
    from edgedml.training.objective import Objective
    from edgedml.training.optimization import build_optimizer, freeze, training_step
    from edgedml.training.sampler import MPerClassBatchSampler
    from edgedml.training.transforms import TrainTransform

    dev = torch.device(device)
    classes = sorted(p.name for p in DATA.iterdir() if p.is_dir())
    samples = class_folder_split(DATA, classes[:8], classes[8:]).train
    cfg = TrainConfig(data=str(DATA), model=ModelConfig(head=head, image_size=image_size),
                      batch_size=batch_size, m_per_class=4, freeze_stages=freeze_stages)
    model = build_model(cfg.model).to(dev)
    objective = Objective(cfg.model, cfg.loss, 8).to(dev)
    freeze(model, cfg.freeze_stages, cfg.freeze_bn)
    optimizer = build_optimizer(model, objective, cfg)
    sampler = MPerClassBatchSampler([s.label for s in samples], batch_size, 4, batches_per_epoch=steps + warmup,
                                    with_seeds=True)
    loader = torch.utils.data.DataLoader(SeededAugmentation(samples, TrainTransform(cfg.model.preprocessing())),
                                         batch_sampler=sampler, num_workers=2)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler(dev.type, enabled=False)  # bf16 needs no loss scaling
    model.train()
    freeze(model, cfg.freeze_stages, cfg.freeze_bn)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timed, images, started, compute = 0, 0, None, 0.0
    for step, (batch, labels) in enumerate(loader):
        if step == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        t0 = time.perf_counter()
        batch, labels = batch.to(dev), labels.to(dev)
        training_step(model, objective, optimizer, scaler, batch, labels, torch.bfloat16 if use_amp else None,
                      cfg.grad_clip)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            compute += time.perf_counter() - t0
            images += batch.shape[0]
            timed += 1
    elapsed = time.perf_counter() - started
    result = {"head": head, "steps_timed": timed, "images_per_s": round(images / elapsed, 2),
              "images_per_s_compute_only": round(images / compute, 2),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if dev.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--heads", default="diml,grouping,abe")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--freeze-stages", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark trains on real flowers17 images")
    results = []
    for head in args.heads.split(","):
        # one process per head, so that peak memory is the head's own
        import subprocess

        code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import train_throughput as t; "
                f"print(json.dumps(t.measure({head!r}, {args.device!r}, {args.steps}, {args.warmup}, "
                f"{args.batch_size}, {args.image_size}, {args.freeze_stages})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    report = {"command": "python " + " ".join(sys.argv), "device": args.device,
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_throughput_{args.device.split(':')[0]}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
