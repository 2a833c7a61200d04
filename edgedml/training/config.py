"""The settings of a training run (:class:`TrainConfig`, saved as ``train_config.json`` in the
run folder) and the dataset split they name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError, build_dataclass
from ..models import ModelConfig
from .datasets import load_splits
from .losses import DIVERGENCE_REDUCTIONS
from .objective import BASE_LOSSES
from .splits import DatasetSplit


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as ``train_config.json`` in the run folder."""

    data: str | list[str]  # one dataset root, or several trained on together
    out: str = "runs/edgedml"
    model: ModelConfig = field(default_factory=ModelConfig)
    data_format: str = "auto"
    train_classes: list[str] | None = None  # class folders only: explicit class-disjoint split
    test_classes: list[str] | None = None
    loss: str = "multi_similarity"
    diversity_weight: float = 0.02
    divergence_weight: float = 1.0
    divergence_reduction: str = "sum"  # ABE: "sum" as in the paper, "mean" as earlier edgedml did
    epochs: int = 10
    batch_size: int = 32
    m_per_class: int = 4
    batches_per_epoch: int | None = None  # None: one pass over the training images
    lr: float = 1e-4  # backbone
    head_lr: float = 1e-3
    proxy_lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    # the random resized crop keeps this share of the image's area (Inception's 0.2…1); an
    # aligned face chip (dlib_resnet) wants nearly all of it, e.g. (0.85, 1.0)
    crop_scale: tuple[float, float] = (0.2, 1.0)
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
        if not isinstance(self.model, ModelConfig):
            raise ConfigError(f"model must be a ModelConfig, not {type(self.model).__name__}; read a dict with "
                              f"TrainConfig.from_dict(data, saved=...) or ModelConfig.from_dict(model, saved=...)")
        if self.loss not in BASE_LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {list(BASE_LOSSES)}")
        if self.divergence_reduction not in DIVERGENCE_REDUCTIONS:
            raise ConfigError(f"unknown divergence_reduction {self.divergence_reduction!r}; "
                              f"choose one of {list(DIVERGENCE_REDUCTIONS)}")
        if self.epochs < 1 or self.batch_size < 2 or self.m_per_class < 1:
            raise ConfigError("epochs ≥ 1, batch_size ≥ 2 and m_per_class ≥ 1 are required")
        scale = tuple(self.crop_scale) if isinstance(self.crop_scale, (list, tuple)) else ()
        if len(scale) != 2 or not all(isinstance(v, (int, float)) for v in scale) or not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"crop_scale must be two area shares 0 < low ≤ high ≤ 1, got {self.crop_scale!r}")
        self.crop_scale = (float(scale[0]), float(scale[1]))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict, *, saved: bool) -> TrainConfig:
        """A config from a dict (e.g. a ``train_config.json``). ``saved`` (required): True for a run
        folder's own config, whose model fields it predates take the values that run was trained
        with; False for a new run, whose missing model fields take today's defaults (see
        :meth:`ModelConfig.from_dict`). ``data["model"]`` may also be a :class:`ModelConfig`."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            data = {**data, "model": ModelConfig.from_dict(data["model"], saved=saved)}
        return build_dataclass(cls, data, "training config")


def load_cfg_split(cfg: TrainConfig) -> DatasetSplit:
    """The dataset split a training config names (class lists apply to class folders only)."""
    roots = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
    return load_splits(roots, cfg.data_format, cfg.train_classes, cfg.test_classes)
