"""The structural matcher as a module: one query against K candidates, plain tensors in and out.

This is what ``matcher.onnx`` contains. The Sinkhorn loop has a fixed iteration count and no
data-dependent control flow, so tracing unrolls it.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from .config import SINKHORN_ITERS
from .matching import SINKHORN_FORMS, l2_normalize, structural_match, unmatched

MATCHER_INPUTS = ("query_local", "query_embedding", "candidate_local", "candidate_embedding")
MARGINAL_INPUTS = ("query_marginal", "candidate_marginal")  # with marginals_kind="rollout": (1, R), (K, R)
MATCHER_OUTPUTS = ("structural", "multiscale", "plan", "query_evidence", "candidate_evidence")
PARTIAL_OUTPUTS = MATCHER_OUTPUTS + ("query_unmatched", "candidate_unmatched")


class MatcherOutput(NamedTuple):
    structural: Tensor  # (K,)       Σ T ⊙ s
    multiscale: Tensor  # (K,)       Σ T ⊙ s + cosine of the global embeddings
    plan: Tensor  # (K, R, R)  transport plans, rows: the query's regions
    query_evidence: Tensor  # (K, R)     Σ_j T_ij s_ij per query region
    candidate_evidence: Tensor  # (K, R)     Σ_i T_ij s_ij per candidate region


class PartialMatcherOutput(NamedTuple):
    """A partial-transport matcher's outputs: :class:`MatcherOutput`'s and what was left unmatched."""

    structural: Tensor  # (K,)
    multiscale: Tensor  # (K,)
    plan: Tensor  # (K, R, R)  the real block of the plan
    query_evidence: Tensor  # (K, R)
    candidate_evidence: Tensor  # (K, R)
    query_unmatched: Tensor  # (K, R)     u_i − Σ_j T_ij: mass of each query region sent to the dummy
    candidate_unmatched: Tensor  # (K, R)     v_j − Σ_i T_ij


class StructuralMatcher(nn.Module):
    """Structural and multi-scale scores of one query against K candidates.

    ``form`` is "scaling" (fp32, fewest graph nodes) or "log" (explicit max-shift log-sum-exp,
    safe in fp16). Both run ``iters`` fixed iterations with entropic regulariser ``eps``.
    ``centers_from_embedding``: the cross-correlation marginals weigh regions against the global
    embeddings (DIML's official raw-mean x̄; ``ModelConfig.centers_from_embedding``) instead of
    the mean of the normalised regions. ``mass`` < 1: partial transport (dummy bins, see
    ``matching.partial_plan``); the outputs then add what each region left unmatched.
    """

    def __init__(self, eps: float = 0.05, iters: int = SINKHORN_ITERS, marginals_kind: str = "cross",
                 form: str = "scaling", centers_from_embedding: bool = False, mass: float | None = None):
        super().__init__()
        if mass is not None and not 0 < mass < 1:
            raise ValueError(f"partial transport needs a mass in (0, 1), got {mass}")
        self.mass = mass
        if form not in SINKHORN_FORMS:
            raise ValueError(f"unknown Sinkhorn form {form!r}; choose one of {sorted(SINKHORN_FORMS)}")
        if iters < 1 or eps <= 0:
            raise ValueError(f"need iters ≥ 1 and eps > 0, got iters={iters}, eps={eps}")
        self.eps, self.iters, self.marginals_kind, self.form = eps, iters, marginals_kind, form
        self.centers_from_embedding = centers_from_embedding

    @classmethod
    def for_model(cls, config, form: str = "scaling", iters: int | None = None) -> StructuralMatcher:
        """The matcher a :class:`ModelConfig` describes (its ε, iterations, marginals, centres)."""
        return cls(config.sinkhorn_eps, iters or config.sinkhorn_iters, config.marginals, form,
                   config.centers_from_embedding, config.partial_mass)

    @property
    def output_names(self) -> tuple[str, ...]:
        return MATCHER_OUTPUTS if self.mass is None else PARTIAL_OUTPUTS

    @property
    def input_names(self) -> tuple[str, ...]:
        return MATCHER_INPUTS + (MARGINAL_INPUTS if self.marginals_kind == "rollout" else ())

    def forward(self, query_local: Tensor, query_embedding: Tensor, candidate_local: Tensor,
                candidate_embedding: Tensor, query_marginal: Tensor | None = None,
                candidate_marginal: Tensor | None = None) -> MatcherOutput | PartialMatcherOutput:
        """query_local (1, R, D), query_embedding (1, E), candidate_local (K, R, D),
        candidate_embedding (K, E) [, query_marginal (1, R), candidate_marginal (K, R): with
        ``marginals_kind="rollout"``] → MatcherOutput, or PartialMatcherOutput with ``mass``
        (shapes on the classes)."""
        given = None
        if self.marginals_kind == "rollout":
            if query_marginal is None or candidate_marginal is None:
                raise ValueError("a rollout matcher takes query_marginal (1, R) and candidate_marginal (K, R)")
            given = (query_marginal, candidate_marginal)
        # the graph normalises its own inputs: features that are not unit vectors (a caller's own,
        # or rounding) would push exp((s − 1)/ε) past fp32's range and give inf/NaN scores
        query_local, candidate_local = l2_normalize(query_local), l2_normalize(candidate_local)
        query_embedding, candidate_embedding = l2_normalize(query_embedding), l2_normalize(candidate_embedding)
        centers = (query_embedding, candidate_embedding) if self.centers_from_embedding else (None, None)
        match = structural_match(query_local, candidate_local, self.eps, self.iters, self.marginals_kind, self.form,
                                 x_center=centers[0], y_center=centers[1], mass=self.mass, given=given)
        cosine = (query_embedding * candidate_embedding).sum(-1)
        scores = (match.score, match.score + cosine, match.plan, match.evidence_x, match.evidence_y)
        if self.mass is None:
            return MatcherOutput(*scores)
        return PartialMatcherOutput(*scores, *unmatched(match.plan, match.u, match.v))
