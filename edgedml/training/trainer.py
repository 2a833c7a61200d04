"""`edgedml train`: the training loop (CPU, CUDA, and DistributedDataParallel under torchrun).

A run folder holds everything a run writes, nothing pickled:
- ``train_config.json``  the TrainConfig (model config included);
- ``metrics.jsonl``      one JSON line per epoch (losses, learning rate, rate, validation metrics);
- ``last.safetensors``   the model after the last finished epoch, and ``last.state.safetensors``,
                         the optimizer state and counters that ``--resume`` continues from;
- ``best.safetensors``   the model with the best validation MAP@R so far.
Every file is written beside its target and renamed into place, so a crash never leaves a torn
checkpoint; a crashed run resumes from its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..filemodes import as_created
from ..errors import CheckpointError, ConfigError, build_dataclass
from ..models import EmbeddingModel, ModelConfig, build_model, read_checkpoint_metadata, save_checkpoint
from .datasets import DatasetSplit, ImageDataset, Sample, check_readable, load_split
from .objective import BASE_LOSSES, Objective
from .sampler import MPerClassBatchSampler
from .transforms import TrainTransform


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as ``train_config.json`` in the run folder."""

    data: str
    out: str = "runs/edgedml"
    model: ModelConfig = field(default_factory=ModelConfig)
    data_format: str = "auto"
    train_classes: list[str] | None = None  # class folders only: explicit class-disjoint split
    test_classes: list[str] | None = None
    loss: str = "multi_similarity"
    diversity_weight: float = 0.02
    divergence_weight: float = 1.0
    epochs: int = 10
    batch_size: int = 32
    m_per_class: int = 4
    batches_per_epoch: int | None = None  # None: one pass over the training images
    lr: float = 1e-4  # backbone
    head_lr: float = 1e-3
    proxy_lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    freeze_bn: bool = True
    freeze_stages: int = 0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + scaler)
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    val_fraction: float = 0.2  # training classes held out (class-disjoint) to pick the best epoch
    sinkhorn_form: str = "scaling"
    eval_batch_size: int = 64
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.loss not in BASE_LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {list(BASE_LOSSES)}")
        if self.epochs < 1 or self.batch_size < 2 or self.m_per_class < 1:
            raise ConfigError("epochs ≥ 1, batch_size ≥ 2 and m_per_class ≥ 1 are required")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return build_dataclass(cls, data, "training config")


def load_cfg_split(cfg: TrainConfig) -> DatasetSplit:
    """The dataset split a training config names (class lists apply to class folders only)."""
    lists = {k: v for k, v in (("train_classes", cfg.train_classes), ("test_classes", cfg.test_classes)) if v}
    return load_split(cfg.data, cfg.data_format, **lists)


