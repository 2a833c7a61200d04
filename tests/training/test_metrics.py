import math

import pytest
import torch

from edgedml.training.metrics import (
    _lloyd,
    kmeans,
    map_at_r,
    mean_over_queries,
    nmi,
    normalized_mutual_info,
    r_precision,
    rank_references,
    recall_at_k,
    retrieval_metrics,
)

# ---------------------------------------------------------------- plain-Python references

def loop_ranking(sim_row, skip=None):
    """Stable descending order of one similarity row, optionally without index `skip`."""
    idx = [j for j in range(len(sim_row)) if j != skip]
    return sorted(idx, key=lambda j: -sim_row[j])


def loop_metrics(sim, q_labels, r_labels, ks, exclude_self=False):
    """Recall@k, MAP@R, R-precision by definition; queries with R = 0 skipped."""
    sim, q_labels, r_labels = sim.tolist(), q_labels.tolist(), r_labels.tolist()
    recalls, aps, rps = {k: [] for k in ks}, [], []
    for q, row in enumerate(sim):
        ranked = loop_ranking(row, q if exclude_self else None)
        rel = [r_labels[j] == q_labels[q] for j in ranked]
        r = sum(rel)  # self already removed from the ranking
        if r == 0:
            continue
        for k in ks:
            recalls[k].append(float(any(rel[:k])))
        hits, ap = 0, 0.0
        for i in range(r):
            if rel[i]:
                hits += 1
                ap += hits / (i + 1)
        aps.append(ap / r)
        rps.append(sum(rel[:r]) / r)

    def mean(xs):
        return sum(xs) / len(xs)

    return {k: mean(v) for k, v in recalls.items()}, mean(aps), mean(rps)


# ---------------------------------------------------------------- hand-worked retrieval example

# references 0..5 have labels 0 0 1 1 1 2
REF_LABELS = torch.tensor([0, 0, 1, 1, 1, 2])
QUERY_LABELS = torch.tensor([0, 1, 2, 0])
ORDER = torch.tensor([
    [2, 0, 3, 1, 4, 5],  # A, label 0, R=2: labels 1 0 | 1 0 1 2 -> rel 0 1; P(1)=0, P(2)=1/2
    #                      AP@R = (0*0 + 1/2*1)/2 = 1/4; R-prec = 1/2; first hit at rank 2
    [2, 3, 0, 4, 1, 5],  # B, label 1, R=3: labels 1 1 0 | 1 0 2 -> rel 1 1 0; P = 1, 1, 2/3
    #                      AP@R = (1 + 1 + 0)/3 = 2/3 (the hit at rank 4 is past R); R-prec = 2/3
    [5, 0, 1, 2, 3, 4],  # C, label 2, R=1: rel 1 -> AP@R = 1, R-prec = 1; first hit at rank 1
    [2, 3, 0, 1, 4, 5],  # D, label 0, R=2: labels 1 1 | 0 0 ... -> rel 0 0 -> AP@R = 0, R-prec = 0
    #                      first hit at rank 3: recall@1 = recall@2 = 0, recall@3 = recall@4 = 1
])


def test_hand_example_map_at_r_and_r_precision():
    assert map_at_r(ORDER, QUERY_LABELS, REF_LABELS) == pytest.approx((1 / 4 + 2 / 3 + 1 + 0) / 4)  # 23/48
    assert r_precision(ORDER, QUERY_LABELS, REF_LABELS) == pytest.approx((1 / 2 + 2 / 3 + 1 + 0) / 4)  # 13/24
    per_query = map_at_r(ORDER, QUERY_LABELS, REF_LABELS, reduce=False)
    torch.testing.assert_close(per_query, torch.tensor([1 / 4, 2 / 3, 1, 0], dtype=torch.float64))


def test_hand_example_recall_first_hit_at_rank_3():
    # first-hit ranks: A 2, B 1, C 1, D 3
    assert recall_at_k(ORDER, QUERY_LABELS, REF_LABELS, ks=(1, 2, 3, 4)) == pytest.approx(
        {1: 2 / 4, 2: 3 / 4, 3: 1.0, 4: 1.0})
    per_query = recall_at_k(ORDER[3:], QUERY_LABELS[3:], REF_LABELS, ks=(1, 2, 4), reduce=False)
    assert [float(per_query[k][0]) for k in (1, 2, 4)] == [0.0, 0.0, 1.0]


def test_retrieval_metrics_keys_and_values():
    out = retrieval_metrics(ORDER, QUERY_LABELS, REF_LABELS, ks=(1, 2, 4))
    assert list(out) == ["recall@1", "recall@2", "recall@4", "map@r", "r_precision"]
    assert out["recall@2"] == pytest.approx(0.75)
    assert out["map@r"] == pytest.approx(23 / 48)
    assert out["r_precision"] == pytest.approx(13 / 24)


