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
    """

    def __init__(self, in_channels: int, dim: int = 128, grid: int = 4, upsample: int = 16):
        super().__init__()
        self.grid, self.upsample = grid, upsample
        self.projection = nn.Conv2d(in_channels, dim, kernel_size=1)

    def forward(self, features: Tensor) -> HeadOutput:
        """features (B, C, h, w) →
        embedding (B, D): x̄, the L2-normalised mean of the regions;
        local (B, R, D): L2-normalised region features x_i, R = grid²;
        attention None (DIML has no attention maps); parts None.
        """
        local = l2_normalize(grid_regions(self.projection(features), self.grid, self.upsample))
        return HeadOutput(mean_feature(local), local, None, None)
