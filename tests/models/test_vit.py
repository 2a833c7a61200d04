"""Vision Transformer backbones (random weights: none ship) and truncated attention rollout."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SHIPPED

from edgedml.errors import ConfigError, WeightsNotFoundError
from edgedml.models import ModelConfig, build_model
from edgedml.models.rollout import fuse_heads, truncated_rollout

pytest.importorskip("timm")
DEIT = dict(backbone="deit_tiny_patch16_224", backbone_weights="random")


def _loop_rollout(attention: np.ndarray, blocks: int, discard: float) -> np.ndarray:
    """Abnar & Zuidema's rollout written with loops over images, rows and entries."""
    layers, images, _, n, _ = attention.shape
    out = np.zeros((images, n - 1))
    for b in range(images):
        rollout = np.eye(n)
        for layer in range(layers - blocks, layers):
            fused = attention[layer, b].mean(axis=0)
            cut = fused.copy()
            for i in range(n):
                candidates = sorted((fused[i, j], j) for j in range(n) if j != 0 and j != i)
                drop = min(int(discard * n), len(candidates))  # never the CLS column or the diagonal
                for _value, j in candidates[:drop]:
                    cut[i, j] = 0.0
                # entries equal to the threshold go too (ties at the cut)
                if drop:
                    threshold = candidates[drop - 1][0]
                    for j in range(n):
                        if j != 0 and j != i and fused[i, j] <= threshold:
                            cut[i, j] = 0.0
            step = cut + np.eye(n)
            step = step / step.sum(axis=1, keepdims=True)
            rollout = step @ rollout
        weights = np.maximum(rollout.mean(axis=0)[1:], 0)
        out[b] = weights / weights.sum()
    return out


@pytest.mark.parametrize("blocks, discard", [(3, 0.0), (2, 0.5), (1, 0.9)])
def test_truncated_rollout_equals_the_plain_loop(blocks, discard):
    g = torch.Generator().manual_seed(blocks)
    attention = torch.rand(3, 2, 4, 10, 10, generator=g, dtype=torch.float64).softmax(-1)
    got = truncated_rollout(attention, blocks, discard).numpy()
    assert np.allclose(got, _loop_rollout(attention.numpy(), blocks, discard), atol=1e-12)
    assert np.allclose(got.sum(-1), 1.0)
    fused = fuse_heads(attention[0], discard)
    assert torch.allclose(fused.sum(-1), torch.ones(2, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="choose 1 to 3"):
        truncated_rollout(attention, 4)


def test_a_vit_backbone_needs_weights_or_says_random():
    with pytest.raises(WeightsNotFoundError, match="--backbone-weights random"):
        build_model(ModelConfig(backbone="deit_tiny_patch16_224"))
    with pytest.raises(ConfigError, match="224×224"):
        ModelConfig(backbone="vit_tiny_patch16_224", image_size=160)


def test_the_block_by_block_forward_is_timms():
    from edgedml.models.vit import block_forward

    torch.manual_seed(0)
    model = build_model(ModelConfig(**DIML_SMALL)).eval()
    vit = model.backbone.body.model
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        got, probs = block_forward(vit.blocks[0], tokens)
        assert torch.allclose(got, vit.blocks[0](tokens), atol=1e-5)
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)))
        features = model.backbone(images)
        assert torch.allclose(features.cls, vit.forward_features(images)[:, 0], atol=1e-5)
        assert features.map.shape == (2, 192, 14, 14) and features.attention.shape == (12, 2, 3, 197, 197)
        out = model(images)
    assert out.embedding.shape == (2, 128) and out.local.shape == (2, 16, 128)
    assert torch.allclose(out.embedding.norm(dim=-1), torch.ones(2))


DIML_SMALL = dict(DEIT)


