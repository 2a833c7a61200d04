"""Structural matching (DIML, Zhao et al. ICCV 2021) as small pure functions.

Shapes use ``...`` for any leading batch dimensions, which broadcast: aligned pairs
``x (B, R, D)`` with ``y (B, R, D)``, one query against K candidates ``x (1, R, D)`` with
``y (K, R, D)``, or all pairs of two sets ``x (N, 1, R, D)`` with ``y (1, M, R, D)``.
Local features are expected L2-normalised, so that ``s = x·y`` is a cosine similarity.

Vocabulary: ``s`` the region-to-region similarity, ``u``/``v`` the marginals, ``T`` the
transport plan, ``T ⊙ s`` the flow, ``evidence`` the per-region contribution to the structural
score.

:func:`structural_match` is the one place the structural similarity is assembled
(s, u, v → Sinkhorn → Σ T ⊙ s): the exported matcher, the training loss, evaluation and export
validation all call it. The runtime's numpy mirror of what its explanation needs is
:mod:`edgedml.runtime.matching.structural`; tests hold the two together.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import Tensor

from .config import SINKHORN_ITERS

MARGINAL_EPS = 1e-5  # the official DIML regulariser in the marginal denominators
LOG_FLOOR = -1e4  # log of a zero marginal, kept finite (and representable in fp16)
DENOM_FLOOR = 1e-30  # keeps the scaling form finite when a whole marginal is zero


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """x / max(‖x‖, eps) along the last axis: (..., D) → (..., D).

    Same values as F.normalize, written with a broadcast division so the exported graph has no
    Shape/Expand nodes (F.normalize expands the norm to the input's shape)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def mean_feature(x: Tensor) -> Tensor:
    """L2-normalised mean of the local features: x (..., R, D) → x̄ (..., D)."""
    return l2_normalize(x.mean(dim=-2))


def region_similarity(x: Tensor, y: Tensor) -> Tensor:
    """s_ij = x_i · y_j: x (..., R, D), y (..., R', D) → s (..., R, R')."""
    return x @ y.transpose(-1, -2)


def cross_correlation_marginals(x: Tensor, y: Tensor, x_center: Tensor | None = None,
                                y_center: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """DIML's cross-correlation marginals.

    u_i = ReLU(x_i·ȳ) / (Σ_i ReLU(x_i·ȳ) + 1e-5),  v_j = ReLU(y_j·x̄) / (Σ_j ReLU(y_j·x̄) + 1e-5).
    u is indexed by x's regions and weighs them by their agreement with y's global feature.
    The centres x̄, ȳ are the given unit vectors (the official code passes its global features,
    the normalised means of the raw regions) or, when None, :func:`mean_feature` of the regions.

    x (..., R, D), y (..., R', D), x_center, y_center (..., D) → u (..., R), v (..., R').
    """
    x_bar = mean_feature(x) if x_center is None else x_center
    y_bar = mean_feature(y) if y_center is None else y_center
    u = torch.relu((x * y_bar.unsqueeze(-2)).sum(-1))
    v = torch.relu((y * x_bar.unsqueeze(-2)).sum(-1))
    u = u / (u.sum(-1, keepdim=True) + MARGINAL_EPS)
    v = v / (v.sum(-1, keepdim=True) + MARGINAL_EPS)
    return u, v


def uniform_marginals(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """u_i = 1/R, v_j = 1/R': x (..., R, D), y (..., R', D) → u (..., R), v (..., R')."""
    # by broadcasting rather than new_full, so that an exported graph holds no Shape →
    # ConstantOfShape arithmetic (TensorRT would compute it at run time)
    zero = x[..., :1, 0] * 0 + y[..., :1, 0] * 0  # (..., 1), the broadcast leading dims
    u = zero + x[..., 0] * 0 + 1.0 / x.shape[-2]
    v = zero + y[..., 0] * 0 + 1.0 / y.shape[-2]
    return u, v


def marginals(x: Tensor, y: Tensor, kind: str = "cross", x_center: Tensor | None = None,
              y_center: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Dispatch on ``kind`` ("cross" or "uniform"); shapes as the two functions above."""
    if kind == "cross":
        return cross_correlation_marginals(x, y, x_center, y_center)
    if kind == "uniform":
        return uniform_marginals(x, y)
    if kind == "rollout":
        raise ValueError("rollout marginals come with the features (HeadOutput.marginal): pass them as `given`")
    raise ValueError(f"unknown marginals {kind!r}; choose 'cross' or 'uniform'")


def logsumexp(z: Tensor, dim: int) -> Tensor:
    """log Σ exp(z) along ``dim`` with an explicit max-shift; the dimension is kept.

    Written out (not torch.logsumexp) because this is what the exported graph contains:
    TensorRT's ReduceLogSumExp overflows in fp16. z (...) → (...) with size 1 along ``dim``.
    """
    m = z.amax(dim=dim, keepdim=True)
    return m + torch.log(torch.exp(z - m).sum(dim=dim, keepdim=True))


def _guard_empty(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Marginals with zero total mass (every region of one image faces away from the other
    image's global feature) pose no transport problem: solve a uniform one instead, so that no
    potential diverges (in fp16 it would overflow to inf/NaN), and return the 0/1 factor that
    zeroes the plan afterwards. u (..., R), v (..., R') → u, v, valid (..., 1)."""
    valid = ((u.sum(-1, keepdim=True) > 0) & (v.sum(-1, keepdim=True) > 0)).to(u.dtype)
    u = u * valid + (1 - valid) / u.shape[-1]
    v = v * valid + (1 - valid) / v.shape[-1]
    return u, v, valid


def sinkhorn_log(s: Tensor, u: Tensor, v: Tensor, eps: float = 0.05, iters: int = SINKHORN_ITERS) -> Tensor:
    """Entropic optimal transport in the log domain, a fixed number of iterations.

    Cost 1 − s, kernel log K = −(1 − s)/ε. Potentials f (rows), g (columns):
    f ← log u − LSE_j(log K_ij + g_j),  g ← log v − LSE_i(log K_ij + f_i),
    T = exp(log K + f + g). No data-dependent control flow, so it unrolls for export. If u or v
    has zero total mass, T is zero.

    s (..., R, R'), u (..., R), v (..., R') → T (..., R, R').
    """
    u, v, valid = _guard_empty(u, v)
    log_k = (s - 1.0) / eps
    log_u = torch.log(u).clamp_min(LOG_FLOOR).unsqueeze(-1)  # (..., R, 1)
    log_v = torch.log(v).clamp_min(LOG_FLOOR).unsqueeze(-2)  # (..., 1, R')
    f = log_u - logsumexp(log_k, dim=-1)  # the first update, from g = 0
    g = log_v - logsumexp(log_k + f, dim=-2)
    for _ in range(iters - 1):
        f = log_u - logsumexp(log_k + g, dim=-1)
        g = log_v - logsumexp(log_k + f, dim=-2)
    return torch.exp(log_k + f + g) * valid.unsqueeze(-1)


def sinkhorn_scaling(s: Tensor, u: Tensor, v: Tensor, eps: float = 0.05, iters: int = SINKHORN_ITERS) -> Tensor:
    """The same algorithm as :func:`sinkhorn_log` in the scaling form (fp32 and fp64 only).

    K = exp(−(1 − s)/ε); a ← u / (K b), b ← v / (Kᵀ a) as batched matrix products;
    T = diag(a) K diag(b). K underflows in fp16 (exp(−20(1−s)) is subnormal for s < 0.52),
    so use the log form there. If u or v has zero total mass, T is zero.

    s (..., R, R'), u (..., R), v (..., R') → T (..., R, R').
    """
    u, v, valid = _guard_empty(u, v)
    kernel = torch.exp((s - 1.0) / eps)
    kernel_t = kernel.transpose(-1, -2)
    u = u.unsqueeze(-1)  # (..., R, 1)
    v = v.unsqueeze(-1)  # (..., R', 1)
    a = u / kernel.sum(-1, keepdim=True).clamp_min(DENOM_FLOOR)  # the first update, from b = 1
    b = v / (kernel_t @ a).clamp_min(DENOM_FLOOR)
    for _ in range(iters - 1):
        a = u / (kernel @ b).clamp_min(DENOM_FLOOR)
        b = v / (kernel_t @ a).clamp_min(DENOM_FLOOR)
    return a * kernel * b.transpose(-1, -2) * valid.unsqueeze(-1)


SINKHORN_FORMS = {"log": sinkhorn_log, "scaling": sinkhorn_scaling}


def partial_plan(s: Tensor, u: Tensor, v: Tensor, mass: float, eps: float = 0.05, iters: int = SINKHORN_ITERS,
                 form: str = "log") -> Tensor:
    """Partial transport by dummy bins: only ``mass`` m < 1 moves between real regions.

    Each side gets one dummy bin holding 1 − m (u and v sum to 1): ũ = [u, 1 − m], ṽ = [v, 1 − m].
    A real region trades with the other side's dummy at similarity 1 (cost 0); the two dummies
    cannot trade (kernel 0). So the dummies absorb exactly 1 − m from each side, the real block
    carries m, and the regions with the worst matches (an occluder, a scarf) send their mass to
    the dummy instead of being forced onto the other image. The balanced Sinkhorn of ``form`` is
    run on the augmented problem; the dummy similarity is immaterial (the dummies' total flow is
    fixed). It approximates POT's ``ot.partial.entropic_partial_wasserstein`` (same cost, mass
    and ε, a different entropy term: tests bound the gap).

    s (..., R, R'), u (..., R), v (..., R') → T (..., R, R'), the real block.
    """
    if not 0 < mass < 1:
        raise ValueError(f"partial transport needs a mass in (0, 1), got {mass}")
    rows, cols = s.shape[-2], s.shape[-1]
    s_aug = torch.nn.functional.pad(s, (0, 1, 0, 1), value=1.0)  # dummy row and column
    u_aug = torch.nn.functional.pad(u, (0, 1), value=1.0 - mass)
    v_aug = torch.nn.functional.pad(v, (0, 1), value=1.0 - mass)
    # the dummy-to-dummy cell: similarity low enough that its kernel underflows to 0 in both forms
    blocked = torch.zeros(rows + 1, cols + 1, dtype=s.dtype, device=s.device)
    blocked[rows, cols] = -1e4 * eps if form == "log" else -1e3
    plan = SINKHORN_FORMS[form](s_aug + blocked, u_aug, v_aug, eps, iters)
    return plan[..., :rows, :cols]


def unmatched(plan: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """The mass each region did not send to a real region of the other image (partial transport:
    what went to the dummy): u − Σ_j T_ij and v − Σ_i T_ij, clamped at 0.

    plan (..., R, R'), u (..., R), v (..., R') → (..., R), (..., R')."""
    return (u - plan.sum(-1)).clamp_min(0), (v - plan.sum(-2)).clamp_min(0)


def evidence(plan: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Per-region evidence: e_i = Σ_j T_ij s_ij (x's side) and Σ_i T_ij s_ij (y's side).

    Each side sums to the structural similarity. plan, s (..., R, R') → (..., R), (..., R').
    """
    flow = plan * s
    return flow.sum(-1), flow.sum(-2)


class StructuralMatch(NamedTuple):
    """The result of :func:`structural_match`; shapes for leading dims ``...``."""

    score: Tensor  # (...)          Σ T ⊙ s
    plan: Tensor  # (..., R, R')   transport plan T
    similarity: Tensor  # (..., R, R')   s
    evidence_x: Tensor  # (..., R)       Σ_j T_ij s_ij
    evidence_y: Tensor  # (..., R')      Σ_i T_ij s_ij
    u: Tensor  # (..., R)       marginals of x's regions
    v: Tensor  # (..., R')      marginals of y's regions


def structural_match(
    x: Tensor,
    y: Tensor,
    eps: float = 0.05,
    iters: int = SINKHORN_ITERS,
    marginals_kind: str = "cross",
    form: str = "log",
    detach_plan: bool = False,
    x_center: Tensor | None = None,
    y_center: Tensor | None = None,
    mass: float | None = None,
    given: tuple[Tensor, Tensor] | None = None,
) -> StructuralMatch:
    """DIML's structural similarity of local features x (..., R, D) and y (..., R', D)
    (leading dims broadcast): s = x yᵀ, marginals u, v, plan T = Sinkhorn(s, u, v), score Σ T ⊙ s.

    ``detach_plan``: solve for T (and the marginals) without gradient, as the official training
    code does; gradients then flow through s only. ``x_center``, ``y_center`` (..., D): the
    global features the cross-correlation marginals use (default: the regions' mean feature).
    ``mass`` m < 1: partial transport (:func:`partial_plan`); the score sums the real block only.
    ``given`` (u (..., R), v (..., R')): marginals computed elsewhere (a ViT's attention
    rollout, ``marginals_kind="rollout"``) instead of from the features."""
    if form not in SINKHORN_FORMS:
        raise ValueError(f"unknown Sinkhorn form {form!r}; choose one of {sorted(SINKHORN_FORMS)}")
    s = region_similarity(x, y)
    with torch.no_grad() if detach_plan else contextlib.nullcontext():
        if given is not None:
            u, v = (t.to(s.dtype) for t in given)
            u, v = u + s[..., 0] * 0, v + s[..., 0, :] * 0  # broadcast to the pairs' leading dims
        else:
            u, v = marginals(x, y, marginals_kind, x_center, y_center)
        solve = s.detach() if detach_plan else s
        plan = (SINKHORN_FORMS[form](solve, u, v, eps, iters) if mass is None
                else partial_plan(solve, u, v, mass, eps, iters, form))
    ex, ey = evidence(plan, s)
    return StructuralMatch(ex.sum(-1), plan, s, ex, ey, u, v)


def multiscale_rerank(global_sim: Tensor, structural_top: Tensor, order: Tensor, keep: int | None = None) -> Tensor:
    """Multi-scale ranking (DIML's evaluation): the global top N, re-ranked by S_struct + global
    cosine, then the rest in global order.

    ``order`` is the global ranking (indices sorted by ``global_sim``, best first), whose first N
    entries are the candidates that ``structural_top`` scores. ``keep`` (the official code's
    ``trunc_num``, default N) takes only the first ``keep`` of the re-ranked candidates, which may
    come from anywhere in the global top N, and follows them with the global ranking. The
    official code appends ``order[keep:]`` as it is, so a promoted candidate can appear twice and
    a demoted one from the global top ``keep`` not at all; here every reference appears once (the
    global remainder without the promoted ones). With ``keep`` = N the two agree exactly.

    global_sim (Q, M), structural_top (Q, N), order (Q, M) → new order (Q, M).
    """
    n_top = structural_top.shape[-1]
    keep = n_top if keep is None else min(keep, n_top)
    top = order[..., :n_top]
    combined = structural_top + global_sim.gather(-1, top)
    rerank = torch.argsort(combined, dim=-1, descending=True, stable=True)
    promoted = top.gather(-1, rerank)[..., :keep]
    if keep == n_top:
        return torch.cat([promoted, order[..., n_top:]], dim=-1)
    placed = torch.zeros(order.shape, dtype=torch.bool, device=order.device).scatter_(-1, promoted, True)
    rest = order[~placed.gather(-1, order)].view(*order.shape[:-1], order.shape[-1] - keep)
    return torch.cat([promoted, rest], dim=-1)