def test_queries_without_relevant_references_are_skipped():
    order = torch.cat([ORDER, ORDER[:1]])
    labels = torch.cat([QUERY_LABELS, torch.tensor([7])])  # label 7 has no reference: R = 0
    assert map_at_r(order, labels, REF_LABELS) == pytest.approx(23 / 48)
    assert recall_at_k(order, labels, REF_LABELS, ks=(1,))[1] == pytest.approx(0.5)
    assert math.isnan(float(map_at_r(order, labels, REF_LABELS, reduce=False)[-1]))
    with pytest.raises(ValueError, match="R = 0"):
        map_at_r(ORDER[:1], torch.tensor([7]), REF_LABELS)


def test_map_at_r_reads_only_the_first_max_r_columns():
    # max R = 3, so a top-3 ranking suffices; a top-2 one must be refused
    assert map_at_r(ORDER[:, :3], QUERY_LABELS, REF_LABELS) == pytest.approx(23 / 48)
    with pytest.raises(ValueError, match="rank more references"):
        map_at_r(ORDER[:, :2], QUERY_LABELS, REF_LABELS)
    with pytest.raises(ValueError, match="rank more references"):
        recall_at_k(ORDER, QUERY_LABELS, REF_LABELS, ks=(1, 8))


# ---------------------------------------------------------------- ranking

def test_rank_references_is_descending_and_stable():
    sim = torch.tensor([[0.1, 0.9, 0.5, 0.9, 0.1]])
    assert rank_references(sim).tolist() == [[1, 3, 2, 0, 4]]
    with pytest.raises(ValueError, match="NaN"):
        rank_references(torch.tensor([[0.1, float("nan")]]))


def test_rank_references_exclude_self_puts_own_index_last_even_on_ties():
    sim = torch.ones(3, 5)  # all tied: a plain stable sort would rank reference 0 first
    order = rank_references(sim, exclude_self=True, query_offset=2)
    assert order.tolist() == [[0, 1, 3, 4, 2], [0, 1, 2, 4, 3], [0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="query_offset"):
        rank_references(sim, exclude_self=True, query_offset=3)


# ---------------------------------------------------------------- against the loop reference

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_loop_reference(dtype, ties):
    g = torch.Generator().manual_seed(1)
    q_labels, r_labels = torch.randint(0, 5, (30,), generator=g), torch.randint(0, 6, (40,), generator=g)
    sim = (torch.randint(0, 4, (30, 40), generator=g) if ties else torch.randn(30, 40, generator=g)).to(dtype)
    order = rank_references(sim)
    recalls, ap, rp = loop_metrics(sim, q_labels, r_labels, ks=(1, 2, 4, 8))
    assert recall_at_k(order, q_labels, r_labels) == pytest.approx(recalls, abs=1e-12)
    assert map_at_r(order, q_labels, r_labels) == pytest.approx(ap, abs=1e-12)
    assert r_precision(order, q_labels, r_labels) == pytest.approx(rp, abs=1e-12)


def test_exclude_self_never_counts_the_query():
    g = torch.Generator().manual_seed(2)
    x = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=1)
    labels = torch.randint(0, 8, (50,), generator=g)
    labels[0] = 99  # a lone label: only its own self match could ever "hit"
    sim = x @ x.T  # the diagonal is each row's maximum: self would be rank 1
    order = rank_references(sim, exclude_self=True)
    assert torch.equal(order[:, -1], torch.arange(50))
    out = retrieval_metrics(order, labels, labels, exclude_self=True, reduce=False)
    assert math.isnan(float(out["recall@1"][0])) and math.isnan(float(out["map@r"][0]))
    recalls, ap, rp = loop_metrics(sim, labels, labels, ks=(1, 2, 4, 8), exclude_self=True)
    reduced = retrieval_metrics(order, labels, labels, exclude_self=True)
    assert reduced == pytest.approx({**{f"recall@{k}": v for k, v in recalls.items()},
                                     "map@r": ap, "r_precision": rp}, abs=1e-12)
    # without exclude_self the self match is counted: recall@1 = 1 for every query
    assert recall_at_k(rank_references(sim), labels, labels, ks=(1,))[1] == 1.0


def test_chunked_evaluation_matches_full():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(53, 6, generator=g)
    labels = torch.randint(0, 7, (53,), generator=g)
    full = retrieval_metrics(rank_references(x @ x.T, exclude_self=True), labels, labels, exclude_self=True)
    parts = []
    for start in range(0, 53, 10):
        sim = x[start:start + 10] @ x.T
        order = rank_references(sim, exclude_self=True, query_offset=start)
        parts.append(retrieval_metrics(order, labels[start:start + 10], labels, exclude_self=True, reduce=False))
    chunked = {key: mean_over_queries(torch.cat([p[key] for p in parts])) for key in full}
    assert chunked == pytest.approx(full, abs=1e-12)