@pytest.mark.slow  # a ViT trained a step and exported
def test_a_deit_tiny_diml_model_trains_a_step_exports_and_compares(tmp_path):
    from edgedml.cli import main
    from edgedml.runtime.matching.matcher import Matcher
    from edgedml.training.objective import Objective

    torch.manual_seed(0)
    model = build_model(ModelConfig(**DEIT, partial_mass=0.7))
    objective = Objective(model.config)
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss, _ = objective(model(torch.randn(8, 3, 224, 224)), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(before[k], v) for k, v in model.head.state_dict().items())

    done = CliRunner().invoke(main, ["export", "--backbone", "deit_tiny_patch16_224", "--backbone-weights", "random",
                                     "--partial-mass", "0.7", "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    matcher = Matcher(tmp_path / "b")
    assert matcher.manifest.model["backbone"] == "deit_tiny_patch16_224"
    assert matcher.manifest.tensorrt_readiness == {"embedder.onnx": [], "matcher.onnx": []}
    assert matcher.manifest.validation["embedder"]["max_abs_diff_embedding"] < 1e-4
    result = matcher.compare(SHIPPED / "daisy_1.jpg", SHIPPED / "pansy.jpg")
    assert np.isfinite(result.score) and result.unmatched_regions_a is not None


@pytest.mark.slow  # a ViT export
def test_rollout_marginals_flow_from_the_embedder_through_the_matcher_graph_to_the_gallery(tmp_path):
    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.models.matcher import StructuralMatcher
    from edgedml.models.matching import structural_match
    from edgedml.runtime.gallery.gallery import Gallery
    from edgedml.runtime.matching.matcher import Matcher
    from edgedml.training.evaluate import Embedded, evaluate_embeddings
    from edgedml.training.objective import Objective

    torch.manual_seed(0)
    cfg = ModelConfig(**DEIT, marginals="rollout", rollout_blocks=3, rollout_discard=0.5)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 224, 224))
    assert out.marginal.shape == (3, 16) and torch.allclose(out.marginal.sum(-1), torch.ones(3))
    matcher = StructuralMatcher.for_model(cfg)
    got = matcher(out.local[:1], out.embedding[:1], out.local, out.embedding, out.marginal[:1], out.marginal)
    want = structural_match(out.local[:1], out.local, iters=cfg.sinkhorn_iters, form="scaling",
                            given=(out.marginal[:1], out.marginal))
    assert torch.allclose(got.structural, want.score, atol=1e-6)
    with pytest.raises(ValueError, match="query_marginal"):
        matcher(out.local[:1], out.embedding[:1], out.local, out.embedding)

    manifest = export_bundle(model, tmp_path / "b", ExportOptions(validation_images=2), log=lambda m: None)
    assert "marginal" in manifest.embedder.outputs and "candidate_marginal" in manifest.matcher.inputs
    assert manifest.validation["embedder"]["max_abs_diff_marginal"] < 1e-5
    assert manifest.tensorrt_readiness == {"embedder.onnx": [], "matcher.onnx": []}
    runtime = Matcher(tmp_path / "b")
    features = runtime.embed([SHIPPED / "daisy_1.jpg", SHIPPED / "pansy.jpg"])
    assert features.marginal.shape == (2, 16)
    scores = runtime.match(features[0], features)
    assert np.isfinite(scores["multiscale"]).all()
    with Gallery(tmp_path / "g.db", runtime, threshold=0.5) as gallery:  # templates keep their marginals
        gallery.enroll("daisy", [SHIPPED / "daisy_1.jpg"])
        gallery.enroll("pansy", [SHIPPED / "pansy.jpg"])
        decision = gallery.verify(SHIPPED / "daisy_1.jpg", "daisy")
    assert decision.score == pytest.approx(float(scores["multiscale"][0]), abs=1e-5)

    data = Embedded(out.embedding, out.local, torch.tensor([0, 0, 1]), out.marginal)
    assert evaluate_embeddings(data, structural=True, nmi=False, marginals="rollout")["structural"]
    with pytest.raises(ConfigError, match="train with marginals='cross'"):
        Objective(cfg)
    with pytest.raises(ConfigError, match="Vision Transformer"):
        ModelConfig(marginals="rollout")


@pytest.mark.slow  # a ViT export by the CLI
def test_vit_weights_load_from_a_local_file_and_the_bundle_runs_without_torch(tmp_path):
    from conftest import run_blocked
    from safetensors.torch import save_file

    from edgedml.cli import main

    torch.manual_seed(1)
    source = build_model(ModelConfig(**DEIT))
    state = {k: v.contiguous() for k, v in source.backbone.body.model.state_dict().items()}
    save_file(state, str(tmp_path / "deit.safetensors"))
    weights = str(tmp_path / "deit.safetensors")
    loaded = build_model(ModelConfig(backbone="deit_tiny_patch16_224", backbone_weights=weights))
    assert all(torch.equal(v, loaded.backbone.body.model.state_dict()[k]) for k, v in state.items())
    save_file({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(WeightsNotFoundError, match="does not match timm's deit_tiny_patch16_224"):
        build_model(ModelConfig(backbone="deit_tiny_patch16_224", backbone_weights=str(tmp_path / "wrong.safetensors")))

    done = CliRunner().invoke(main, ["export", "--backbone", "deit_tiny_patch16_224", "--backbone-weights",
                                     str(tmp_path / "deit.safetensors"), "--marginals", "rollout",
                                     "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    out = run_blocked("from edgedml.runtime import Matcher\n"
                      f"r = Matcher({str(tmp_path / 'b')!r}).explain({str(SHIPPED / 'daisy_1.jpg')!r}, "
                      f"{str(SHIPPED / 'pansy.jpg')!r})\n"
                      "r.render()\n"
                      "print('score', r.score)\n")
    assert "score" in out
