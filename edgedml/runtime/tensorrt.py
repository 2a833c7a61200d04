"""TensorRT engines from a bundle's ONNX graphs, and the backend that runs them.

Precision lives in the ONNX graphs (``manifest["graphs"][precision]``), so every network is
parsed *strongly typed* and built with no precision flag of any kind: the API surface used here
exists in TensorRT 10.x and in TensorRT 11.x, which removed weak typing. On 10.x the
``STRONGLY_TYPED`` creation flag is passed; on 11.x strong typing is always on and the flag is
deprecated, so none is passed.

Engines are specific to a GPU and a TensorRT version, so they are built where they run
(``edgedml build-engine BUNDLE --engine fp16``) and checked there against the ONNX Runtime
outputs stored in the bundle (``validation/``) before the manifest records them.

Imports only numpy, tensorrt, cuda-python and the torch-free parts of edgedml: it runs on a
device that has no torch and no onnx.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from ..bundle import read_manifest, write_manifest
from ..errors import BundleError, EdgeDMLError, MissingDependencyError
from .agreement import EMBEDDING_COSINE, SCORE_TOL, row_cosines
from .backends import GRAPHS, cache_dir
from .chunking import Limit, run_in_chunks

WORKSPACE_BYTES = 1 << 30
CPU_ONLY = ("int8-cpu",)
MATCHER_CHECKED = ("structural", "multiscale")
FIX_HINT = 'pip install "edgedml[gpu]"'


class EngineUnavailable(EdgeDMLError):
    """TensorRT, cuda-python or a CUDA GPU is missing here; the ONNX bundle is still complete."""


def cudart():
    """cuda-python's CUDA runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6, 13),
    else the older ``cuda.cudart``; raises :class:`EngineUnavailable` when neither imports."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6
        except ImportError as exc:
            raise EngineUnavailable(f"cuda-python is not installed here. Fix: {FIX_HINT}") from exc
    return runtime


def _call(result, what: str):
    """Unpack a cuda-python call's ``(error, *values)``; raise on a CUDA error."""
    parts = result if isinstance(result, tuple) else (result,)
    if int(parts[0]) != 0:
        raise RuntimeError(f"CUDA error in {what}: {parts[0]}")
    if len(parts) == 1:
        return None
    return parts[1] if len(parts) == 2 else parts[1:]


def gpu_info() -> dict:
    """Name and compute capability of GPU 0, or raise :class:`EngineUnavailable`."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise EngineUnavailable("no CUDA GPU is visible here")
    err, props = rt.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise EngineUnavailable(f"the CUDA GPU cannot be queried ({err})")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.strip("\x00").strip(), "compute_capability": f"{props.major}.{props.minor}"}


def availability() -> str | None:
    """None when tensorrt imports and a CUDA GPU is visible, else one sentence saying what is missing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return f"TensorRT is not installed here (fix: {FIX_HINT})"
    try:
        gpu_info()
    except EngineUnavailable as exc:
        return str(exc)
    return None


def _tensorrt(feature: str):
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", feature, "gpu") from exc
    return trt


def _major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_engine(onnx_path: str | Path, engine_path: str | Path, shapes: dict[str, tuple],
                 timing_cache: str | Path, tf32: bool, *, precision: str | None = None) -> dict:
    """Parse ``onnx_path`` into a strongly typed network, build a serialized engine with one
    optimisation profile (``shapes``: input name → (min, opt, max) shapes) and write it to
    ``engine_path``. ``tf32=False`` clears the TF32 builder flag (fp32 matmuls stay fp32).
    ``timing_cache`` is read when present and rewritten after the build (a cache that cannot be
    written is not an error). Returns the build facts for the manifest."""
    trt = _tensorrt("building TensorRT engines")
    onnx_path, engine_path, timing_cache = Path(onnx_path), Path(engine_path), Path(timing_cache)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # 10.x: ask for strong typing; >= 11: always strongly typed, the flag is deprecated.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if _major(trt) < 11 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgeDMLError(f"TensorRT could not parse {onnx_path.name}: " + "; ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, tuple(low), tuple(opt), tuple(high))
    config.add_optimization_profile(profile)
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        # an unreadable cache, or one from another GPU / TensorRT: start a fresh one
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeDMLError(f"TensorRT failed to build an engine from {onnx_path.name}; see its log above")
    seconds = time.perf_counter() - started
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    try:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    except OSError:  # a read-only home: the next build is slower, nothing else
        pass
    return {"file": engine_path.name, "onnx": onnx_path.name, "precision": precision,
            "tensorrt": str(trt.__version__), "build_seconds": round(seconds, 1),
            "profile": {k: [list(map(int, s)) for s in v] for k, v in shapes.items()},
            "tf32": bool(tf32), "strongly_typed": True, **gpu_info()}