def test_matches_pytorch_metric_learning_accuracy_calculator():
    from pytorch_metric_learning.distances import DotProductSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    g = torch.Generator().manual_seed(4)
    query, ref = torch.randn(40, 8, generator=g), torch.randn(60, 8, generator=g)
    q_labels, r_labels = torch.randint(0, 6, (40,), generator=g), torch.randint(0, 6, (60,), generator=g)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                              k="max_bin_count", knn_func=CustomKNN(DotProductSimilarity(normalize_embeddings=False)),
                              device=torch.device("cpu"))
    cases = [(query, q_labels, ref, r_labels, False), (ref, r_labels, ref, r_labels, True)]
    for q, ql, r, rl, same in cases:
        pml = calc.get_accuracy(q, ql, r, rl, ref_includes_query=same)
        ours = retrieval_metrics(rank_references(q @ r.T, exclude_self=same), ql, rl, ks=(1,), exclude_self=same)
        assert ours["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
        assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
        assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)


# ---------------------------------------------------------------- NMI

def test_nmi_perfect_clustering_and_permuted_ids():
    truth = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    assert normalized_mutual_info(truth, truth) == pytest.approx(1.0)
    assert normalized_mutual_info(truth, torch.tensor([5, 5, 9, 9, 1, 1, 1])) == pytest.approx(1.0)


def test_nmi_independent_labelings_is_zero():
    # contingency [[1, 1], [1, 1]]: every cell n_ij/N = 1/4 = (a_i/N)(b_j/N), so I(U;V) = 0
    assert normalized_mutual_info(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])) == pytest.approx(0, abs=1e-12)


def test_nmi_hand_computed_contingency_table():
    # truth 0 0 0 1 1 1 vs pred 0 0 1 1 1 1 -> contingency [[2, 1], [0, 3]], N = 6
    # H(U) = ln 2 = 0.693147;  H(V) = -(1/3 ln 1/3 + 2/3 ln 2/3) = 0.636514
    # I = 2/6 ln(6*2/(3*2)) + 1/6 ln(6*1/(3*4)) + 3/6 ln(6*3/(3*4))
    #   = 1/3 ln 2 - 1/6 ln 2 + 1/2 ln 1.5 = 0.115525 + 0.202733 = 0.318257
    # NMI = 0.318257 / ((0.693147 + 0.636514) / 2) = 0.478704
    h_u = math.log(2)
    h_v = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    mi = math.log(2) / 6 + 0.5 * math.log(1.5)
    got = normalized_mutual_info(torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 0, 1, 1, 1, 1]))
    assert got == pytest.approx(mi / ((h_u + h_v) / 2))
    assert got == pytest.approx(0.478704, abs=1e-6)


def test_nmi_single_cluster_edge_cases():
    ones = torch.zeros(5, dtype=torch.long)
    assert normalized_mutual_info(ones, ones) == 1.0
    assert normalized_mutual_info(ones, torch.tensor([0, 1, 0, 1, 2])) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        normalized_mutual_info(ones, ones[:4])


def test_nmi_matches_scipy_entropy_formula():
    stats = pytest.importorskip("scipy.stats")
    from scipy.stats.contingency import crosstab

    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        u, v = torch.randint(0, 4, (80,), generator=g), torch.randint(0, 6, (80,), generator=g) * 3 - 2
        table = crosstab(u.numpy(), v.numpy()).count  # I = H(U) + H(V) - H(U, V)
        h_u, h_v, h_uv = stats.entropy(table.sum(1)), stats.entropy(table.sum(0)), stats.entropy(table.ravel())
        assert normalized_mutual_info(u, v) == pytest.approx((h_u + h_v - h_uv) / ((h_u + h_v) / 2), abs=1e-12)


def test_nmi_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(6)
    u, v = torch.randint(0, 5, (100,), generator=g), torch.randint(0, 7, (100,), generator=g)
    assert normalized_mutual_info(u, v) == pytest.approx(metrics.normalized_mutual_info_score(u, v), abs=1e-12)


# ---------------------------------------------------------------- k-means

def blobs(seed=0, per=30, k=5, dim=8, std=0.05):
    """k tight Gaussian blobs around orthogonal unit vectors, shuffled."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(k).repeat_interleave(per)
    x = torch.eye(dim)[labels] + std * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return x[perm], labels[perm]


def test_kmeans_recovers_blobs_and_is_deterministic():
    x, labels = blobs()
    pred = kmeans(x, 5, seed=3)
    assert pred.shape == labels.shape and int(pred.max()) < 5
    assert normalized_mutual_info(labels, pred) == pytest.approx(1.0)
    assert torch.equal(pred, kmeans(x, 5, seed=3))
    assert nmi(x, labels) == pytest.approx(1.0)


def test_kmeans_reseeds_empty_clusters():
    x, labels = blobs(per=20, k=2)
    centers = torch.stack([x.mean(0), torch.full((8,), 100.0)])  # the second center owns nothing
    pred, inertia = _lloyd(x, centers, iters=20)
    assert normalized_mutual_info(labels, pred) == pytest.approx(1.0)
    assert inertia < 40 * 8 * 0.05 ** 2 * 2  # within-blob spread only


def test_kmeans_rejects_bad_k():
    with pytest.raises(ValueError, match="k <= N"):
        kmeans(torch.randn(4, 2), 5)
