"""Inference backends behind one small interface: run a bundle's graph on named numpy inputs.

Every backend runs the graph set of one precision (``manifest.graphs[precision]``: fp32,
fp16, int8 or int8-cpu), and knows each graph's axis-0 limit (:class:`~.chunking.Limit`), which
:class:`~..matching.matcher.Matcher` respects by splitting larger requests.

- ``onnxruntime``: the execution providers asked for (:func:`ort_providers`: full names such as
  ``"CUDAExecutionProvider"`` or short ones such as ``"cuda"``; one this onnxruntime lacks is a
  one-line :class:`~edgedml.errors.ConfigError` naming those it has), by default CUDA EP → CPU,
  whichever this onnxruntime has, and ``threads`` intra-op threads per session. ONNX Runtime's
  TensorRT EP runs only when asked for (``providers=["tensorrt", "cuda", "cpu"]``): it gets
  explicit profile shapes and keeps its engine and timing caches outside the checksummed bundle
  (``$EDGEDML_CACHE``, default ``~/.cache/edgedml``); its profile and the backend's chunking come
  from one :class:`~.chunking.Limit` per graph
  (:func:`tensorrt_ep_limits`), so no request exceeds the profile;
- ``opencv``: OpenCV's own DNN module (CPU, or CUDA / CUDA-FP16 targets where OpenCV is built
  with CUDA, as in JetPack; FP16 only for the fp16 graphs, :func:`opencv_cuda_target`): a
  runtime that needs nothing but numpy and OpenCV. Its thread count is process-wide
  (``cv2.setNumThreads``), so this backend refuses ``threads`` rather than change it behind the
  caller's back;
- ``tensorrt``: the bundle's native engines (:mod:`edgedml.runtime.inference.tensorrt`). Not executed
  where this was developed (no TensorRT, no GPU).

Every backend opens its graph files through :meth:`~edgedml.bundle.Manifest.path` (inside the
bundle, checksummed), and a graph its runtime cannot load (a bad protobuf, an unknown opset) is a
one-line :class:`~edgedml.errors.BundleError`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from ...bundle import Manifest
from ...errors import ConfigError, EdgeDMLError, MissingDependencyError
from .chunking import Limit
from .graphs import GRAPHS, Backend, cache_dir, graph_files, graph_limits, graph_paths, load_error
from .opencv_backend import OpenCVBackend

BACKENDS = ("onnxruntime", "opencv", "tensorrt")
TENSORRT_EP_MAX = {"embedder": 8, "matcher": 100}  # the EP's profile where the graph sets no limit: batch, K
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")  # TensorRT EP only when asked for
log = logging.getLogger(__name__)


def check_threads(threads) -> int | None:
    """``threads``: None (the runtime's default) or a whole number ≥ 1, else one-line ConfigError."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads must be a whole number ≥ 1 (or None for ONNX Runtime's default), got {threads!r}")
    return int(threads)


def ort_providers(providers, available: list[str], known: list[str]) -> list:
    """The execution providers asked for → ONNX Runtime's names, in order; each entry a name or
    (name, options dict). A name may be short and in any case: "cuda" → CUDAExecutionProvider,
    "tensorrt" → TensorrtExecutionProvider, "cpu" → CPUExecutionProvider. A provider ONNX Runtime
    does not know, or this installation lacks, is a one-line :class:`ConfigError` naming the
    available ones. None: :data:`DEFAULT_PROVIDERS` this installation has (never the TensorRT EP)."""
    if providers is None:
        return [p for p in DEFAULT_PROVIDERS if p in available]
    if isinstance(providers, (str, tuple)) or not isinstance(providers, (list,)) or not providers:
        raise ConfigError(f"providers must be a non-empty list such as ['CUDAExecutionProvider', "
                          f"'CPUExecutionProvider'], got {providers!r}; available here: {', '.join(available)}")
    chosen, seen = [], set()
    for entry in providers:
        options = None
        if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], dict):
            entry, options = entry
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"each provider is a name (or a (name, options) pair), got {entry!r}; available here: "
                              f"{', '.join(available)}")
        name = _provider_name(entry, known + [p for p in available if p not in known])
        if name is None:
            raise ConfigError(f"unknown ONNX Runtime execution provider {entry!r}; available here: "
                              f"{', '.join(available)}")
        if name not in available:
            raise ConfigError(f"the execution provider {name} is not available in this onnxruntime "
                              f"(install the onnxruntime build that has it); available here: {', '.join(available)}")
        if name in seen:
            raise ConfigError(f"the execution provider {name} is listed twice; list each once, in order of preference "
                              f"(available here: {', '.join(available)})")
        seen.add(name)
        chosen.append(name if options is None else (name, dict(options)))
    return chosen