# --- distributed helpers ------------------------------------------------------------------


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from all ranks along dim 0. The backward pass sums the gradients
    of all ranks for each rank's own piece, so with DDP's gradient averaging the update equals
    one process training on the whole global batch."""
    dist = _dist()
    if dist is None:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    dist = _dist()
    if dist is None:
        return labels
    out = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(out, labels)
    return torch.cat(out)


# --- pieces of the loop -------------------------------------------------------------------


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


def freeze(model: EmbeddingModel, stages: int, freeze_bn: bool) -> None:
    """Put frozen parts in eval mode (call after model.train()): the first ``stages`` backbone
    stages (no gradient either) and, with ``freeze_bn``, every BatchNorm's running statistics."""
    for stage in model.backbone.stages()[:stages]:
        stage.eval()
        for p in stage.parameters():
            p.requires_grad_(False)
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: EmbeddingModel, objective: Objective, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = [
        {"name": "backbone", "params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": cfg.lr},
        {"name": "head", "params": list(model.head.parameters()), "lr": cfg.head_lr},
    ]
    proxies = list(objective.parameters())
    if proxies:
        groups.append({"name": "proxies", "params": proxies, "lr": cfg.proxy_lr, "weight_decay": 0.0})
    for g in groups:
        g["initial_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _atomic_save_tensors(tensors: dict, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    as_created(tmp)  # safetensors writes 0600
    os.replace(tmp, path)


def save_training_state(path: Path, optimizer, objective: Objective, counters: dict) -> None:
    """Optimizer tensors and the objective's parameters as safetensors; the rest as JSON metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    for key, value in objective.state_dict().items():
        tensors[f"objective.{key}"] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars),
                "counters": json.dumps(counters)}
    _atomic_save_tensors(tensors, path, metadata)


def load_training_state(path: Path, optimizer, objective: Objective) -> dict:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} is missing; start a new run without --resume")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    for key, value in json.loads(meta["scalars"]).items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    objective.load_state_dict({k[len("objective."):]: v for k, v in tensors.items() if k.startswith("objective.")})
    return json.loads(meta["counters"])


class _Progress:
    """A tqdm bar on rank 0 showing loss, images/s and ETA (plain lines when not a terminal)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, file=sys.stderr)

    def update(self, **postfix) -> None:
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def training_step(module: nn.Module, objective: Objective, optimizer, scaler, images: torch.Tensor,
                  labels: torch.Tensor, amp_dtype: torch.dtype | None, grad_clip: float) -> dict[str, float]:
    """One optimisation step on a (local) batch: forward under autocast when ``amp_dtype`` is
    given, gather outputs across ranks, the objective in fp32, backward, clip, step. Returns the
    loss parts as floats, "loss" included."""
    with torch.autocast(images.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        output = module(images)
    output = type(output)(*(gather_with_grad(t.float()) if t is not None else None for t in output))
    loss, parts = objective(output, gather_labels(labels))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    parts["loss"] = loss.item()
    return parts


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _decoded(rgb: np.ndarray) -> np.ndarray:
    return rgb


class SeededAugmentation(torch.utils.data.Dataset):
    """``dataset[(index, seed)]`` → (augmented image, label), the augmentation drawn from a
    generator seeded by ``seed``: the same sample in the same place of the same global batch gets
    the same crop whichever rank or worker loads it (this is what makes a 2-process run follow
    the 1-process trajectory). Decoding and unreadable-image fallback are ImageDataset's."""

    def __init__(self, samples: list[Sample], transform: TrainTransform):
        self.images = ImageDataset(samples, _decoded)
        self.transform = transform

    @property
    def failed(self) -> list:
        return self.images.failed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        rgb, label = self.images[index]
        return self.transform(rgb, torch.Generator().manual_seed(seed)), label


# --- the run --------------------------------------------------------------------------------


def train(cfg: TrainConfig, resume: bool = False, split: DatasetSplit | None = None) -> dict:
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
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and (out / "last.safetensors").exists():
            raise ConfigError(f"{out} already holds a run; continue it with --resume or choose another --out")
    seed_everything(cfg.seed)

    split = split or load_cfg_split(cfg)
    train_samples, skipped = check_readable(split.train)
    if skipped and rank == 0:
        print(f"skipped {len(skipped)} unreadable training images: "
              + ", ".join(str(p) for p in skipped[:10]) + (" ..." if len(skipped) > 10 else ""), file=sys.stderr)
    train_samples, val_samples = split_validation(train_samples, split.train_classes, cfg.val_fraction, cfg.seed)
    num_classes = len({s.label for s in train_samples})

    model = build_model(cfg.model, pretrained=not resume).to(device)
    objective = Objective(cfg.model, cfg.loss, num_classes, cfg.diversity_weight, cfg.divergence_weight,
                          cfg.sinkhorn_form).to(device)
    freeze(model, cfg.freeze_stages, cfg.freeze_bn)  # sets requires_grad before the optimizer sees it
    optimizer = build_optimizer(model, objective, cfg)
    counters = {"epoch": 0, "step": 0, "best_map_at_r": -1.0, "best_epoch": -1}
    if resume:
        from safetensors.torch import load_file

        saved = ModelConfig.from_json(read_checkpoint_metadata(out / "last.safetensors")["config"])
        if saved != cfg.model:
            raise ConfigError(f"{out}/last.safetensors was trained with a different model config; "
                              f"resume with the run's own train_config.json")
        model.load_state_dict(load_file(str(out / "last.safetensors"), device=str(device)))
        counters = load_training_state(out / "last.state.safetensors", optimizer, objective)
    elif rank == 0:
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    train_module: nn.Module = model
    if world > 1:
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = MPerClassBatchSampler([s.label for s in train_samples], cfg.batch_size, cfg.m_per_class,
                                    cfg.seed, rank, world, cfg.batches_per_epoch, with_seeds=True)
    dataset = SeededAugmentation(train_samples, TrainTransform(cfg.model.preprocessing()))
    total_steps = cfg.epochs * len(sampler)
    warmup = int(round(cfg.warmup_epochs * len(sampler)))

    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step_losses: list[float] = []
    summary = {"step_losses": step_losses, "out": str(out), "train_images": len(train_samples), "val_images": len(val_samples),
               "classes": num_classes, "world_size": world, "device": str(device)}

    def validate() -> dict[str, float]:
        """Global retrieval metrics of the held-out validation classes (rank 0 only)."""
        embedded = embed_samples(model, val_samples, cfg.model.preprocessing(), device, cfg.eval_batch_size,
                                 workers=cfg.workers)
        return evaluate_embeddings(embedded, structural=False, multiscale=False, nmi=False)["global"]

    if rank == 0 and val_samples and counters["epoch"] == 0:
        before = validate()
        summary["val_before_training"] = before
        _append_jsonl(out / "metrics.jsonl", {"epoch": 0, **{f"val_{k}": v for k, v in before.items()}})

    for epoch in range(counters["epoch"], cfg.epochs):
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers,
                                             pin_memory=device.type == "cuda")
        model.train()
        freeze(model, cfg.freeze_stages, cfg.freeze_bn)
        progress = _Progress(len(sampler), f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and rank == 0)
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
            print(f"{len(dataset.failed)} images failed to decode during the epoch and were replaced "
                  f"by others of their class: {', '.join(map(str, dataset.failed[:5]))}", file=sys.stderr)
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
            if score > counters["best_map_at_r"]:
                counters["best_map_at_r"], counters["best_epoch"] = score, epoch + 1
                save_checkpoint(model, out / "best.safetensors", {"epoch": str(epoch + 1)})
            save_checkpoint(model, out / "last.safetensors", {"epoch": str(epoch + 1)})
            save_training_state(out / "last.state.safetensors", optimizer, objective, counters)
            _append_jsonl(out / "metrics.jsonl", record)
            if cfg.progress:
                shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
                print(json.dumps(shown), file=sys.stderr)
        summary.setdefault("epochs", []).append(record)
    summary.update(best_epoch=counters["best_epoch"], best_val_map_at_r=counters["best_map_at_r"],
                   best=str(out / "best.safetensors"), last=str(out / "last.safetensors"))
    return summary
