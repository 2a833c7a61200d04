"""The on-device runtime: numpy + OpenCV (+ one inference backend). Never imports torch.

- :class:`Matcher` (:mod:`.matcher`): embed, match and compare images with a bundle; its
  results are small typed objects: :class:`MatchResult` (:mod:`.results`), :class:`Explanation`
  (:mod:`.explanation`, the picture of why) and :class:`FaceResult` (:mod:`.faces`, one face
  detected, cut and embedded);
- :mod:`.backends`: ONNX Runtime (its providers and threads), OpenCV DNN, or the bundle's
  TensorRT engines, which :mod:`.tensorrt` builds and checks on the device;
- :class:`Gallery` (:mod:`.gallery`: enrolled identities for access control; its
  :class:`Decision` and the logged :class:`LoggedDecision`), :mod:`.calibration` (decision
  thresholds, ``edgedml calibrate``) and :mod:`.explain` (region maps in pixels);
- :mod:`.image` and :mod:`.preprocess`: decoding and preprocessing, the pixels training sees.

Everything here is imported on first use, so ``import edgedml.runtime`` stays cheap (no OpenCV,
no ONNX Runtime).
"""

from __future__ import annotations

_WHERE = {"Matcher": "matcher", "Features": "matcher", "MatchResult": "results", "RegionMatch": "results",
          "Explanation": "explanation", "FaceResult": "faces", "Gallery": "gallery", "Decision": "gallery",
          "Candidate": "gallery", "GalleryError": "gallery_store", "LoggedDecision": "decision_log",
          "ClosedError": "lifecycle"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'edgedml.runtime' has no attribute {name!r}")
