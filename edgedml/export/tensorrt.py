"""TensorRT engines from a bundle's ONNX graphs, with the TensorRT 10 Python API.

Engines are specific to a GPU and a TensorRT version, so they are built where they run:
``edgedml export --engine fp16`` on a workstation that has the target GPU, or
``edgedml build-engine BUNDLE --engine fp16`` on the Jetson itself. Written against the
documented TensorRT 10 API (explicit batch networks, named I/O tensors, memory pools,
optimisation profiles, timing caches); exercised only where ``tensorrt`` imports and a CUDA GPU
is present — elsewhere its tests skip.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..bundle import read_manifest, write_manifest
from ..errors import EdgeDMLError, MissingDependencyError

WORKSPACE_BYTES = 1 << 30


class EngineUnavailable(EdgeDMLError):
    """TensorRT or a CUDA GPU is missing here; the ONNX bundle is still complete."""


def gpu_info() -> dict:
    """Name and compute capability of GPU 0 through cuda-python, or raise EngineUnavailable."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise EngineUnavailable("cuda-python is not installed (pip install \"edgedml[gpu]\")") from exc
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise EngineUnavailable("no CUDA GPU is visible")
    err, props = cudart.cudaGetDeviceProperties(0)
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.strip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


def availability() -> str | None:
    """None when engines can be built here, else one sentence saying what is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed here"
    try:
        gpu_info()
    except EngineUnavailable as exc:
        return str(exc)
    return None


class _Calibrator:
    """INT8 entropy calibration on real images through the deployment preprocessing.

    Built lazily as a subclass of ``trt.IInt8EntropyCalibrator2`` (TensorRT's implicit INT8
    calibration, deprecated in 10.x in favour of explicit quantisation but still supported)."""

    @staticmethod
    def create(trt, batches: list[np.ndarray], cache_path: Path):
        from cuda.bindings import runtime as cudart

        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()
                self.batches, self.index = batches, 0
                err, self.device = cudart.cudaMalloc(batches[0].nbytes)
                if int(err) != 0:
                    raise EngineUnavailable(f"cudaMalloc failed for calibration ({err})")

            def get_batch_size(self):
                return self.batches[0].shape[0]

            def get_batch(self, names):
                if self.index >= len(self.batches):
                    return None
                batch = np.ascontiguousarray(self.batches[self.index], dtype=np.float32)
                cudart.cudaMemcpy(self.device, batch.ctypes.data, batch.nbytes,
                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                self.index += 1
                return [int(self.device)]

            def read_calibration_cache(self):
                return cache_path.read_bytes() if cache_path.is_file() else None

            def write_calibration_cache(self, cache):
                cache_path.write_bytes(bytes(cache))

        return Calibrator()


def build_engine(onnx_path: Path, engine_path: Path, precision: str, shapes: dict[str, tuple],
                 timing_cache: Path, fp32_reductions: bool = False,
                 calib_batches: list[np.ndarray] | None = None) -> dict:
    """Parse ``onnx_path``, build a serialized engine for ``precision`` (fp32, fp16, int8) with one
    optimisation profile (``shapes``: input name → (min, opt, max) shapes), write it to
    ``engine_path``; returns build facts for the manifest. ``fp32_reductions`` keeps every
    reduction layer in fp32 in an fp16 engine (the log-form matcher's sums over regions)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", "building TensorRT engines", "gpu") from exc
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgeDMLError(f"TensorRT could not parse {onnx_path.name}: " + "; ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _Calibrator.create(trt, calib_batches, engine_path.with_suffix(".calib"))
        config.set_calibration_profile(profile)
    if fp32_reductions and precision != "fp32":
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.REDUCE:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeDMLError(f"TensorRT failed to build an engine from {onnx_path.name}; see its log above")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"file": engine_path.name, "precision": precision, "tensorrt": trt.__version__,
            "build_seconds": round(time.perf_counter() - started, 1), "profile": {
                k: [list(s) for s in v] for k, v in shapes.items()}, **gpu_info()}


def build_engines(bundle: str | Path, precision: str, max_batch: int = 8, max_candidates: int = 100,
                  calib: str | None = None, log=print) -> dict:
    """Build the embedder and matcher engines of a bundle and record them in its manifest.

    The embedder gets ``precision``; the matcher stays fp32 in its scaling form (its kernel
    underflows in fp16) and is built in fp16 only in its log form."""
    reason = availability()
    if reason:
        raise EngineUnavailable(f"{reason}: the ONNX bundle in {bundle} is complete; build the engines on the "
                                f"target with `edgedml build-engine {bundle} --engine {precision}`")
    root = Path(bundle)
    manifest = read_manifest(root)
    size = manifest["preprocessing"]["size"]
    io = manifest["matcher"]["inputs"]
    r, d = io["query_local"][1], io["query_local"][2]
    e = io["query_embedding"][1]
    opt_batch = max(1, max_batch // 2)
    calib_batches = None
    if precision == "int8":
        from ..runtime.image import load_image
        from ..runtime.preprocess import to_network_input
        from ..preprocessing import PreprocessSpec
        from .exporter import image_files

        spec = PreprocessSpec.from_dict(manifest["preprocessing"])
        images = np.stack([to_network_input(load_image(f), spec) for f in image_files(calib, 64)])
        calib_batches = [images[i:i + opt_batch] for i in range(0, len(images) - opt_batch + 1, opt_batch)]
    engines_dir = root / "engines"
    engines_dir.mkdir(exist_ok=True)
    cache = engines_dir / "timing.cache"
    engines = dict(manifest.get("engines", {}))
    log(f"building embedder engine ({precision})")
    engines["embedder"] = build_engine(
        root / "embedder.onnx", engines_dir / f"embedder.{precision}.engine", precision,
        {"images": ((1, 3, size, size), (opt_batch, 3, size, size), (max_batch, 3, size, size))},
        cache, calib_batches=calib_batches)
    matcher_precision = "fp16" if manifest["matcher"]["form"] == "log" and precision != "fp32" else "fp32"
    log(f"building matcher engine ({matcher_precision})")
    k_opt = min(max_candidates, 100)
    engines["matcher"] = build_engine(
        root / "matcher.onnx", engines_dir / f"matcher.{matcher_precision}.engine", matcher_precision,
        {"query_local": ((1, r, d),) * 3, "query_embedding": ((1, e),) * 3,
         "candidate_local": ((1, r, d), (k_opt, r, d), (max_candidates, r, d)),
         "candidate_embedding": ((1, e), (k_opt, e), (max_candidates, e))},
        cache, fp32_reductions=True)
    body = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "files")}
    body["engines"] = engines
    write_manifest(root, body)
    log(json.dumps(engines, indent=2))
    return engines
