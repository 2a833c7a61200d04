"""Partial transport (dummy bins): only a mass m < 1 is matched between real regions, so that an
occluded part need not be matched. Checked against POT, in training, evaluation, export and the
runtime."""

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SHIPPED

from edgedml.bundle import read_manifest
from edgedml.cli import main
from edgedml.errors import ConfigError
from edgedml.export import graphs, validate
from edgedml.export.exporter import ExportOptions, export_bundle
from edgedml.models import ModelConfig, build_model, save_checkpoint
from edgedml.models.matcher import PARTIAL_OUTPUTS, StructuralMatcher
from edgedml.models.matching import l2_normalize, partial_plan, structural_match, unmatched

ot = pytest.importorskip("ot")
TINY = dict(image_size=64, grid=2, upsample=4)


def _problem(seed=0, r=16, d=24):
    """Float64 features with strictly positive marginals (POT's partial solver divides by them)."""
    g = torch.Generator().manual_seed(seed)
    x = l2_normalize(torch.randn(r, d, generator=g, dtype=torch.float64))
    y = l2_normalize(torch.randn(r, d, generator=g, dtype=torch.float64) + 1.5 * x)
    u = torch.rand(r, generator=g, dtype=torch.float64) + 0.2
    v = torch.rand(r, generator=g, dtype=torch.float64) + 0.2
    return x @ y.T, u / u.sum(), v / v.sum()


@pytest.mark.parametrize("form", ["log", "scaling"])
def test_the_dummy_bins_are_the_augmented_balanced_problem_pot_solves(form):
    s, u, v = _problem()
    mass = 0.7
    plan = partial_plan(s, u, v, mass, eps=0.05, iters=40, form=form)
    cost = np.pad((1 - s).numpy(), ((0, 1), (0, 1)))
    cost[-1, -1] = 1e4  # the dummies cannot trade with each other
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_transposed = ot.sinkhorn(np.append(v, 1 - mass), np.append(u, 1 - mass), cost.T, 0.05,
                                      method="sinkhorn_log", numItermax=40, stopThr=0.0).T
    assert np.abs(plan.numpy() - ours_transposed[:-1, :-1]).max() < 1e-10
    assert plan.sum().item() == pytest.approx(mass, abs=1e-6)  # the real block carries m


@pytest.mark.parametrize("mass", [0.5, 0.7, 0.9])
def test_partial_transport_agrees_with_pots_partial_solvers(mass):
    s, u, v = _problem(seed=int(mass * 10))
    a, b, cost = u.numpy(), v.numpy(), (1 - s).numpy()
    entropic = ot.partial.entropic_partial_wasserstein(a, b, cost, reg=0.05, m=mass, numItermax=20000, stopThr=1e-12)
    ours = partial_plan(s, u, v, mass, eps=0.05, iters=500)
    # the same cost, mass and ε; the entropy terms differ (ours includes the dummy cells), so the
    # scores agree to about 1e-2 at ε = 0.05, not to rounding
    assert abs((ours * s).sum().item() - (entropic * s.numpy()).sum()) < 0.015
    assert entropic.sum() == pytest.approx(mass, abs=1e-6)
    # and both tend to the exact partial transport as ε shrinks
    exact = (ot.partial.partial_wasserstein(a, b, cost, m=mass) * s.numpy()).sum()
    sharp = (partial_plan(s, u, v, mass, eps=0.005, iters=3000) * s).sum().item()
    assert abs(sharp - exact) < 3e-3 < abs((ours * s).sum().item() - exact)


def test_an_occluded_half_is_left_unmatched():
    """Eight regions of x are the other image's, eight are an occluder: with m = 0.5 the occluder's
    regions send their mass to the dummy, and the score rises above full transport's."""
    g = torch.Generator().manual_seed(3)
    y = l2_normalize(torch.randn(16, 32, generator=g))
    x = y.clone()
    x[8:] = l2_normalize(torch.randn(8, 32, generator=g))  # the occluder
    u, v = torch.full((16,), 1 / 16), torch.full((16,), 1 / 16)
    s = x @ y.T
    plan = partial_plan(s, u, v, 0.5, eps=0.05, iters=100)
    left_x, left_y = unmatched(plan, u, v)
    assert left_x[8:].sum() > 0.9 * 0.5 and left_x[:8].sum() < 0.05
    full = structural_match(x, y, marginals_kind="uniform", iters=100)
    assert ((plan * s).sum() / 0.5) > full.score  # per unit of mass matched, the visible half scores higher
    assert torch.allclose(left_x + plan.sum(-1), u) and torch.allclose(left_y + plan.sum(-2), v)


