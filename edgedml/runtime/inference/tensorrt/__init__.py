"""TensorRT engines from a bundle's ONNX graphs, and the backend that runs them.

Precision lives in the ONNX graphs (``manifest.graphs[precision]``), so every network is
parsed *strongly typed* and built with no precision flag of any kind: the API surface used here
exists in TensorRT 10.x and in TensorRT 11.x, which removed weak typing. On 10.x the
``STRONGLY_TYPED`` creation flag is passed; on 11.x strong typing is always on and the flag is
deprecated, so none is passed.

Engines are specific to a GPU and a TensorRT version, so they are built where they run
(``edgedml build-engine --model BUNDLE --engine fp16``) and checked there against the ONNX Runtime
outputs stored in the bundle (``validation/``) before the manifest records them.

- :mod:`.gpu`: what this device offers (cuda-python's runtime, a CUDA GPU, TensorRT);
- :mod:`.build`: building one engine, and a bundle's engines of one precision;
- :mod:`.check`: the built engines against ONNX Runtime's stored outputs;
- :mod:`.backend`: :class:`TensorRTBackend`, which runs the engines.

Imports only numpy and the torch-free parts of edgedml; tensorrt and cuda-python are imported
when used: it runs on a device that has no torch and no onnx.
"""

from __future__ import annotations

from .backend import TensorRTBackend
from .build import build_engine, build_engines, timing_cache_path
from .gpu import EngineUnavailable, availability, cudart, gpu_info

__all__ = ["EngineUnavailable", "TensorRTBackend", "availability", "build_engine", "build_engines", "cudart",
           "gpu_info", "timing_cache_path"]
