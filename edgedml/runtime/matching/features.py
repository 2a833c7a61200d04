"""What the embedder returns for a batch of images: :class:`Features`, the rows a
:class:`~.matcher.Matcher` compares, a gallery stores and a calibration scores (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Features:
    """Embedder outputs for N images: embedding (N, E), local (N, R, D), attention (N, P, h, w),
    marginal (N, R) (a rollout bundle's transport marginals)."""

    embedding: np.ndarray
    local: np.ndarray
    attention: np.ndarray | None = None
    marginal: np.ndarray | None = None

    def __getitem__(self, index) -> Features:
        index = slice(index, index + 1) if isinstance(index, int) or isinstance(index, np.integer) else index
        return Features(self.embedding[index], self.local[index],
                        None if self.attention is None else self.attention[index],
                        None if self.marginal is None else self.marginal[index])

    def __len__(self) -> int:
        return len(self.embedding)

    @classmethod
    def concat(cls, parts: Sequence[Features]) -> Features:
        """The rows of several Features, in order (attention and marginal kept when all have them)."""
        def join(name):
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(join("embedding"), join("local"), join("attention"), join("marginal"))