def _provider_name(entry: str, names: list[str]) -> str | None:
    """ONNX Runtime's name of a provider given in full or short ("cuda"), any case; None if unknown."""
    for candidate in (entry, f"{entry}ExecutionProvider"):
        for name in names:
            if name.lower() == candidate.lower():
                return name
    return None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, bundle: Path, manifest: Manifest, precision: str = "fp32", providers: list | None = None,
                 threads: int | None = None):
        """``providers``: ONNX Runtime's execution providers in order of preference
        (:func:`ort_providers`; default CUDA → CPU where available, the TensorRT EP only when
        listed); ``threads``: intra-op threads of each session (default: ONNX Runtime's, one per
        physical core)."""
        threads = check_threads(threads)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", "the ONNX Runtime backend", "ort") from exc
        available = ort.get_available_providers()
        known = list(ort.get_all_providers()) if hasattr(ort, "get_all_providers") else list(available)
        wanted = ort_providers(providers, available, known)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.threads = threads
        files, paths = graph_files(manifest, precision), graph_paths(bundle, manifest, precision)
        profile = tensorrt_ep_limits(manifest)  # the TensorRT EP's profile, and then this backend's limits
        self.limits = graph_limits(manifest)
        self.sessions = {}
        for graph in GRAPHS:
            chosen = []
            for provider in wanted:
                if provider == "TensorrtExecutionProvider":  # the bundle's profile and caches, then the caller's
                    chosen.append((provider, tensorrt_ep_options(manifest, graph, files[graph], limit=profile[graph])))
                elif isinstance(provider, tuple) and provider[0] == "TensorrtExecutionProvider":
                    chosen.append((provider[0], {**tensorrt_ep_options(manifest, graph, files[graph],
                                                                        limit=profile[graph]), **provider[1]}))
                else:
                    chosen.append(provider)
            try:
                self.sessions[graph] = ort.InferenceSession(str(paths[graph]), options, providers=chosen)
            except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail...) derive from Exception only
                raise load_error(files[graph], "ONNX Runtime", exc) from exc
            if "TensorrtExecutionProvider" in self.sessions[graph].get_providers():
                self.limits[graph] = profile[graph]  # requests beyond the profile are chunked
            asked = [p if isinstance(p, str) else p[0] for p in wanted]
            dropped = [p for p in asked if p not in self.sessions[graph].get_providers()]
            if providers is not None and dropped:  # ONNX Runtime falls back silently; an explicit request must not
                raise ConfigError(f"ONNX Runtime could not start {', '.join(dropped)} for the {graph} graph (a missing "
                                  f"CUDA/TensorRT library or GPU?); it would run on "
                                  f"{', '.join(self.sessions[graph].get_providers())}: fix the install or leave "
                                  f"{dropped[0]} out of providers")
        self.providers = self.sessions["embedder"].get_providers()
        self.precision = precision

    def run(self, graph, feeds):
        self._check_open()
        session = self.sessions[graph]  # InferenceSession.run is thread-safe
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds)))

    def describe(self) -> str:
        threads = f", threads={self.threads}" if self.threads else ""
        return f"onnxruntime {self.precision} ({', '.join(self.providers)}{threads})"

    def close(self) -> None:
        self.closed = True
        self.sessions = {}  # ONNX Runtime frees a session's memory when the last reference goes


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


def _tensorrt(bundle: Path, manifest: Manifest, precision: str) -> Backend:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(bundle, manifest, precision)


def create_backend(bundle: Path, manifest: Manifest, name: str = "auto", precision: str = "fp32",
                   providers: list | None = None, threads: int | None = None) -> Backend:
    """The named backend for one precision's graphs, or with "auto" the best available:
    TensorRT engines where the bundle has them for that precision and TensorRT imports, then
    ONNX Runtime, then OpenCV DNN. When engines exist but cannot be loaded here (another GPU or
    TensorRT version, no cuda-python), "auto" warns in one line and falls back.

    ``providers`` and ``threads`` are ONNX Runtime's (:class:`OnnxRuntimeBackend`): with "auto"
    they choose ONNX Runtime; with "opencv" or "tensorrt" they are refused in one line (OpenCV's
    thread count is process-wide: set it yourself with ``cv2.setNumThreads``)."""
    if name not in ("auto", *BACKENDS):
        raise ConfigError(f"unknown backend {name!r}; choose auto or one of {list(BACKENDS)}")
    threads = check_threads(threads)
    ort_options = providers is not None or threads is not None
    if ort_options and name in ("opencv", "tensorrt"):
        given = " and ".join(w for w, v in (("providers", providers), ("threads", threads)) if v is not None)
        hint = ("OpenCV's thread count is process-wide: call cv2.setNumThreads(N) yourself"
                if name == "opencv" else "TensorRT engines run on the GPU")
        raise ConfigError(f"{given} apply to the onnxruntime backend, not {name} ({hint}); use "
                          f"backend='onnxruntime' or leave them out")
    graph_files(manifest, precision)  # a clear error for a precision the bundle lacks
    if name == "onnxruntime" or ort_options:
        return OnnxRuntimeBackend(bundle, manifest, precision, providers, threads)
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
