"""Models that install with edgedml, by name: ``objects``, ``faces`` and ``imagenet``.

- ``objects``: DIML trained on the training classes of cub_birds (01–38) and flowers17 (01–08);
- ``faces``: dlib's face ResNet (weights: the ``face-recognition-models`` wheel, CC0, Davis
  King): dlib's 128-d descriptor as the global embedding and DIML's regions on its 4×4 level,
  on dlib's 150×150 chip (a bundle exported with a detector cuts it from YuNet's landmarks);
- ``imagenet``: the untrained ImageNet backbone, its own features pooled to regions and averaged
  for the global embedding: no projection, nothing random.

The files are ``changed_only`` checkpoints in ``edgedml/presets/`` (for ``objects``: the head and
the unfrozen last block, in fp16; for ``faces``: no tensor, every weight is the wheel's); the
rest comes from the backbone's weight wheel. Each file's header names the command that makes it
(``scripts/train_presets.py``).
"""

from __future__ import annotations

from pathlib import Path

PRESETS = {
    "objects": "DIML on cub_birds 01–38 + flowers17 01–08 (EfficientNet-Lite0, 224 px)",
    "faces": "dlib's face ResNet (CC0, Davis King): its descriptor + DIML regions of its 4×4 level (150 px chip)",
    "imagenet": "the untrained ImageNet EfficientNet-Lite0 features, no projection",
}


def preset_file(name: str) -> Path:
    """Where the trained preset ``name`` is installed (inside the package)."""
    return Path(__file__).resolve().parents[1] / "presets" / f"{name}.safetensors"


def imagenet_config():
    """The ``imagenet`` preset's config: DIML regions of the raw backbone features."""
    from .config import ModelConfig

    return ModelConfig(head="diml", projection=False)


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
