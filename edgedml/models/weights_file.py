"""A backbone's ImageNet weights from a local file the user names (edgedml never downloads):
a torchvision or timm state dict as ``.pth`` or ``.safetensors``, read with no code run."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..errors import WeightsNotFoundError


def read_weights_file(path: str | Path | None, name: str) -> dict[str, Tensor]:
    """The state dict in ``path`` for the ``name`` backbone; a missing, unreadable or non-state-dict
    file is one :class:`WeightsNotFoundError` that says what to pass."""
    if path is None:
        raise WeightsNotFoundError(
            f"the {name} backbone needs its ImageNet weights from a local file (edgedml never "
            f"downloads). Fix: pass backbone_weights='/path/to/{name}.pth' (CLI: "
            f"--backbone-weights), a torchvision state dict as .pth or .safetensors; or build "
            f"with pretrained=False")
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"backbone weights file {path} does not exist; pass the path "
                                   f"of a torchvision {name} state dict (.pth or .safetensors)")
    state = _load_state(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsNotFoundError(f"{path} does not hold a state dict (got {type(state).__name__})")
    wrong = next((k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))), None)
    if wrong is not None:
        raise WeightsNotFoundError(f"{path} is not a state dict: entry {str(wrong)[:40]!r} is not a named tensor; "
                                   f"pass a {name} state dict (.pth or .safetensors)")
    return state


def _load_state(path: Path):
    """A weights file's content, with no code run: safetensors (tensors only, by format), or
    ``torch.load(weights_only=True)``, whose unpickler builds tensors and containers only and
    refuses every other object, so a pickle's ``__reduce__`` never runs. Anything unreadable
    is one :class:`WeightsNotFoundError`."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, safetensors and torch each raise their own types
        import pickle

        reason = ("it is no pickle of tensors only (edgedml never unpickles other objects)"
                  if isinstance(exc, pickle.UnpicklingError)
                  else (str(exc).strip().split(". ")[0].splitlines() or [type(exc).__name__])[0][:120])
        raise WeightsNotFoundError(f"{path} is not a readable weights file: {reason}; pass a state dict saved "
                                   f"with torch.save or safetensors") from exc
