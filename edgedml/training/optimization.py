"""What one optimisation step updates and how: frozen parts of the model, the optimizer's
parameter groups, the learning-rate schedule, and the step itself (mixed precision, gathered
across DistributedDataParallel ranks)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import EmbeddingModel
from .config import TrainConfig
from .distributed import gather_labels, gather_with_grad
from .objective import Objective


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
