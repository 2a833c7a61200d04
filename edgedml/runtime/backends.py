"""Inference backends behind one small interface: run a bundle's graph on named numpy inputs.

Every backend runs the graph set of one precision (``manifest.graphs[precision]``: fp32,
fp16, int8 or int8-cpu), and knows each graph's axis-0 limit (:class:`~.chunking.Limit`), which
:class:`~.matcher.Matcher` respects by splitting larger requests.

- ``onnxruntime``: providers TensorRT EP → CUDA EP → CPU, whichever this onnxruntime has. The
  TensorRT EP gets explicit profile shapes and keeps its engine and timing caches outside the
  checksummed bundle (``$EDGEDML_CACHE``, default ``~/.cache/edgedml``); its profile and the
  backend's chunking come from one :class:`~.chunking.Limit` per graph
  (:func:`tensorrt_ep_limits`), so no request exceeds the profile;
- ``opencv``: OpenCV's own DNN module (CPU, or CUDA / CUDA-FP16 targets where OpenCV is built
  with CUDA, as in JetPack; FP16 only for the fp16 graphs, :func:`opencv_cuda_target`): a
  runtime that needs nothing but numpy and OpenCV;
- ``tensorrt``: the bundle's native engines (:mod:`edgedml.runtime.tensorrt`). Not executed
  where this was developed (no TensorRT, no GPU).

Every backend opens its graph files through :meth:`~edgedml.bundle.Manifest.path` (inside the
bundle, checksummed), and a graph its runtime cannot load (a bad protobuf, an unknown opset) is a
one-line :class:`~edgedml.errors.BundleError`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..bundle import Manifest
from ..errors import BundleError, EdgeDMLError, MissingDependencyError
from .chunking import Limit

BACKENDS = ("onnxruntime", "opencv", "tensorrt")
GRAPHS = ("embedder", "matcher")
TENSORRT_EP_MAX = {"embedder": 8, "matcher": 100}  # the EP's profile where the graph sets no limit: batch, K
log = logging.getLogger("edgedml")


def graph_files(manifest: Manifest, precision: str) -> dict[str, str]:
    """{graph: file} of one precision, or a clear error for a precision the bundle lacks."""
    files = manifest.graph_sets.get(precision)
    if files is None:
        have = ", ".join(sorted(manifest.graph_sets))
        raise BundleError(f"this bundle has no {precision} graphs (it has {have}); re-export "
                          f"it with `edgedml export --precision {precision} ...` or pick one of those")
    return files


def graph_paths(bundle: Path, manifest: Manifest, precision: str) -> dict[str, Path]:
    """{graph: path} of one precision's graph files, each inside the bundle and checksummed
    (:meth:`~edgedml.bundle.Manifest.path`), or a one-line :class:`BundleError`."""
    manifest = rooted(manifest, bundle)
    return {graph: manifest.path(file, f"{precision} {graph} graph")
            for graph, file in graph_files(manifest, precision).items()}


def rooted(manifest: Manifest, bundle: Path) -> Manifest:
    """The manifest with the folder its files are opened from (a manifest built in code has none)."""
    return manifest if manifest.root is not None else dataclasses.replace(manifest, root=Path(bundle))


def load_error(file: str, runtime: str, exc: Exception, verb: str = "load") -> BundleError:
    """A runtime's failure to load (or run) a graph (bad protobuf, unknown opset or operator...)
    as one line."""
    text = str(exc)
    found = re.search(r"error: \(-?\d+:[^)]*\) ?(.*?)(?:\s*in function|$)", text, re.S)  # OpenCV's cv2.error
    if found:  # its cause, and the "> ..." lines OpenCV 5 appends
        detail = [line.strip("> \t") for line in text[found.end():].splitlines() if line.startswith(">")]
        text = " ".join(part for part in (found.group(1).strip(), *detail) if part)
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .*? failed:)?", "", text.strip())
    text = re.sub(r"^/\S+:\d+ .*?\) ", "", text)  # onnxruntime's C++ source location and signature
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    first = first if len(first) <= 240 else f"{first[:150]} … {first[-80:]}"  # the cause is often at the end
    return BundleError(f"{runtime} cannot {verb} the graph {file} ({first}); re-export the bundle with this edgedml, "
                       f"or use another backend or precision")


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
        files, paths = graph_files(manifest, precision), graph_paths(bundle, manifest, precision)
        profile = tensorrt_ep_limits(manifest)  # the TensorRT EP's profile, and then this backend's limits
        self.limits = graph_limits(manifest)
        self.sessions = {}
        for graph in GRAPHS:
            chosen = []
            for provider in wanted:
                if provider == "TensorrtExecutionProvider":
                    chosen.append((provider, tensorrt_ep_options(manifest, graph, files[graph], limit=profile[graph])))
                else:
                    chosen.append(provider)
            try:
                self.sessions[graph] = ort.InferenceSession(str(paths[graph]), options, providers=chosen)
            except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail...) derive from Exception only
                raise load_error(files[graph], "ONNX Runtime", exc) from exc
            if "TensorrtExecutionProvider" in self.sessions[graph].get_providers():
                self.limits[graph] = profile[graph]  # requests beyond the profile are chunked
        self.providers = self.sessions["embedder"].get_providers()
        self.precision = precision

    def run(self, graph, feeds):
        session = self.sessions[graph]  # InferenceSession.run is thread-safe
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds)))

    def describe(self) -> str:
        return f"onnxruntime {self.precision} ({', '.join(self.providers)})"


def tensorrt_ep_limits(manifest: Manifest, max_batch: int = TENSORRT_EP_MAX["embedder"],
                       max_candidates: int = TENSORRT_EP_MAX["matcher"]) -> dict[str, Limit]:
    """The axis-0 limit of each graph under ONNX Runtime's TensorRT execution provider: the
    graph's own (a fixed or limited export), else ``max_batch`` images / ``max_candidates``
    candidates. Both the provider's profile (:func:`tensorrt_ep_options`) and the backend's
    chunking use it, so no request exceeds the profile."""
    top = {"embedder": max_batch, "matcher": max_candidates}
    return {graph: limit if limit.size else Limit(top[graph], False) for graph, limit in graph_limits(manifest).items()}


def tensorrt_ep_options(manifest: Manifest, graph: str, file: str, max_batch: int = TENSORRT_EP_MAX["embedder"],
                        max_candidates: int = TENSORRT_EP_MAX["matcher"], limit: Limit | None = None) -> dict:
    """Options of ONNX Runtime's TensorRT execution provider for one graph: explicit profile
    shapes from the graph's :func:`tensorrt_ep_limits` (``limit``; so it builds one engine for
    the whole range instead of rebuilding per new shape), caches outside the bundle, and no
    fp16/int8 flags (the precision is in the graph, which ORT then builds as a strongly typed
    network)."""
    inputs = getattr(manifest, graph).inputs
    limit = limit or tensorrt_ep_limits(manifest, max_batch, max_candidates)[graph]
    top = limit.size
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
        files, paths = graph_files(manifest, precision), graph_paths(bundle, manifest, precision)
        self.files, self.limits = files, graph_limits(manifest)
        self.nets, self.outputs, self.locks = {}, {}, {}
        targets = {"cuda": cv2.dnn.DNN_TARGET_CUDA, "cuda_fp16": cv2.dnn.DNN_TARGET_CUDA_FP16}
        for graph in GRAPHS:
            try:
                net = cv2.dnn.readNetFromONNX(str(paths[graph]))
            except cv2.error as exc:
                raise load_error(files[graph], "OpenCV's DNN module", exc) from exc
            if net.empty():  # OpenCV 5 returns an empty net for operators it lacks, and fails only at run time
                raise load_error(files[graph], "OpenCV's DNN module", RuntimeError(
                    "it holds operators this OpenCV does not implement"))
            if cuda:
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                net.setPreferableTarget(targets[opencv_cuda_target(precision)])
            self.nets[graph] = net
            self.outputs[graph] = list(getattr(manifest, graph).outputs)
            self.locks[graph] = threading.Lock()  # a cv2.dnn.Net is not safe to share between threads
        self.target = "cuda" if cuda else "cpu"

    def run(self, graph, feeds):
        import cv2

        net = self.nets[graph]
        with self.locks[graph]:
            try:
                for name, value in feeds.items():
                    net.setInput(np.ascontiguousarray(value, dtype=np.float32), name)
                values = net.forward(self.outputs[graph])
            except cv2.error as exc:  # a graph OpenCV read but cannot run: one line, no decision
                raise load_error(self.files.get(graph, graph), "OpenCV's DNN module", exc, "run") from exc
        return dict(zip(self.outputs[graph], (np.asarray(v) for v in values)))

    def describe(self) -> str:
        return f"opencv dnn ({self.target})"


def opencv_cuda_target(precision: str) -> str:
    """OpenCV DNN's CUDA target for a graph set: "cuda_fp16" only for the fp16 set (whose
    matcher is always the fp16-safe log form), "cuda" for every other: an fp32 or INT8 set runs
    in fp32, as asked (the fp32 scaling-form matcher underflows in fp16)."""
    return "cuda_fp16" if precision == "fp16" else "cuda"


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