def test_partial_mass_is_a_checked_config_field():
    assert ModelConfig(partial_mass=0.7).partial_mass == 0.7
    assert ModelConfig().partial_mass is None
    for bad in (0, 1, 1.5, -0.2, "0.5"):
        with pytest.raises(ConfigError, match="partial_mass"):
            ModelConfig(partial_mass=bad)
    with pytest.raises(ValueError, match="mass in"):
        partial_plan(torch.zeros(2, 2), torch.ones(2) / 2, torch.ones(2) / 2, 1.0)


def test_training_and_evaluation_use_the_partial_similarity(monkeypatch):
    from edgedml.training.evaluate import Embedded, evaluate_embeddings
    from edgedml.training.losses import StructuralSimilarity, flatten_features

    g = torch.Generator().manual_seed(0)
    local = l2_normalize(torch.randn(6, 4, 8, generator=g)).requires_grad_()
    emb = l2_normalize(torch.randn(6, 8, generator=g))
    full = StructuralSimilarity(4, centers=True)
    part = StructuralSimilarity(4, centers=True, mass=0.6)
    flat = flatten_features(local, emb)
    s_full, s_part = full(flat), part(flat)
    assert not torch.allclose(s_full, s_part)
    x, y = local[:1], local[1:2]
    want = (structural_match(x, y, form="log", x_center=emb[:1], y_center=emb[1:2], mass=0.6).score
            + (emb[0] * emb[1]).sum()) / 2
    assert torch.allclose(s_part[0, 1], want.squeeze(), atol=1e-6)
    s_part.sum().backward()
    assert local.grad is not None and torch.isfinite(local.grad).all()
    import edgedml.training.evaluate as evaluate

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("mass"))
        return structural_match(*args, **kwargs)

    monkeypatch.setattr(evaluate, "structural_match", spy)
    data = Embedded(emb, local.detach(), torch.tensor([0, 0, 1, 1, 2, 2]))
    evaluate_embeddings(data, structural=True, nmi=False, centers=True, mass=0.6)
    assert seen and set(seen) == {0.6}
    assert evaluate.matching_options(ModelConfig(partial_mass=0.6))["mass"] == 0.6


@pytest.mark.slow  # exports the matcher graph
@pytest.mark.parametrize("form", ["scaling", "log"])
def test_the_partial_matcher_graph_against_pytorch_and_pot(tmp_path, form):
    matcher = StructuralMatcher(0.05, 30, "cross", form, centers_from_embedding=True, mass=0.7)
    io = graphs.export_matcher(matcher, tmp_path / "m.onnx", 4, 16, 16)
    assert tuple(io["outputs"]) == PARTIAL_OUTPUTS
    inputs = validate.matcher_inputs(4, 16, 16, k=12)
    assert max(validate.validate_matcher(matcher, tmp_path / "m.onnx", inputs).values()) < 1e-5
    pot = validate.validate_against_pot(tmp_path / "m.onnx", inputs, matcher)
    assert pot["pairs"] > 0 and pot["max_abs_diff_score_vs_pot"] < validate.POT_TOL
    assert pot["max_abs_diff_score_vs_pot_partial"] < validate.POT_PARTIAL_TOL
    assert validate.fp16_matcher_check(matcher, inputs)["finite_fp16"]


@pytest.mark.slow  # a full export
def test_a_partial_bundle_explains_what_was_left_unmatched(tmp_path):
    from edgedml.runtime.matching.matcher import Matcher

    torch.manual_seed(0)
    model = build_model(ModelConfig(partial_mass=0.6, **TINY), pretrained=False).eval()
    manifest = export_bundle(model, tmp_path / "b", ExportOptions(validation_images=2), log=lambda m: None)
    assert manifest.sinkhorn.partial_mass == 0.6 and "query_unmatched" in manifest.matcher.outputs
    result = Matcher(tmp_path / "b").explain(SHIPPED / "daisy_1.jpg", SHIPPED / "pansy.jpg")
    shares = result.unmatched_regions_a
    assert shares.shape == (4,) and ((shares >= 0) & (shares <= 1)).all()
    # each region's share of its mass left unmatched: together, the 1 − m the dummy absorbs
    assert result.unmatched_a.shape == result.evidence_a.shape and result.to_dict()["unmatched_b"] is not None
    assert result.plan.sum() == pytest.approx(0.6, abs=1e-3)
    assert result.render().shape[0] > 360


@pytest.mark.slow  # a full export by the CLI
def test_the_cli_exports_and_evaluates_with_a_partial_mass(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig(**TINY), pretrained=False), tmp_path / "m.safetensors")
    runner = CliRunner()
    done = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--partial-mass", "0.7",
                                "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    manifest = read_manifest(tmp_path / "b")
    assert manifest.model["partial_mass"] == 0.7 and manifest.sinkhorn.partial_mass == 0.7
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["validation"]["pot"][
        "max_abs_diff_score_vs_pot_partial"] < validate.POT_PARTIAL_TOL
    refused = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--partial-mass", "1",
                                   "--out", str(tmp_path / "c")])
    assert refused.exit_code == 2 and "--partial-mass" in refused.output
