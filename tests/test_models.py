import json

import pytest
import torch
import torch.nn.functional as F

from edgedml.errors import CheckpointError, ConfigError, WeightsNotFoundError
from edgedml.models import (
    HEADS, ModelConfig, build_model, create_backbone, load_checkpoint, save_checkpoint)
from edgedml.models.abe import ABEHead
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


def test_grid_regions_follow_the_official_recipe():
    features = torch.randn(2, 5, 7, 7)
    regions = grid_regions(features, grid=4, upsample=16)
    official = F.adaptive_avg_pool2d(F.interpolate(features, size=(16, 16), mode="bilinear"), 4)
    assert torch.allclose(regions, official.flatten(2).transpose(1, 2), atol=1e-6)


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
    again = ModelConfig.from_json(cfg.to_json())
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
        ModelConfig.from_dict({"embedding_dim": 3})


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
