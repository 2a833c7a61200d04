"""How faithful is an explanation? Deletion and insertion curves on the region grid (torch-free).

An explanation ranks the g×g regions of image A by how much they made the match with image B.
It is faithful if removing the regions it ranks first lowers the score more than removing any
others (deletion), and if restoring them first brings the score back sooner (insertion):

- **deletion**: replace A's cells in the method's order, most important first, and record the
  multi-scale score after each step (g² + 1 points, from the clean image to an empty one);
- **insertion**: start from an empty image and restore the cells in the same order.

Both curves are divided by the clean score and their areas taken over the fraction of cells
(trapezoids): a low deletion AUC and a high insertion AUC mean a faithful order.

The unit is the model's own region grid (the cells its evidence is computed on), in the
network's input. A removed cell is set to the preprocessing mean, which is 0 after
normalisation: the "average pixel" carries no edge or texture, and every model sees the same
value. A blur would keep the cell's colours and coarse shape, and so leak what was removed.

Methods: ``evidence`` (the matcher's per-region evidence, free with every compare),
``attention`` (grouping and ABE heads: their attention maps summed over groups or learners,
pooled to the grid), ``occlusion`` (the score drop when each cell alone is removed: g² extra
embeddings, the costly reference) and ``random`` (the floor, seeded).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

METHODS = ("evidence", "attention", "occlusion", "random")


@dataclass
class Curves:
    """One method's curves for one pair: deletion and insertion (g² + 1,), divided by the clean
    score; the region order used; the milliseconds the order took beyond the compare itself."""

    deletion: np.ndarray
    insertion: np.ndarray
    order: np.ndarray
    ms: float

    @property
    def deletion_auc(self) -> float:
        return area(self.deletion)

    @property
    def insertion_auc(self) -> float:
        return area(self.insertion)

    @property
    def deletion_auc_above_empty(self) -> float:
        """The deletion AUC with the curve rescaled from the clean score (1) to the empty image's
        score (0): an empty image still scores a share of the clean score, which the plain AUC
        keeps and which compresses every method towards the same value."""
        empty = self.deletion[-1]
        return area((self.deletion - empty) / (1 - empty)) if abs(1 - empty) > 1e-6 else float("nan")


def area(curve: np.ndarray) -> float:
    """Trapezoid area of a curve sampled at 0, 1/n, …, 1 (n + 1 points)."""
    curve = np.asarray(curve, np.float64)
    return float(((curve[1:] + curve[:-1]) / 2).mean())


def cell_masks(grid: int, size: int) -> np.ndarray:
    """(g², size, size) bool: the pixels of the network input each region covers (row-major)."""
    edges = np.round(np.linspace(0, size, grid + 1)).astype(int)
    masks = np.zeros((grid * grid, size, size), bool)
    for r in range(grid):
        for c in range(grid):
            masks[r * grid + c, edges[r]:edges[r + 1], edges[c]:edges[c + 1]] = True
    return masks


def _score_against(matcher, reference, inputs: np.ndarray) -> np.ndarray:
    """Multi-scale scores of network inputs (n, 3, S, S) against ``reference`` Features (1 row):
    the reference is the query and the inputs its candidates (one matcher call)."""
    return matcher.match(reference, matcher._embed_batch(inputs))["multiscale"]


def curves(matcher, input_a: np.ndarray, reference, order: np.ndarray, clean: float) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves of A's network input (3, S, S) against ``reference``, in
    ``order`` (region indices), divided by ``clean``."""
    masks = cell_masks(matcher.grid, input_a.shape[-1])
    removed = np.zeros(input_a.shape[-2:], bool)
    deleted, inserted = [input_a], [np.zeros_like(input_a)]
    for cell in order:
        removed |= masks[cell]
        deleted.append(np.where(removed, 0.0, input_a).astype(np.float32))
        inserted.append(np.where(removed, input_a, 0.0).astype(np.float32))
    scores = _score_against(matcher, reference, np.stack(deleted + inserted))
    n = len(order) + 1
    return scores[:n] / clean, scores[n:] / clean


