"""DIML structural head (Zhao et al., ICCV 2021): local features for structural matching."""

from __future__ import annotations

from torch import Tensor, nn

from .head_output import HeadOutput
from .matching import l2_normalize, mean_feature
from .regions import grid_regions


class DIMLHead(nn.Module):
    """A 1×1 projection C → D of the feature map, pooled to a g×g grid, L2-normalised per region.

    The projection is applied before resizing (both are linear per channel, so the order does not
    change the result, and the 7×7 map is cheaper to project than the 16×16 one).
    ``projection=False`` keeps the backbone's own C channels (D = C): no weights at all.
    ``global_feature`` is "raw_mean" (official: x̄ = the normalised mean of the raw regions),
    "normalised_mean" (the normalised mean of the normalised regions) or "descriptor" (the
    backbone's own global descriptor, e.g. dlib's face descriptor, normalised).
    """

    def __init__(self, in_channels: int, dim: int = 128, grid: int = 4, upsample: int = 16,
                 align_corners: bool = True, global_feature: str = "raw_mean", projection: bool = True):
        super().__init__()
        if not projection and dim != in_channels:
            raise ValueError(f"without a projection dim must equal in_channels ({in_channels}), got {dim}")
        self.grid, self.upsample, self.align_corners = grid, upsample, align_corners
        self.global_feature = global_feature
        self.projection = nn.Conv2d(in_channels, dim, kernel_size=1) if projection else nn.Identity()

    def forward(self, features: Tensor, cls: Tensor | None = None, descriptor: Tensor | None = None) -> HeadOutput:
        """features (B, C, h, w) [, cls (B, C): a ViT's CLS token] [, descriptor (B, E): the
        backbone's own global descriptor] →
        embedding (B, D): x̄ per ``global_feature``, the projected, normalised CLS token, or the
        normalised descriptor (B, E), untouched by the head;
        local (B, R, D): L2-normalised region features x_i, R = grid²;
        attention None (DIML has no attention maps); parts None.
        """
        raw = grid_regions(self.projection(features), self.grid, self.upsample, self.align_corners)
        local = l2_normalize(raw)
        if self.global_feature == "descriptor":
            if descriptor is None:
                raise ValueError("global_feature='descriptor' needs the backbone's descriptor (B, E)")
            center = l2_normalize(descriptor)
        elif cls is not None:
            center = l2_normalize(self.projection(cls[:, :, None, None])[:, :, 0, 0])
        elif self.global_feature == "raw_mean":
            center = l2_normalize(raw.mean(dim=-2))
        else:
            center = mean_feature(local)
        return HeadOutput(center, local, None, None)
