"""The run folder: everything a training run writes, nothing pickled.

- ``train_config.json``  the TrainConfig (model config included);
- ``metrics.jsonl``      one JSON line per epoch (losses, learning rate, rate, validation metrics);
- ``last.safetensors``   the model after the last finished epoch, and ``last.state.safetensors``,
                         the optimizer state and counters that ``--resume`` continues from;
- ``best.safetensors``   the model with the best validation MAP@R so far.
Every checkpoint is written beside its target and renamed into place, so a crash never leaves a
torn checkpoint; a crashed run resumes from its last finished epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..filemodes import as_created
from ..models import EmbeddingModel, ModelConfig, read_checkpoint_metadata, save_checkpoint
from .config import TrainConfig
from .objective import Objective


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


class RunFolder:
    """The files of one run folder (``path``); only rank 0 writes them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.best = self.path / "best.safetensors"
        self.last = self.path / "last.safetensors"
        self.state = self.path / "last.state.safetensors"
        self.metrics = self.path / "metrics.jsonl"

    def create(self, resume: bool) -> None:
        """Make the folder; without ``resume``, refuse one that already holds a run."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not resume and self.last.exists():
            raise ConfigError(f"{self.path} already holds a run; continue it with --resume or choose "
                              "another --out")

    def write_config(self, cfg: TrainConfig) -> None:
        (self.path / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    def restore(self, config: ModelConfig, model: EmbeddingModel, optimizer, objective: Objective,
                device: torch.device) -> dict:
        """Load the last finished epoch's model, optimizer and objective state; returns the counters.
        The saved model must have been trained with ``config``."""
        from safetensors.torch import load_file

        saved = ModelConfig.from_json(read_checkpoint_metadata(self.last)["config"], saved=True)
        if saved != config:
            raise ConfigError(f"{self.path}/last.safetensors was trained with a different model config; "
                              f"resume with the run's own train_config.json")
        model.load_state_dict(load_file(str(self.last), device=str(device)))
        return load_training_state(self.state, optimizer, objective)

    def save_epoch(self, model: EmbeddingModel, optimizer, objective: Objective, counters: dict,
                   best: bool) -> None:
        """Checkpoint the epoch ``counters["epoch"]`` just finished: the model (also as the best
        one when ``best``), then the optimizer state and counters to resume from."""
        metadata = {"epoch": str(counters["epoch"])}
        if best:
            save_checkpoint(model, self.best, metadata)
        save_checkpoint(model, self.last, metadata)
        save_training_state(self.state, optimizer, objective, counters)

    def log_metrics(self, record: dict) -> None:
        """Append one line to ``metrics.jsonl``."""
        with open(self.metrics, "a") as handle:
            handle.write(json.dumps(record) + "\n")
