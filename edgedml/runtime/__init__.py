"""The on-device runtime: numpy + OpenCV (+ one inference backend). Never imports torch.

- :class:`Matcher` (:mod:`.matcher`): embed, match and compare images with a bundle;
- :mod:`.backends`: ONNX Runtime, OpenCV DNN, or the bundle's TensorRT engines, which
  :mod:`.tensorrt` builds and checks on the device;
- :mod:`.gallery` (enrolled identities for access control), :mod:`.calibration` (decision
  thresholds, ``edgedml calibrate``) and :mod:`.explain` (region maps in pixels);
- :mod:`.image` and :mod:`.preprocess`: decoding and preprocessing, the pixels training sees.

``Matcher`` is imported on first use, so ``import edgedml.runtime`` stays cheap.
"""

from __future__ import annotations

__all__ = ["Matcher", "MatchResult", "Features"]


def __getattr__(name: str):
    if name in __all__:
        from . import matcher

        return getattr(matcher, name)
    raise AttributeError(f"module 'edgedml.runtime' has no attribute {name!r}")
