"""edgedml: interpretable deep metric learning from research to devices.

``import edgedml`` is cheap: it imports neither torch nor onnxruntime. The heavy parts live in
sub-packages that are imported when used:

- ``edgedml.models``   (torch) backbones, heads, structural-matching math, configuration
- ``edgedml.training`` (torch) datasets, losses, the trainer and the retrieval evaluation
- ``edgedml.export``   (torch + onnx) ONNX graphs in every precision, validated bundles
- ``edgedml.runtime``  (numpy + OpenCV) the on-device matcher, gallery and calibration, and the
  TensorRT engines built and run on the device; never imports torch
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Matcher", "Gallery", "FaceResult", "MatchResult"]


def __getattr__(name: str):
    """``edgedml.Matcher``, ``edgedml.Gallery``... without importing the runtime (or anything
    heavy) at ``import edgedml``."""
    if name in __all__[1:]:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'edgedml' has no attribute {name!r}")