def orders(matcher, input_a: np.ndarray, reference, clean: float, methods=METHODS,
           seed: int = 0) -> dict[str, tuple[np.ndarray, float]]:
    """Each method's region order (most important first) for A's network input against
    ``reference`` (whose clean score is ``clean``), with the milliseconds it took beyond the
    clean compare."""
    features_a = matcher._embed_batch(input_a[None])
    match = matcher.match(features_a, reference)  # A as the query: its evidence is query_evidence
    out = {}
    if "evidence" in methods:
        tick = time.perf_counter()
        out["evidence"] = (np.argsort(-match["query_evidence"][0], kind="stable"), 1000 * (time.perf_counter() - tick))
    if "attention" in methods and features_a.attention is not None:
        import cv2

        tick = time.perf_counter()
        summed = features_a.attention[0].sum(axis=0).astype(np.float32)
        pooled = cv2.resize(summed, (matcher.grid, matcher.grid), interpolation=cv2.INTER_AREA).reshape(-1)
        out["attention"] = (np.argsort(-pooled, kind="stable"), 1000 * (time.perf_counter() - tick))
    if "occlusion" in methods:
        tick = time.perf_counter()
        masks = cell_masks(matcher.grid, input_a.shape[-1])
        alone = np.stack([np.where(mask, 0.0, input_a).astype(np.float32) for mask in masks])
        scores = _score_against(matcher, reference, alone)
        out["occlusion"] = (np.argsort(-(clean - scores), kind="stable"), 1000 * (time.perf_counter() - tick))
    if "random" in methods:
        out["random"] = (np.random.default_rng(seed).permutation(matcher.grid ** 2), 0.0)
    return out


def pair_curves(matcher, input_a: np.ndarray, input_b: np.ndarray, methods=METHODS, seed: int = 0) -> dict[str, Curves]:
    """Every method's :class:`Curves` for one pair of network inputs (3, S, S)."""
    reference = matcher._embed_batch(input_b[None])
    clean = float(_score_against(matcher, reference, input_a[None])[0])
    if abs(clean) < 1e-6:
        raise ValueError("the pair scores 0: there is nothing for an explanation to account for")
    found = orders(matcher, input_a, reference, clean, methods, seed)
    return {name: Curves(*curves(matcher, input_a, reference, order, clean), order, ms)
            for name, (order, ms) in found.items()}


def _classes_with_pairs(folder) -> tuple[list, list[np.ndarray]]:
    """The photos of a class-per-folder set and, per class with two or more, its members' indices."""
    from .labelled_set import labelled_images

    paths, labels, _ = labelled_images(folder)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels) if (labels == c).sum() >= 2]
    if not members:
        raise ValueError(f"{folder} has no class with two photos: no genuine pair to explain")
    return paths, members


def pair_count(members: list[np.ndarray]) -> int:
    """How many distinct genuine pairs (A, B) there are: two different photos of one class, in
    either order (A is the photo explained, so (B, A) is another pair)."""
    return sum(len(m) * (len(m) - 1) for m in members)


def _row_start(i: int, n: int) -> int:
    """How many pairs (i′ < j) of n items come in the rows i′ < i."""
    return i * n - i * (i + 1) // 2