def timing_cache_path() -> Path:
    """The TensorRT timing cache, outside every bundle: ``$EDGEDML_CACHE/tensorrt/timing.cache``
    (default ``~/.cache/edgedml``)."""
    return cache_dir() / "tensorrt" / "timing.cache"


def _profile(inputs: dict[str, list], low: int, opt: int, high: int) -> dict[str, tuple]:
    """(min, opt, max) shapes: every named (dynamic) dimension of ``inputs`` gets low/opt/high."""
    def fill(shape, value):
        return tuple(value if isinstance(d, str) or d is None else int(d) for d in shape)

    return {name: (fill(shape, low), fill(shape, opt), fill(shape, high)) for name, shape in inputs.items()}


def _embedder_limit(manifest: dict, max_batch: int, log) -> Limit:
    graph = Limit.from_dict((manifest.get("limits") or {}).get("embedder"))
    first = manifest["embedder"]["inputs"]["images"][0]
    if not graph.fixed and isinstance(first, int):  # a static batch without a recorded limit
        graph = Limit(first, True)
    if graph.fixed:
        if graph.size is None or graph.size < 1:
            raise BundleError("the embedder is marked fixed-size without a size; re-export the bundle")
        return graph
    if graph.size is not None and max_batch > graph.size:
        log(f"the embedder graph accepts at most {graph.size} images: max_batch {max_batch} -> {graph.size}")
        max_batch = graph.size
    return Limit(max_batch, False)


def _engine_check(backend: "TensorRTBackend", root: Path, manifest: dict, precision: str) -> tuple[dict, list[str]]:
    """Run the engines on the bundle's stored validation inputs; compare with ONNX Runtime's
    stored outputs of the same precision. Returns (numbers, failures)."""
    stored = manifest["validation_inputs"]
    with np.load(root / stored["inputs"], allow_pickle=False) as data:
        inputs = {k: data[k] for k in data.files}
    with np.load(root / stored["outputs"][precision], allow_pickle=False) as data:
        want = {k: data[k] for k in data.files}
    embedded = run_in_chunks(lambda f: backend.run("embedder", f), {"images": inputs["images"].astype(np.float32)},
                             ("images",), backend.limits["embedder"])
    feeds = {k: inputs[k].astype(np.float32) for k in manifest["matcher"]["inputs"]}
    matched = run_in_chunks(lambda f: backend.run("matcher", f), feeds, ("candidate_local", "candidate_embedding"),
                            backend.limits["matcher"])
    check: dict = {"embedder": {}, "matcher": {}, "reference": f"onnxruntime {precision} outputs",
                   "bounds": {"embedding_cosine_mean": EMBEDDING_COSINE[precision],
                              "matcher_max_abs_diff": SCORE_TOL}}
    failures = []
    for graph, got in (("embedder", embedded), ("matcher", matched)):
        for name, value in got.items():
            if not np.isfinite(value).all():
                failures.append(f"the {graph} engine's output '{name}' holds inf or NaN")
            ref = want.get(f"{graph}.{name}")
            if ref is None:
                continue
            if ref.shape != value.shape:
                failures.append(f"the {graph} engine's output '{name}' has shape {value.shape}, "
                                f"ONNX Runtime's {ref.shape}")
                continue
            if graph == "embedder":
                cos = row_cosines(value, ref)
                check[graph][f"{name}_cosine_mean"] = float(cos.mean())
                check[graph][f"{name}_cosine_min"] = float(cos.min())
            else:
                check[graph][f"max_abs_diff_{name}"] = float(np.abs(value.astype(np.float64) - ref).max())
    bound = check["bounds"]["embedding_cosine_mean"]
    cosine = check["embedder"].get("embedding_cosine_mean")
    if cosine is None:
        failures.append("the embedder has no 'embedding' output to compare with ONNX Runtime")
    elif not cosine >= bound:
        failures.append(f"embedding cosine mean {cosine:.5f} against ONNX Runtime {precision} is below {bound}")
    for name in MATCHER_CHECKED:
        diff = check["matcher"].get(f"max_abs_diff_{name}")
        if diff is None:
            failures.append(f"the matcher has no '{name}' output to compare with ONNX Runtime")
        elif not diff <= SCORE_TOL:
            failures.append(f"matcher '{name}' differs from ONNX Runtime {precision} by {diff:.3g} "
                            f"(bound {SCORE_TOL})")
    check["finite"] = not any("inf or NaN" in f for f in failures)
    check["passed"] = not failures
    return check, failures


