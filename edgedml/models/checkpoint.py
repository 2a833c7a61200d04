"""Checkpoints: one safetensors file whose header carries the model config as JSON. No pickles."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..filemodes import as_created
from .config import ModelConfig
from .embedder import EmbeddingModel, build_model

FORMAT = "edgedml-checkpoint"
FORMAT_VERSION = "1"


def save_checkpoint(model: EmbeddingModel, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the model's weights and config to ``path`` (.safetensors), atomically.

    The file is written beside the target and renamed into place, so a crash never leaves a
    half-written checkpoint under the final name. ``metadata`` adds string fields to the header.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path must end in .safetensors, got {path}")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_json()}
    for key, value in (metadata or {}).items():
        if key in header or not isinstance(value, str):
            raise CheckpointError(f"metadata key {key!r} is reserved or its value is not a string")
        header[key] = value
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    as_created(tmp)  # safetensors writes 0600
    os.replace(tmp, path)
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The header fields of a checkpoint (config JSON included) without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an edgedml checkpoint "
                              f"(no '{FORMAT}' header); save models with save_checkpoint()")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {metadata.get('format_version')!r}; "
                              f"this edgedml reads format {FORMAT_VERSION}: upgrade edgedml")
    return metadata


def load_checkpoint(path: str | Path, device: str = "cpu") -> EmbeddingModel:
    """Rebuild the model from a checkpoint's config and load its weights (strictly)."""
    from safetensors.torch import load_file

    metadata = read_checkpoint_metadata(path)
    try:
        config = ModelConfig.from_json(metadata["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path} has no valid model config: {exc}") from exc
    model = build_model(config, pretrained=False)
    state = load_file(str(path), device=device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match its own config: {exc}") from exc
    return model.to(device)
