"""`edgedml train`: the training run (CPU, CUDA, and DistributedDataParallel under torchrun).

:func:`train` picks the device, holds out validation classes, builds the model, objective and
optimizer (or resumes them from the run folder, :mod:`.run_folder`), then runs the epochs: each
batch is one :func:`~.optimization.training_step`; each epoch ends with validation on rank 0 and
a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..models import build_model
from .augmentation import SeededAugmentation
from .config import TrainConfig, load_cfg_split
from .distributed import rank_and_world
from .image_dataset import check_readable
from .objective import Objective
from .optimization import build_optimizer, freeze, lr_factor, training_step
from .progress import Progress
from .run_folder import RunFolder
from .sampler import MPerClassBatchSampler
from .splits import Sample
from .transforms import TrainTransform

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_validation(samples: list[Sample], classes: list[str], fraction: float,
                     seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out round(fraction · classes) whole training classes (at least 2 if any) for
    validation: class-disjoint, as the test protocol is. Labels are re-indexed per part."""
    count = int(round(fraction * len(classes)))
    if fraction == 0 or count == 0:
        return samples, []
    count = max(count, 2)
    if len(classes) - count < 2:
        raise ConfigError(f"val_fraction={fraction} leaves fewer than 2 training classes of "
                          f"{len(classes)}; use --val-fraction 0")
    held = set(np.random.default_rng(seed).choice(len(classes), size=count, replace=False).tolist())

    def relabel(part):
        mapping = {old: new for new, old in enumerate(sorted({s.label for s in part}))}
        return [dataclasses.replace(s, label=mapping[s.label]) for s in part]

    train = [s for s in samples if s.label not in held]
    val = [s for s in samples if s.label in held]
    return relabel(train), relabel(val)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train a model as ``cfg`` says; returns a summary (best validation MAP@R, paths, timings).

    Under torchrun (``torch.distributed`` initialised by the caller or by ``edgedml train``),
    each rank loads its shard of every global batch; rank 0 validates and writes files.
    """
    from .evaluate import embed_samples, evaluate_embeddings

    rank, world = rank_and_world()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    run = RunFolder(cfg.out)
    if rank == 0:
        run.create(resume)
    seed_everything(cfg.seed)

    split = load_cfg_split(cfg)
    train_samples, skipped = check_readable(split.train)
    if skipped and rank == 0:
        log.warning("skipped %d unreadable training images: %s%s", len(skipped),
                    ", ".join(str(p) for p in skipped[:10]), " ..." if len(skipped) > 10 else "")
    train_samples, val_samples = split_validation(train_samples, split.train_classes, cfg.val_fraction, cfg.seed)
    num_classes = len({s.label for s in train_samples})

    model = build_model(cfg.model, pretrained=not resume).to(device)
    objective = Objective(cfg.model, cfg.loss, num_classes, cfg.diversity_weight, cfg.divergence_weight,
                          cfg.sinkhorn_form, cfg.divergence_reduction).to(device)
    freeze(model, cfg.freeze_stages, cfg.freeze_bn)  # sets requires_grad before the optimizer sees it
    optimizer = build_optimizer(model, objective, cfg)
    counters = {"epoch": 0, "step": 0, "best_map_at_r": -1.0, "best_epoch": -1}
    if resume:
        counters = run.restore(cfg.model, model, optimizer, objective, device)
    elif rank == 0:
        run.write_config(cfg)

    train_module: nn.Module = model
    if world > 1:
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = MPerClassBatchSampler([s.label for s in train_samples], cfg.batch_size, cfg.m_per_class,
                                    cfg.seed, rank, world, cfg.batches_per_epoch, with_seeds=True)
    dataset = SeededAugmentation(train_samples, TrainTransform(cfg.model.preprocessing(), scale=cfg.crop_scale))
    total_steps = cfg.epochs * len(sampler)
    warmup = int(round(cfg.warmup_epochs * len(sampler)))

    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step_losses: list[float] = []
    summary = {"step_losses": step_losses, "out": str(run.path), "train_images": len(train_samples),
               "val_images": len(val_samples), "classes": num_classes, "world_size": world, "device": str(device)}

    def validate() -> dict[str, float]:
        """Global retrieval metrics of the held-out validation classes (rank 0 only)."""
        embedded = embed_samples(model, val_samples, cfg.model.preprocessing(), device, cfg.eval_batch_size,
                                 workers=cfg.workers)
        return evaluate_embeddings(embedded, structural=False, multiscale=False, nmi=False)["global"]

    if rank == 0 and val_samples and counters["epoch"] == 0:
        before = validate()
        summary["val_before_training"] = before
        run.log_metrics({"epoch": 0, **{f"val_{k}": v for k, v in before.items()}})

    for epoch in range(counters["epoch"], cfg.epochs):
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers,
                                             pin_memory=device.type == "cuda")
        model.train()
        freeze(model, cfg.freeze_stages, cfg.freeze_bn)
        progress = Progress(len(sampler), f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and rank == 0)
        sums: dict[str, float] = {}
        started, images_seen = time.perf_counter(), 0
        for images, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor(counters["step"], total_steps, warmup)
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            parts = training_step(train_module, objective, optimizer, scaler, images, labels, amp_dtype if use_amp
                                  else None, cfg.grad_clip)
            counters["step"] += 1
            images_seen += images.shape[0] * world
            step_losses.append(parts["loss"])
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            progress.update(loss=f"{parts['loss']:.4f}", img_s=f"{images_seen / (time.perf_counter() - started):.1f}")
        progress.close()
        elapsed = time.perf_counter() - started
        if dataset.failed and rank == 0:
            log.warning("%d images failed to decode during the epoch and were replaced by others of their "
                        "class: %s", len(dataset.failed), ", ".join(map(str, dataset.failed[:5])))
        counters["epoch"] = epoch + 1
        record = {"epoch": epoch + 1, "step": counters["step"], "seconds": round(elapsed, 2),
                  "images_per_s": round(images_seen / elapsed, 2),
                  "lr": optimizer.param_groups[0]["lr"],
                  **{f"train_{k}": v / len(sampler) for k, v in sums.items()}}
        if rank == 0:
            if val_samples:
                val = validate()
                record.update({f"val_{k}": v for k, v in val.items()})
                score = val["map@r"]
            else:
                score = float(epoch)  # no validation classes: the last epoch is the best
            best = score > counters["best_map_at_r"]
            if best:
                counters["best_map_at_r"], counters["best_epoch"] = score, epoch + 1
            run.save_epoch(model, optimizer, objective, counters, best)
            run.log_metrics(record)
            if cfg.progress:
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
                log.info("%s", json.dumps(shown))
        summary.setdefault("epochs", []).append(record)
    summary.update(best_epoch=counters["best_epoch"], best_val_map_at_r=counters["best_map_at_r"],
                   best=str(run.best), last=str(run.last))
    return summary
