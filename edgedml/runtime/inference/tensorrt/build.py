"""Building TensorRT engines: one strongly typed engine from an ONNX graph
(:func:`build_engine`), and a bundle's embedder and matcher engines of one precision, checked
and recorded in its manifest (:func:`build_engines`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ....bundle import Manifest, read_manifest
from ....errors import BundleError, EdgeDMLError
from ....filemodes import write_atomically
from ..chunking import Limit
from ..graphs import GRAPHS, cache_dir
from .backend import TensorRTBackend
from .check import check_engines
from .gpu import EngineUnavailable, availability, gpu_info, import_tensorrt

logger = logging.getLogger(__name__)

WORKSPACE_BYTES = 1 << 30
CPU_ONLY = ("int8-cpu",)


def _major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def build_engine(onnx_path: str | Path, engine_path: str | Path, shapes: dict[str, tuple],
                 timing_cache: str | Path, tf32: bool, *, precision: str | None = None) -> dict:
    """Parse ``onnx_path`` into a strongly typed network, build a serialized engine with one
    optimisation profile (``shapes``: input name → (min, opt, max) shapes) and write it to
    ``engine_path``. ``tf32=False`` clears the TF32 builder flag (fp32 matmuls stay fp32).
    ``timing_cache`` is read when present and rewritten after the build (a cache that cannot be
    written is not an error). Returns the build facts for the manifest."""
    trt = import_tensorrt("building TensorRT engines")
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
        write_atomically(timing_cache, bytes(config.get_timing_cache().serialize()))
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


def _embedder_limit(manifest: Manifest, max_batch: int, log) -> Limit:
    graph = Limit.from_dict(manifest.limits.get("embedder"))
    first = manifest.embedder.inputs["images"][0]
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


def build_engines(bundle: str | Path, precision: str = "fp16", max_batch: int = 8, max_candidates: int = 100,
                  log: Callable[[str], None] | None = None) -> dict:
    """Build the embedder and matcher engines of one precision of a bundle, check them against
    the ONNX Runtime outputs stored in the bundle, and record them in its manifest under
    ``engines[precision]``. Returns that entry. A failed check deletes the new engines and
    leaves the manifest untouched. ``log`` receives each progress line (default: this module's
    logger, at INFO; the CLI echoes them on stderr)."""
    log = log or logger.info
    root = Path(bundle)
    manifest = read_manifest(root)
    graphs = manifest.graphs
    gpu_precisions = [p for p in graphs if p not in CPU_ONLY]
    if precision in CPU_ONLY:
        raise EdgeDMLError(f"'{precision}' graphs are for CPUs (ONNX Runtime), not TensorRT; build an engine "
                           f"from one of {gpu_precisions}")
    if precision not in graphs:
        raise EdgeDMLError(f"the bundle {root} has no {precision} graphs (it has {gpu_precisions}); re-export it "
                           f"with that precision or build one of those")
    if max_batch < 1 or max_candidates < 1:
        raise ValueError("max_batch and max_candidates must be at least 1")
    stored = manifest.validation_inputs
    if "inputs" not in stored or precision not in (stored.get("outputs") or {}):
        raise BundleError(f"the bundle {root} has no stored validation outputs for {precision}, so its engines "
                          f"cannot be checked; re-export the bundle")
    reason = availability()
    if reason:
        raise EngineUnavailable(f"{reason}: the ONNX bundle in {root} is complete; build the engines on the "
                                f"target with `edgedml build-engine --model {root} --engine {precision}`")

    embedder = _embedder_limit(manifest, max_batch, log)
    matcher = Limit.from_dict(manifest.limits.get("matcher"))
    if matcher.fixed:
        raise BundleError("the matcher graph is fixed-size; TensorRT engines need a dynamic K: re-export it")
    if matcher.size is not None and max_candidates > matcher.size:
        log(f"the matcher graph accepts at most {matcher.size} candidates: max_candidates -> {matcher.size}")
        max_candidates = matcher.size
    matcher = Limit(max_candidates, False)
    if embedder.fixed:
        emb_shapes = _profile(manifest.embedder.inputs, embedder.size, embedder.size, embedder.size)
    else:
        emb_shapes = _profile(manifest.embedder.inputs, 1, max(1, embedder.size // 2), embedder.size)
    match_shapes = _profile(manifest.matcher.inputs, 1, max(1, max_candidates // 2), max_candidates)

    engines_dir = root / "engines"
    engines_dir.mkdir(exist_ok=True)
    if not engines_dir.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{engines_dir} leads outside the bundle (a symlink); remove it and build again")
    cache = timing_cache_path()
    final = {g: engines_dir / f"{g}.{precision}.engine" for g in GRAPHS}
    # built under a temporary name (checksums skip *.tmp): a failed build or check never
    # replaces or deletes engines that the manifest already records
    staged = {g: p.with_name(p.name + ".tmp") for g, p in final.items()}
    for path in staged.values():  # a leftover (or a symlink planted there) is never written through
        path.unlink(missing_ok=True)
    limits = {"embedder": embedder.to_dict(), "matcher": matcher.to_dict()}
    try:
        facts = {}
        for graph, shapes, tf32 in (("embedder", emb_shapes, True), ("matcher", match_shapes, False)):
            log(f"building the {graph} engine ({precision}, from {graphs[precision][graph]})")
            source = manifest.path(graphs[precision][graph], f"{precision} {graph} graph")
            facts[graph] = build_engine(source, staged[graph], shapes, cache, tf32, precision=precision)
            facts[graph]["file"] = final[graph].name
        trial = dataclasses.replace(manifest, engines={
            precision: {g: {**facts[g], "file": staged[g].name} for g in GRAPHS} | {"limits": limits}})
        log("checking the engines against the stored ONNX Runtime outputs")
        backend = TensorRTBackend(root, trial, precision, staged=staged)
        try:
            check, failures = check_engines(backend, root, manifest, precision)
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
    manifest.update(engines={**manifest.engines, precision: entry})
    log(f"{precision} engines built and checked: {check['embedder']} {check['matcher']}")
    return entry