def _unrank(t: int, n: int) -> tuple[int, int]:
    """The t-th pair (i < j) of n items, row by row: row i holds the n − 1 − i pairs (i, j > i)."""
    i = max(0, ((2 * n - 1) - math.isqrt((2 * n - 1) ** 2 - 8 * t)) // 2)  # the root of _row_start(i) = t
    while _row_start(i + 1, n) <= t:
        i += 1
    while _row_start(i, n) > t:
        i -= 1
    return i, t - _row_start(i, n) + i + 1


def draw_pairs(paths, members: list[np.ndarray], count: int, seed: int = 0) -> Iterator[tuple]:
    """``min(count, pair_count(members))`` distinct genuine pairs, seeded, drawn without replacement
    one at a time (memory grows with the pairs drawn, not with ``count``)."""
    sizes = np.cumsum([len(m) * (len(m) - 1) for m in members])
    total, rng, seen = int(sizes[-1]), np.random.default_rng(seed), set()
    while len(seen) < min(count, total):
        t = int(rng.integers(0, total))
        if t in seen:
            continue
        seen.add(t)
        k = int(np.searchsorted(sizes, t, side="right"))
        local = t - (int(sizes[k - 1]) if k else 0)
        i, j = _unrank(local >> 1, len(members[k]))
        swap = local & 1
        a, b = paths[members[k][i]], paths[members[k][j]]
        yield (b, a) if swap else (a, b)


def genuine_pairs(folder, count: int, seed: int = 0) -> list[tuple]:
    """``count`` distinct pairs of different photos of one class of a class-per-folder set (all of
    them when it has fewer), seeded."""
    return list(draw_pairs(*_classes_with_pairs(folder), count, seed))


def available_methods(matcher) -> tuple[str, ...]:
    """The methods a bundle can rank regions by: attention only where its embedder outputs
    attention maps (the grouping and ABE heads)."""
    has_maps = "attention" in matcher.manifest.embedder.outputs
    return tuple(m for m in METHODS if m != "attention" or has_maps)


def check_methods(matcher, methods) -> tuple[str, ...]:
    """``methods`` (None: every available one), or ConfigError for one this bundle cannot run."""
    from ...errors import ConfigError

    available = available_methods(matcher)
    if methods is None:
        return available
    if "attention" in methods and "attention" not in available:
        head = (matcher.manifest.model or {}).get("head", "this")
        raise ConfigError(f"the {head} head has no attention maps (only the grouping and abe heads have them); "
                          f"choose from {', '.join(available)}")
    return tuple(methods)


def evaluate(matcher, folder, count: int, seed: int = 0, methods=None, progress: bool = False) -> dict:
    """Mean deletion and insertion curves, their AUCs and each method's cost over ``count``
    seeded distinct genuine pairs of ``folder`` (all of them when it has fewer: the report's
    ``pairs`` against ``pairs_asked``), the largest face of each photo with a detector.
    ``methods``: None for every method the bundle has; one it lacks is refused. ``progress``:
    a bar on stderr (when it is a terminal)."""
    from ..faces.detection import NoFaceFound

    methods = check_methods(matcher, methods)
    paths, members = _classes_with_pairs(folder)
    total = min(count, pair_count(members))
    collected: dict[str, list[Curves]] = {}
    compare_ms = []
    from ...progress import progress_bar

    pairs = progress_bar(draw_pairs(paths, members, total, seed), total=total, desc="explaining pairs", unit="pair",
                         enabled=progress)
    for number, (a, b) in enumerate(pairs):
        tick = time.perf_counter()
        explained = matcher.explain(a, b)  # timed (the comparison with its maps), and its network inputs are the pair's
        compare_ms.append(1000 * (time.perf_counter() - tick))
        if explained.inputs is None:
            raise NoFaceFound(f"{a} and {b}: {explained.reason}; explain photos where the detector finds a face")
        for name, curve in pair_curves(matcher, *explained.inputs, methods, seed + number).items():
            collected.setdefault(name, []).append(curve)
    pairs.close()
    report = {"pairs": total, "pairs_asked": count, "seed": seed, "grid": matcher.grid,
              "replacement": "the preprocessing mean (0 after normalisation)",
              "compare_ms": float(np.median(compare_ms)), "methods": {}}
    for name, items in collected.items():
        deletion, insertion = np.stack([c.deletion for c in items]), np.stack([c.insertion for c in items])
        report["methods"][name] = {
            "deletion_auc": float(np.mean([c.deletion_auc for c in items])),
            "insertion_auc": float(np.mean([c.insertion_auc for c in items])),
            "deletion_auc_sd": float(np.std([c.deletion_auc for c in items])),
            "deletion_auc_above_empty": float(np.nanmean([c.deletion_auc_above_empty for c in items])),
            "extra_ms": float(np.median([c.ms for c in items])),
            "deletion_curve": deletion.mean(0).round(5).tolist(),
            "insertion_curve": insertion.mean(0).round(5).tolist()}
    return report


COLOURS = {"evidence": (0, 0, 220), "attention": (0, 160, 0), "occlusion": (200, 120, 0), "random": (120, 120, 120)}


def draw(report: dict, title: str = "") -> np.ndarray:
    """The mean deletion and insertion curves of each method, side by side (BGR uint8)."""
    import cv2

    width, height, pad = 360, 260, 40
    canvas = np.full((height + 2 * pad + 30, 2 * (width + pad) + pad, 3), 255, np.uint8)
    curves_all = [v for m in report["methods"].values() for v in m["deletion_curve"] + m["insertion_curve"]]
    low, high = min(0.0, min(curves_all)), max(1.0, max(curves_all))
    for panel, key in enumerate(("deletion", "insertion")):
        x0, y0 = pad + panel * (width + pad), pad
        cv2.rectangle(canvas, (x0, y0), (x0 + width, y0 + height), (0, 0, 0), 1)
        cv2.putText(canvas, f"{key} (AUC)", (x0, y0 - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for row, (name, m) in enumerate(report["methods"].items()):
            curve = np.asarray(m[f"{key}_curve"])
            xs = x0 + np.linspace(0, width, len(curve))
            ys = y0 + height - (curve - low) / (high - low) * height
            points = np.stack([xs, ys], 1).round().astype(np.int32)
            cv2.polylines(canvas, [points], False, COLOURS.get(name, (0, 0, 0)), 2, cv2.LINE_AA)
            # the legend where the curves are not: bottom left for deletion, top left for insertion
            y = y0 + height - 12 - 16 * (len(report["methods"]) - 1 - row) if key == "deletion" else y0 + 18 + 16 * row
            cv2.putText(canvas, f"{name} {m[f'{key}_auc']:.3f}", (x0 + 8, y),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS.get(name, (0, 0, 0)), 1, cv2.LINE_AA)
        for value in (low, high):
            cv2.putText(canvas, f"{value:.1f}", (x0 - 24, int(y0 + height - (value - low) / (high - low) * height) + 4),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, "fraction of cells removed" if key == "deletion" else "fraction of cells restored",
                    (x0, y0 + height + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, title or f"score / clean score, mean of {report['pairs']} genuine pairs",
                (pad, height + 2 * pad + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
