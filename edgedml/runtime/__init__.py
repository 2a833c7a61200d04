"""The on-device runtime: numpy + OpenCV (+ one inference backend). Never imports torch.

Five rooms, each using only those listed before it, but for :mod:`.assurance.thresholds`, which
uses nothing in the runtime and which the matcher and the gallery use to decide:

- :mod:`.inference`: decoding, preprocessing, the bundle's graphs and the backends that run them
  (ONNX Runtime, OpenCV DNN, TensorRT engines built and checked on the device);
- :mod:`.faces`: YuNet detection and the view of a face the embedder sees, mapped back to the frame;
- :mod:`.matching`: :class:`Matcher` and its small typed results (:class:`MatchResult`,
  :class:`FaceResult`), the structural mirror, :class:`Explanation` and its pictures;
- :mod:`.gallery`: :class:`Gallery` (1:1 verify, 1:N identify, its :class:`Decision` and the logged
  :class:`LoggedDecision`), the SQLite and PostgreSQL stores, the search index;
- :mod:`.assurance`: thresholds, ``edgedml calibrate`` and the faithfulness of explanations
  (``Matcher.faithfulness`` imports it when called).

Beside them: :mod:`.shipped` (the bundles that install with the package) and :mod:`.lifecycle`
(:class:`ClosedError`). The public names below are importable from here and from ``edgedml``;
everything is imported on first use, so ``import edgedml.runtime`` stays cheap (no OpenCV, no
ONNX Runtime).
"""

from __future__ import annotations

_WHERE = {"Matcher": "matching.matcher", "Features": "matching.features", "MatchResult": "matching.results",
          "RegionMatch": "matching.results", "Explanation": "matching.explanation",
          "FaceResult": "matching.face_result", "Gallery": "gallery.gallery", "Decision": "gallery.gallery",
          "Candidate": "gallery.gallery", "GalleryError": "gallery.store", "LoggedDecision": "gallery.decision_log",
          "ClosedError": "lifecycle"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'edgedml.runtime' has no attribute {name!r}")
