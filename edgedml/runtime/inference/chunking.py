"""The shape contract: a graph's largest batch (or K), and requests split to fit it.

A TensorRT engine accepts batches up to its profile's maximum; a graph exported at a fixed batch
accepts exactly that batch. :func:`run_in_chunks` splits any larger request along axis 0 of the
chunked inputs, pads the last chunk of a fixed-size graph by repeating its last row, runs each
chunk and concatenates the outputs (axis 0), dropping the padding.

:data:`CHUNKED` names, once for every caller (the :class:`~..matching.matcher.Matcher`, the export's
precision report, the TensorRT engine check), the inputs of each graph that are split: the
embedder's images, and the matcher's candidates with their rollout marginals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# graph → the inputs split along axis 0 (the rest, the query's, go whole to every chunk); the
# matcher's optional inputs (a rollout bundle's candidate_marginal) are split when present
CHUNKED: dict[str, tuple[str, ...]] = {
    "embedder": ("images",),
    "matcher": ("candidate_local", "candidate_embedding", "candidate_marginal"),
}


@dataclass(frozen=True)
class Limit:
    """Axis-0 limit of a graph's chunked inputs: at most ``size`` rows (None: unlimited);
    ``fixed``: exactly ``size`` rows."""

    size: int | None = None
    fixed: bool = False

    @classmethod
    def from_dict(cls, data: dict | None) -> Limit:
        data = data or {}
        return cls(data.get("size"), bool(data.get("fixed", False)))

    def to_dict(self) -> dict:
        return {"size": self.size, "fixed": self.fixed}


def run_in_chunks(run: Callable[[dict], dict], feeds: dict[str, np.ndarray], chunked: tuple[str, ...],
                  limit: Limit) -> dict[str, np.ndarray]:
    """``run(feeds) → {name: array}`` over axis-0 chunks of the inputs named in ``chunked`` (the
    others are passed whole); every output is concatenated along axis 0."""
    chunked = tuple(name for name in chunked if name in feeds)  # optional inputs (marginals) may be absent
    rows = len(feeds[chunked[0]])
    if limit.size is None or (rows <= limit.size and not limit.fixed):
        return run(feeds)
    if rows == 0:
        raise ValueError("nothing to run: the request has no rows")
    parts: list[dict] = []
    for start in range(0, rows, limit.size):
        stop = min(rows, start + limit.size)
        chunk = dict(feeds)
        for name in chunked:
            part = feeds[name][start:stop]
            if limit.fixed and len(part) < limit.size:
                pad = np.repeat(part[-1:], limit.size - len(part), axis=0)
                part = np.concatenate([part, pad])
            chunk[name] = np.ascontiguousarray(part)
        out = run(chunk)
        parts.append({name: value[:stop - start] for name, value in out.items()})
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
