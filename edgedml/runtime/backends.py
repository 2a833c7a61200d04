"""Inference backends behind one small interface: run a bundle's graph on named numpy inputs.

Every backend runs the graph set of one precision (``manifest.graphs[precision]``: fp32,
fp16, int8 or int8-cpu), and knows each graph's axis-0 limit (:class:`~.chunking.Limit`), which
:class:`~.matcher.Matcher` respects by splitting larger requests.

- ``onnxruntime``: providers TensorRT EP → CUDA EP → CPU, whichever this onnxruntime has. The
  TensorRT EP gets explicit profile shapes and keeps its engine and timing caches outside the
  checksummed bundle (``$EDGEDML_CACHE``, default ``~/.cache/edgedml``);
- ``opencv``: OpenCV's own DNN module (CPU, or CUDA / CUDA-FP16 targets where OpenCV is built
  with CUDA, as in JetPack): a runtime that needs nothing but numpy and OpenCV;
- ``tensorrt``: the bundle's native engines (:mod:`edgedml.runtime.tensorrt`). Not executed
  where this was developed (no TensorRT, no GPU).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path

import numpy as np

from ..bundle import Manifest
from ..errors import BundleError, EdgeDMLError, MissingDependencyError
from .chunking import Limit

BACKENDS = ("onnxruntime", "opencv", "tensorrt")
GRAPHS = ("embedder", "matcher")
log = logging.getLogger("edgedml")


def graph_files(manifest: Manifest, precision: str) -> dict[str, str]:
    """{graph: file} of one precision, or a clear error for a precision the bundle lacks."""
    files = manifest.graph_sets.get(precision)
    if files is None:
        have = ", ".join(sorted(manifest.graph_sets))
        raise BundleError(f"this bundle has no {precision} graphs (it has {have}); re-export "
                          f"it with `edgedml export --precision {precision} ...` or pick one of those")
    return files


def graph_limits(manifest: Manifest) -> dict[str, Limit]:
    """The exported graphs' axis-0 limits (none for dynamic axes)."""
    return {g: Limit.from_dict(manifest.limits.get(g)) for g in GRAPHS}


def cache_dir() -> Path:
    """Where engine and timing caches live: outside any bundle, so a checksummed or read-only
    bundle stays untouched."""
    return Path(os.environ.get("EDGEDML_CACHE") or Path.home() / ".cache" / "edgedml")


class Backend:
    """``run(graph, feeds)``: graph is "embedder" or "matcher"; feeds map input names to float32
    arrays; returns {output name: array}. Implementations are safe to call from several threads."""

    name = "base"
    limits: dict[str, Limit] = {}

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, bundle: Path, manifest: Manifest, precision: str = "fp32", providers: list[str] | None = None,
                 threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", "the ONNX Runtime backend", "export") from exc
        available = ort.get_available_providers()
        wanted = providers or [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        files = graph_files(manifest, precision)
        self.limits = graph_limits(manifest)
        self.sessions = {}
        for graph in GRAPHS:
            chosen = []
            for provider in wanted:
                if provider == "TensorrtExecutionProvider":
                    chosen.append((provider, tensorrt_ep_options(manifest, graph, files[graph])))
                else:
                    chosen.append(provider)
            self.sessions[graph] = ort.InferenceSession(str(bundle / files[graph]), options, providers=chosen)
        self.providers = self.sessions["embedder"].get_providers()
        self.precision = precision

    def run(self, graph, feeds):
        session = self.sessions[graph]  # InferenceSession.run is thread-safe
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds)))

    def describe(self) -> str:
        return f"onnxruntime {self.precision} ({', '.join(self.providers)})"


