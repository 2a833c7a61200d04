"""The on-device runtime: numpy + OpenCV (+ one inference backend). Never imports torch.

``Matcher`` is imported on first use, so ``import edgedml.runtime`` stays cheap.
"""

from __future__ import annotations

__all__ = ["Matcher", "MatchResult", "Features"]


def __getattr__(name: str):
    if name in __all__:
        from . import matcher

        return getattr(matcher, name)
    raise AttributeError(f"module 'edgedml.runtime' has no attribute {name!r}")
