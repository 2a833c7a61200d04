"""Validation run by every export; the report is stored in the manifest.

- ONNX Runtime against PyTorch: embeddings and matcher scores within 1e-4 (fp32), on real images
  when a folder is given, random tensors otherwise;
- the unrolled matcher's transport plans and scores against POT's ``ot.sinkhorn`` on the same
  marginals and kernel, run for the same iterations (and, reported only, to convergence);
- fp16 numerics of the log-form matcher, float16 arithmetic emulated on the CPU by torch: scores
  within 1e-2 of fp32 and no inf/NaN across inputs whose similarities span [−1, 1].
A bound that breaks raises :class:`ValidationError` with the whole report.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import EdgeDMLError
from ..models.embedder import EmbeddingModel
from ..models.matcher import StructuralMatcher
from ..models.matching import l2_normalize, structural_match

EMBEDDING_TOL = 1e-4
SCORE_TOL = 1e-4
POT_TOL = 1e-5  # plans and scores against POT run for the same iterations
POT_PARTIAL_TOL = 2e-2  # a partial matcher's converged score against ot.partial.entropic_partial_wasserstein
FP16_TOL = 1e-2


class ValidationError(EdgeDMLError):
    """An exported graph disagrees with PyTorch, POT or fp32 beyond the bounds above."""

    def __init__(self, report: dict, failures: list[str]):
        super().__init__("export validation failed: " + "; ".join(failures)
                         + ". No bundle was written.")
        self.report, self.failures = report, failures


def session(path: str | Path):
    """An ONNX Runtime CPU session (validation runs where the export runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def validate_embedder(model: EmbeddingModel, graph, images: torch.Tensor) -> dict:
    """Max abs difference of every output, ONNX Runtime vs PyTorch, for images (B, 3, S, S).

    ``graph`` is the graph's path, or a callable feeds → {output: array} (one that respects
    the graph's batch limit, see :class:`edgedml.export.precision_report.GraphRunner`)."""
    if not callable(graph):
        sess = session(graph)
        names = [o.name for o in sess.get_outputs()]
        graph = lambda feeds: dict(zip(names, sess.run(None, feeds)))  # noqa: E731
    got = graph({"images": images.numpy()})
    with torch.no_grad():
        out = model.eval()(images)
    want = {"embedding": out.embedding, "local": out.local, "attention": out.attention, "marginal": out.marginal}
    return {f"max_abs_diff_{n}": float(np.abs(g - want[n].numpy()).max()) for n, g in got.items()}


def matcher_inputs(regions: int, local_dim: int, embed_dim: int, k: int, seed: int = 0,
                   marginals: bool = False) -> tuple[torch.Tensor, ...]:
    """Unit-norm query and K candidates whose region similarities span [−1, 1]: candidate k is the
    query plus noise growing from 0 to 2× with k, and every other candidate is negated. With
    ``marginals`` (a rollout matcher), also positive region marginals (1, R) and (K, R), each
    summing to 1."""
    g = torch.Generator().manual_seed(seed)
    q_local = l2_normalize(torch.randn(1, regions, local_dim, generator=g))
    q_emb = l2_normalize(torch.randn(1, embed_dim, generator=g))
    spread = torch.linspace(0, 2, k).view(k, 1, 1)
    c_local = l2_normalize(q_local + spread * torch.randn(k, regions, local_dim, generator=g))
    sign = torch.where(torch.arange(k) % 2 == 0, 1.0, -1.0)
    c_local = c_local * sign.view(k, 1, 1)
    c_emb = l2_normalize(q_emb + spread[:, :, 0] * torch.randn(k, embed_dim, generator=g)) * sign.view(k, 1)
    if not marginals:
        return q_local, q_emb, c_local, c_emb
    q_m, c_m = (torch.rand(n, regions, generator=g) + 0.05 for n in (1, k))
    return q_local, q_emb, c_local, c_emb, q_m / q_m.sum(-1, keepdim=True), c_m / c_m.sum(-1, keepdim=True)


def validate_matcher(matcher: StructuralMatcher, path: Path, inputs: tuple[torch.Tensor, ...]) -> dict:
    """ONNX Runtime vs PyTorch on the same inputs: max abs difference of each output."""
    sess = session(path)
    got = sess.run(None, {name: t.numpy() for name, t in zip(matcher.input_names, inputs)})
    with torch.no_grad():
        want = matcher(*inputs)
    return {f"max_abs_diff_{n}": float(np.abs(g - w.numpy()).max()) for n, g, w in zip(want._fields, got, want)}


def _reference_match(matcher: StructuralMatcher, inputs: tuple[torch.Tensor, ...], iters: int, dtype,
                     form: str = "log"):
    """:func:`structural_match` on the matcher's settings and normalised inputs, in ``dtype``."""
    q_local, q_emb, c_local, c_emb = (l2_normalize(t.to(dtype)) for t in inputs[:4])
    centers = (q_emb, c_emb) if matcher.centers_from_embedding else (None, None)
    given = tuple(t.to(dtype) for t in inputs[4:6]) if len(inputs) == 6 else None
    return structural_match(q_local, c_local, matcher.eps, iters, matcher.marginals_kind, form,
                            x_center=centers[0], y_center=centers[1], mass=matcher.mass, given=given)


def validate_against_pot(path: Path, inputs: tuple[torch.Tensor, ...], matcher: StructuralMatcher,
                         pairs: int = 8) -> dict:
    """The ONNX matcher against ``ot.sinkhorn(method="sinkhorn_log")`` on the same marginals and
    kernel, for the first ``pairs`` candidates with mass on both sides.

    Two comparisons: POT run for the same number of iterations (the implementation check, which
    must agree to float32 rounding: POT updates the column potential first, so it is given the
    transposed problem, whose iterates are exactly ours), and the converged solution (float64,
    2000 iterations; reported, not bounded: it measures what ``iters`` leaves unconverged,
    largest on near-duplicate pairs whose kernel is sharply peaked). POT to convergence is
    checked against the same float64 solution in the test suite.

    A partial-transport matcher (``matcher.mass``) is checked the same way on its augmented
    problem (dummy row and column, the dummy-to-dummy cell forbidden), and its converged score
    against POT's own partial solver, ``ot.partial.entropic_partial_wasserstein``, on the real
    problem (reported as ``max_abs_diff_score_vs_pot_partial``; the two use different entropy
    terms, so they agree to about 1e-2 at ε = 0.05, not to rounding)."""
    import ot

    sess = session(path)
    feeds = {n: t.numpy() for n, t in zip(matcher.input_names, inputs)}
    plans, scores = sess.run(["plan", "structural"], feeds)
    eps, iters, mass = matcher.eps, matcher.iters, matcher.mass
    exact = _reference_match(matcher, inputs, 2000, torch.float64)
    s, u, v = (t.numpy() for t in (exact.similarity, exact.u, exact.v))
    same = {"plan": 0.0, "score": 0.0}
    converged, partial = 0.0, 0.0
    compared = 0
    for k in range(plans.shape[0]):
        if u[k].sum() < 0.5 or v[k].sum() < 0.5:  # (near) zero mass: no transport problem to compare
            continue
        cost, a, b = 1 - s[k], u[k], v[k]
        if mass is not None:  # the augmented problem the graph solves
            cost = np.pad(cost, ((0, 1), (0, 1)))
            cost[-1, -1] = 1e4
            a, b = np.append(a, 1 - mass), np.append(b, 1 - mass)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns on log(0) and on not converging in `iters`
            fixed = ot.sinkhorn(b, a, cost.T, eps, method="sinkhorn_log", numItermax=iters, stopThr=0.0).T
            if mass is not None:
                fixed = fixed[:-1, :-1]
                positive = (u[k] > 0, v[k] > 0)  # POT's partial solver divides by the marginals
                pot_partial = ot.partial.entropic_partial_wasserstein(
                    u[k][positive[0]], v[k][positive[1]], (1 - s[k])[np.ix_(*positive)], eps, m=mass,
                    numItermax=5000, stopThr=1e-12)
                partial = max(partial, float(abs(exact.score[k] - (pot_partial * s[k][np.ix_(*positive)]).sum())))
        same["plan"] = max(same["plan"], float(np.abs(plans[k] - fixed).max()))
        same["score"] = max(same["score"], float(abs(scores[k] - (fixed * s[k]).sum())))
        converged = max(converged, float(abs(scores[k] - exact.score[k])))
        compared += 1
        if compared == pairs:
            break
    report = {"pairs": compared, "max_abs_diff_plan_vs_pot": same["plan"], "max_abs_diff_score_vs_pot": same["score"],
              "max_abs_diff_score_vs_converged": converged}
    if mass is not None:
        report["max_abs_diff_score_vs_pot_partial"] = partial
    return report


@torch.no_grad()
def fp16_matcher_check(matcher: StructuralMatcher, inputs: tuple[torch.Tensor, ...]) -> dict:
    """The log form in float16 (emulated on the CPU) against float32: score error, finiteness."""
    match16 = _reference_match(matcher, inputs, matcher.iters, torch.float16)
    match32 = _reference_match(matcher, inputs, matcher.iters, torch.float32)
    return {"similarity_range": [float(match32.similarity.min()), float(match32.similarity.max())],
            "max_abs_diff_score_fp16": float((match16.score.float() - match32.score).abs().max()),
            "finite_fp16": bool(torch.isfinite(match16.plan).all())}


def check_bounds(report: dict) -> list[str]:
    """The failures of a validation report against the bounds of this module."""
    failures = []
    for key, value in report.get("embedder", {}).items():
        if value > EMBEDDING_TOL:
            failures.append(f"embedder {key} = {value:.2e} > {EMBEDDING_TOL}")
    for key in ("max_abs_diff_structural", "max_abs_diff_multiscale"):
        value = report.get("matcher", {}).get(key, 0.0)
        if value > SCORE_TOL:
            failures.append(f"matcher {key} = {value:.2e} > {SCORE_TOL}")
    for key in ("max_abs_diff_plan_vs_pot", "max_abs_diff_score_vs_pot"):
        value = report.get("pot", {}).get(key, 0.0)
        if value > POT_TOL:
            failures.append(f"matcher {key} = {value:.2e} > {POT_TOL}")
    value = report.get("pot", {}).get("max_abs_diff_score_vs_pot_partial", 0.0)
    if value > POT_PARTIAL_TOL:
        failures.append(f"partial matcher vs POT's partial solver: {value:.2e} > {POT_PARTIAL_TOL}")
    fp16 = report.get("fp16", {})
    if fp16 and (not fp16["finite_fp16"] or fp16["max_abs_diff_score_fp16"] > FP16_TOL):
        failures.append(f"fp16 matcher: finite={fp16['finite_fp16']}, score error "
                        f"{fp16['max_abs_diff_score_fp16']:.2e} (bound {FP16_TOL})")
    return failures