def tensorrt_ep_options(manifest: Manifest, graph: str, file: str, max_batch: int = 8, max_candidates: int = 100) -> dict:
    """Options of ONNX Runtime's TensorRT execution provider for one graph: explicit profile
    shapes (so it builds one engine for the whole range instead of rebuilding per new shape),
    caches outside the bundle, and no fp16/int8 flags (the precision is in the graph, which
    ORT then builds as a strongly typed network)."""
    inputs = getattr(manifest, graph).inputs
    limit = graph_limits(manifest)[graph]
    top = limit.size if limit.size else (max_batch if graph == "embedder" else max_candidates)
    low = top if limit.fixed else 1

    def shapes(first: int) -> str:
        parts = []
        for name, dims in inputs.items():
            dims = [first if isinstance(d, str) else d for d in dims]
            parts.append(f"{name}:{'x'.join(str(d) for d in dims)}")
        return ",".join(parts)

    entry = manifest.files.get(file)
    cache = cache_dir() / "ort-tensorrt" / (entry.sha256 if entry else file)[:16]
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir() / "ort-tensorrt"),
            "trt_profile_min_shapes": shapes(low), "trt_profile_opt_shapes": shapes(max(low, top // 2)),
            "trt_profile_max_shapes": shapes(top)}


class OpenCVBackend(Backend):
    name = "opencv"

    def __init__(self, bundle: Path, manifest: Manifest, precision: str = "fp32", cuda: bool | None = None):
        import cv2

        if cuda is None:
            try:
                cuda = cv2.cuda.getCudaEnabledDeviceCount() > 0
            except Exception:  # OpenCV built without its CUDA module
                cuda = False
        files = graph_files(manifest, precision)
        self.limits = graph_limits(manifest)
        self.nets, self.outputs, self.locks = {}, {}, {}
        for graph in GRAPHS:
            try:
                net = cv2.dnn.readNetFromONNX(str(bundle / files[graph]))
            except cv2.error as exc:
                raise BundleError(f"OpenCV's DNN module cannot read {files[graph]} ({str(exc).strip()[:120]}); use "
                                  f"backend='onnxruntime' or another precision") from exc
            if cuda:
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                # fp16 only for the embedder: the scaling-form matcher underflows in fp16
                fp16 = graph == "embedder" or precision == "fp16" or manifest.matcher.form == "log"
                net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA_FP16 if fp16 else cv2.dnn.DNN_TARGET_CUDA)
            self.nets[graph] = net
            self.outputs[graph] = list(getattr(manifest, graph).outputs)
            self.locks[graph] = threading.Lock()  # a cv2.dnn.Net is not safe to share between threads
        self.target = "cuda" if cuda else "cpu"

    def run(self, graph, feeds):
        net = self.nets[graph]
        with self.locks[graph]:
            for name, value in feeds.items():
                net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
            values = net.forward(self.outputs[graph])
        return dict(zip(self.outputs[graph], (np.asarray(v) for v in values)))

    def describe(self) -> str:
        return f"opencv dnn ({self.target})"


def _tensorrt(bundle: Path, manifest: Manifest, precision: str) -> Backend:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(bundle, manifest, precision)


def create_backend(bundle: Path, manifest: Manifest, name: str = "auto", precision: str = "fp32") -> Backend:
    """The named backend for one precision's graphs, or with "auto" the best available:
    TensorRT engines where the bundle has them for that precision and TensorRT imports, then
    ONNX Runtime, then OpenCV DNN. When engines exist but cannot be loaded here (another GPU or
    TensorRT version, no cuda-python), "auto" warns in one line and falls back."""
    if name not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {name!r}; choose auto or one of {list(BACKENDS)}")
    graph_files(manifest, precision)  # a clear error for a precision the bundle lacks
    if name == "onnxruntime":
        return OnnxRuntimeBackend(bundle, manifest, precision)
    if name == "opencv":
        return OpenCVBackend(bundle, manifest, precision)
    if name == "tensorrt":
        return _tensorrt(bundle, manifest, precision)
    if precision in manifest.engines and importlib.util.find_spec("tensorrt") is not None:
        try:
            return _tensorrt(bundle, manifest, precision)
        except (EdgeDMLError, ImportError, RuntimeError, OSError) as exc:
            log.warning("edgedml: TensorRT engines not usable here (%s); falling back to ONNX Runtime",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if importlib.util.find_spec("onnxruntime") is not None:
        return OnnxRuntimeBackend(bundle, manifest, precision)
    return OpenCVBackend(bundle, manifest, precision)
