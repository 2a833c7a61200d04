import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from edgedml.models import matching as M
from edgedml.training.losses import StructuralSimilarity, divergence_loss, diversity_loss, flatten_features


def loop_diversity(parts):
    b, k, _ = parts.shape
    total = 0.0
    for i, j in itertools.combinations(range(k), 2):
        per_image = []
        for n in range(b):
            ei, ej = parts[n, i].tolist(), parts[n, j].tolist()
            cos = sum(p * q for p, q in zip(ei, ej)) / (
                math.sqrt(sum(p * p for p in ei)) * math.sqrt(sum(q * q for q in ej)))
            per_image.append(math.log1p(math.exp(50 * (cos - 0.5))))
        total += sum(per_image) / b
    return total / (k - 1)


def loop_divergence(parts, margin=1.0, reduction="sum"):
    """The paper's L_div = Σ_images Σ_{i≠j} max(0, m − ‖f_i − f_j‖²) (ordered pairs), or the mean
    over images and unordered pairs."""
    b, m, _ = parts.shape
    terms = []
    pairs = itertools.permutations(range(m), 2) if reduction == "sum" else itertools.combinations(range(m), 2)
    pairs = list(pairs)
    for n in range(b):
        for i, j in pairs:
            sq = sum((p - q) ** 2 for p, q in zip(parts[n, i].tolist(), parts[n, j].tolist()))
            terms.append(max(0.0, margin - sq))
    return sum(terms) if reduction == "sum" else sum(terms) / len(terms)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_diversity_loss_equals_plain_loop(dtype, tol):
    torch.manual_seed(0)
    parts = F.normalize(torch.randn(4, 3, 5, dtype=dtype) + torch.tensor([1.0, 0, 0, 0, 0], dtype=dtype), dim=-1)
    got = diversity_loss(parts)
    ref = loop_diversity(parts.double())
    assert got.dtype == dtype
    assert abs(got.item() - ref) <= tol * max(1.0, abs(ref))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_divergence_loss_equals_plain_loop(dtype, tol, reduction):
    torch.manual_seed(1)
    parts = F.normalize(torch.randn(3, 4, 6, dtype=dtype), dim=-1) * 0.6  # some pairs within the margin
    got = divergence_loss(parts, reduction=reduction)
    ref = loop_divergence(parts.double(), reduction=reduction)
    assert ref > 0
    assert abs(got.item() - ref) <= tol * max(1.0, ref)


def test_head_losses_of_one_part_are_zero():
    parts = torch.randn(2, 1, 4)
    assert diversity_loss(parts).item() == 0 and divergence_loss(parts).item() == 0


def test_structural_similarity_matrix_equals_pairwise_loop():
    torch.manual_seed(2)
    local = F.normalize(torch.randn(5, 4, 8, dtype=torch.float64), dim=-1)
    dist = StructuralSimilarity(regions=4, iters=50)
    mat = dist(local.flatten(1))
    assert mat.shape == (5, 5)
    for i in range(5):
        for j in range(5):
            match = M.structural_match(local[i], local[j], iters=50)
            expect = (match.score + (M.mean_feature(local[i]) @ M.mean_feature(local[j]))) / 2
            assert torch.allclose(mat[i, j], expect, atol=1e-10)
    pairs = dist.pairwise_distance(local[:3].flatten(1), local[2:].flatten(1))
    assert torch.allclose(pairs, torch.stack([mat[0, 2], mat[1, 3], mat[2, 4]]))


def test_structural_similarity_trains_with_pml_losses_and_no_gradient_through_the_plan():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    torch.manual_seed(3)
    local = F.normalize(torch.randn(8, 4, 8), dim=-1).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    dist = StructuralSimilarity(regions=4, iters=20)
    loss = losses.MultiSimilarityLoss(distance=dist)(local.flatten(1), labels)
    loss.backward()
    assert torch.isfinite(loss) and local.grad.abs().sum() > 0
    # the gradient equals that of (Σ T̂ ⊙ s + x̄·ȳ)/2 with T̂ held constant
    x, y = local[0].detach().requires_grad_(True), local[1].detach()
    s = M.region_similarity(x, y)
    u, v = M.cross_correlation_marginals(x.detach(), y)
    plan = M.sinkhorn_log(s.detach(), u, v, 0.05, 20)
    ((plan * s).sum() + M.mean_feature(x) @ M.mean_feature(y)).div(2).backward()
    x2 = local[0].detach().requires_grad_(True)
    dist.pairwise_distance(x2.flatten()[None], y.flatten()[None]).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_structural_similarity_rejects_wrong_flat_size():
    with pytest.raises(ValueError, match="not a multiple of 16 rows"):
        StructuralSimilarity(regions=16)(torch.randn(2, 30))


def test_structural_similarity_with_centres_uses_the_global_feature():
    """With the official raw-mean x̄, the global term and the marginals use the embedding."""
    torch.manual_seed(5)
    local = F.normalize(torch.randn(4, 4, 8, dtype=torch.float64), dim=-1)
    center = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=-1)
    dist = StructuralSimilarity(regions=4, iters=50, centers=True)
    mat = dist(flatten_features(local, center))
    for i in range(4):
        for j in range(4):
            match = M.structural_match(local[i], local[j], iters=50, x_center=center[i], y_center=center[j])
            assert torch.allclose(mat[i, j], (match.score + center[i] @ center[j]) / 2, atol=1e-10)
    plain = StructuralSimilarity(regions=4, iters=50)(local.flatten(1))
    assert (plain - mat).abs().max() > 1e-3