def build_engines(bundle: str | Path, precision: str = "fp16", max_batch: int = 8, max_candidates: int = 100,
                  log=print) -> dict:
    """Build the embedder and matcher engines of one precision of a bundle, check them against
    the ONNX Runtime outputs stored in the bundle, and record them in its manifest under
    ``engines[precision]``. Returns that entry. A failed check deletes the new engines and
    leaves the manifest untouched."""
    root = Path(bundle)
    manifest = read_manifest(root)
    graphs = manifest.get("graphs") or {}
    gpu_precisions = [p for p in graphs if p not in CPU_ONLY]
    if precision in CPU_ONLY:
        raise EdgeDMLError(f"'{precision}' graphs are for CPUs (ONNX Runtime), not TensorRT; build an engine "
                           f"from one of {gpu_precisions}")
    if precision not in graphs:
        raise EdgeDMLError(f"the bundle {root} has no {precision} graphs (it has {gpu_precisions}); re-export it "
                           f"with that precision or build one of those")
    if max_batch < 1 or max_candidates < 1:
        raise ValueError("max_batch and max_candidates must be at least 1")
    stored = manifest.get("validation_inputs") or {}
    if "inputs" not in stored or precision not in (stored.get("outputs") or {}):
        raise BundleError(f"the bundle {root} has no stored validation outputs for {precision}, so its engines "
                          f"cannot be checked; re-export the bundle")
    reason = availability()
    if reason:
        raise EngineUnavailable(f"{reason}: the ONNX bundle in {root} is complete; build the engines on the "
                                f"target with `edgedml build-engine {root} --engine {precision}`")

    embedder = _embedder_limit(manifest, max_batch, log)
    matcher = Limit.from_dict((manifest.get("limits") or {}).get("matcher"))
    if matcher.fixed:
        raise BundleError("the matcher graph is fixed-size; TensorRT engines need a dynamic K: re-export it")
    if matcher.size is not None and max_candidates > matcher.size:
        log(f"the matcher graph accepts at most {matcher.size} candidates: max_candidates -> {matcher.size}")
        max_candidates = matcher.size
    matcher = Limit(max_candidates, False)
    if embedder.fixed:
        emb_shapes = _profile(manifest["embedder"]["inputs"], embedder.size, embedder.size, embedder.size)
    else:
        emb_shapes = _profile(manifest["embedder"]["inputs"], 1, max(1, embedder.size // 2), embedder.size)
    match_shapes = _profile(manifest["matcher"]["inputs"], 1, max(1, max_candidates // 2), max_candidates)

    engines_dir = root / "engines"
    engines_dir.mkdir(exist_ok=True)
    cache = timing_cache_path()
    final = {g: engines_dir / f"{g}.{precision}.engine" for g in GRAPHS}
    # built under a temporary name (write_manifest skips *.tmp): a failed build or check never
    # replaces or deletes engines that the manifest already records
    staged = {g: p.with_name(p.name + ".tmp") for g, p in final.items()}
    limits = {"embedder": embedder.to_dict(), "matcher": matcher.to_dict()}
    try:
        facts = {}
        for graph, shapes, tf32 in (("embedder", emb_shapes, True), ("matcher", match_shapes, False)):
            log(f"building the {graph} engine ({precision}, from {graphs[precision][graph]})")
            facts[graph] = build_engine(root / graphs[precision][graph], staged[graph], shapes, cache, tf32,
                                        precision=precision)
            facts[graph]["file"] = final[graph].name
        trial = dict(manifest)
        trial["engines"] = {precision: {g: {**facts[g], "file": staged[g].name} for g in GRAPHS}
                            | {"limits": limits}}
        log("checking the engines against the stored ONNX Runtime outputs")
        backend = TensorRTBackend(root, trial, precision)
        try:
            check, failures = _engine_check(backend, root, manifest, precision)
        finally:
            backend.close()
        if failures:
            raise EdgeDMLError(f"the {precision} TensorRT engines failed their check and were deleted "
                               f"(manifest unchanged): " + "; ".join(failures))
        for graph in GRAPHS:
            os.replace(staged[graph], final[graph])
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    entry = {"embedder": facts["embedder"], "matcher": facts["matcher"], "check": check, "limits": limits}
    body = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "files")}
    body["engines"] = {**(manifest.get("engines") or {}), precision: entry}
    write_manifest(root, body)
    log(f"{precision} engines built and checked: {check['embedder']} {check['matcher']}")
    return entry


class TensorRTBackend:
    """A bundle's TensorRT engines of one precision (same interface as ``backends.Backend``).

    One execution context, CUDA stream and lock per graph; device buffers for every input and
    output are allocated once, at the profile's maximum shapes, and reused by every call.
    ``limits`` holds the largest batch (embedder) and K (matcher) the engines accept."""

    name = "tensorrt"

    def __init__(self, bundle: Path, manifest: dict, precision: str = "fp32"):
        bundle = Path(bundle)
        recorded = manifest.get("engines") or {}
        engines = recorded.get(precision) or {}
        if not all(isinstance(engines.get(g), dict) and engines[g].get("file") for g in GRAPHS):
            have = sorted(recorded) if recorded else "none"
            raise BundleError(f"{bundle} has no TensorRT {precision} engines (it has: {have}); build them on this "
                              f"device with `edgedml build-engine {bundle} --engine {precision}`")
        self.trt = _tensorrt("the TensorRT backend")
        try:
            self.cudart = cudart()
        except EngineUnavailable as exc:
            raise MissingDependencyError("cuda-python", "the TensorRT backend", "gpu") from exc
        self.precision = precision
        self._closed = False
        self._buffers: list = []
        self._streams: dict = {}
        self.contexts, self.engines, self.locks, self._io = {}, {}, {}, {}
        self.limits = {g: Limit.from_dict((engines.get("limits") or {}).get(g)) for g in GRAPHS}
        self.runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        try:
            for graph in GRAPHS:
                self._load(bundle, graph, engines[graph]["file"])
        except BaseException:
            self.close()
            raise

    def _load(self, bundle: Path, graph: str, file: str) -> None:
        trt, rt = self.trt, self.cudart
        path = bundle / "engines" / file
        if not path.is_file():
            raise BundleError(f"the {graph} engine {path} is missing; rebuild it with "
                              f"`edgedml build-engine {bundle} --engine {self.precision}`")
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BundleError(f"TensorRT {trt.__version__} could not load the {graph} engine {path.name}: it was "
                              f"built for another GPU or TensorRT version; rebuild it here with "
                              f"`edgedml build-engine {bundle} --engine {self.precision}`")
        context = engine.create_execution_context()
        if context is None:
            raise BundleError(f"TensorRT could not create an execution context for the {graph} engine "
                              f"(out of GPU memory?)")
        self.engines[graph], self.contexts[graph] = engine, context
        self.locks[graph] = threading.Lock()
        self._streams[graph] = _call(rt.cudaStreamCreate(), "cudaStreamCreate")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        io = {"inputs": {}, "outputs": {}}
        for name in inputs:
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            low = high = shape
            if any(d < 0 for d in shape):
                low, _, high = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
            if not context.set_input_shape(name, high):
                raise BundleError(f"the {graph} engine refuses its own maximum shape {high} for '{name}'")
            io["inputs"][name] = {"min": low, "max": high, "dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(name)))}
        for name in outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BundleError(f"the {graph} engine's output '{name}' has a data-dependent shape {shape}; "
                                  f"this backend needs shapes known from the inputs")
            io["outputs"][name] = {"max": shape, "dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(name)))}
        for group in io.values():
            for name, spec in group.items():
                nbytes = max(int(np.prod(spec["max"], dtype=np.int64)) * spec["dtype"].itemsize, 1)
                spec["nbytes"] = nbytes
                spec["pointer"] = _call(rt.cudaMalloc(nbytes), "cudaMalloc")
                self._buffers.append(spec["pointer"])
                if not context.set_tensor_address(name, int(spec["pointer"])):
                    raise BundleError(f"TensorRT refused the device buffer of '{name}' ({graph} engine)")
        self._io[graph] = io

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise RuntimeError("this TensorRT backend is closed")
        if graph not in self._io:
            raise ValueError(f"unknown graph {graph!r}; choose one of {list(GRAPHS)}")
        trt, rt = self.trt, self.cudart
        io, context, stream = self._io[graph], self.contexts[graph], self._streams[graph]
        missing = sorted(set(io["inputs"]) - set(feeds))
        unknown = sorted(set(feeds) - set(io["inputs"]))
        if missing or unknown:
            raise ValueError(f"the {graph} engine takes inputs {sorted(io['inputs'])}; missing {missing}, "
                             f"unknown {unknown}")
        limit = self.limits[graph]
        with self.locks[graph]:
            hosts = []  # kept alive until the stream is synchronized
            for name, spec in io["inputs"].items():
                host = np.ascontiguousarray(feeds[name], dtype=spec["dtype"])
                shape = tuple(host.shape)
                inside = (len(shape) == len(spec["max"]) and host.nbytes <= spec["nbytes"]
                          and all(lo <= d <= hi for d, lo, hi in zip(shape, spec["min"], spec["max"])))
                if not inside or not context.set_input_shape(name, shape):
                    raise ValueError(
                        f"{graph} input '{name}' has shape {shape}, outside the engine's profile "
                        f"{spec['min']}..{spec['max']} (at most {limit.size if limit.size else spec['max'][0]} rows"
                        f"{' exactly' if limit.fixed else ''}); Matcher chunks larger requests to this limit, "
                        f"or rebuild the engine with a larger --max-batch / --max-candidates")
                hosts.append(host)
                _call(rt.cudaMemcpyAsync(spec["pointer"], host.ctypes.data, host.nbytes,
                                         rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "copy to device")
            if not context.execute_async_v3(int(stream)):
                raise RuntimeError(f"TensorRT failed to run the {graph} engine")
            results = {}
            for name, spec in io["outputs"].items():
                host = np.empty(tuple(int(d) for d in context.get_tensor_shape(name)), dtype=spec["dtype"])
                if host.nbytes:
                    _call(rt.cudaMemcpyAsync(host.ctypes.data, spec["pointer"], host.nbytes,
                                             rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "copy to host")
                results[name] = host
            _call(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return {name: value.astype(np.float32, copy=False) for name, value in results.items()}

    def describe(self) -> str:
        return f"tensorrt {self.trt.__version__} ({self.precision} engines)"

    def close(self) -> None:
        """Free the device buffers and streams (idempotent)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        rt = getattr(self, "cudart", None)
        for stream in list(self._streams.values()):
            try:
                rt.cudaStreamSynchronize(stream)
                rt.cudaStreamDestroy(stream)
            except Exception:
                pass
        for pointer in self._buffers:
            try:
                rt.cudaFree(pointer)
            except Exception:
                pass
        self._buffers, self._streams = [], {}
        self.contexts, self.engines = {}, {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
