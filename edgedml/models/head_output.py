"""The tuple every head (and every model) returns: plain tensors, shapes documented."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class HeadOutput(NamedTuple):
    """What a head returns for a batch of B feature maps (B, C, h, w).

    embedding: (B, D)     the global embedding, unit L2 norm; compared by cosine.
    local:     (B, R, Dl) L2-normalised local features of the R = grid² regions, for
                          structural matching (any head has them).
    attention: (B, P, h, w) the head's attention maps, P groups (grouping) or learners (ABE),
                          summing to 1 over positions (grouping) or in [0, 1] (ABE);
                          None for DIML.
    parts:     (B, P, D/P) the L2-normalised group or learner embeddings (their concatenation,
                          scaled by 1/√P, is ``embedding``); None for DIML.
    marginal:  (B, R)     each region's transport mass (summing to 1), for ``marginals="rollout"``;
                          None when the matcher computes the marginals itself.
    """

    embedding: Tensor
    local: Tensor
    attention: Tensor | None
    parts: Tensor | None
    marginal: Tensor | None = None
