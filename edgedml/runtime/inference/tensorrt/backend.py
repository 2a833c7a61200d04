"""The TensorRT backend: a bundle's engines of one precision behind the interface of
:class:`~..backends.Backend`, with device buffers allocated once and reused."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ....bundle import Manifest
from ....errors import BundleError, MissingDependencyError
from ..chunking import Limit
from ..graphs import GRAPHS, rooted
from .gpu import EngineUnavailable, cuda_unpack, cudart, import_tensorrt


class TensorRTBackend:
    """A bundle's TensorRT engines of one precision (same interface as ``backends.Backend``).

    One execution context, CUDA stream and lock per graph; device buffers for every input and
    output are allocated once, at the profile's maximum shapes, and reused by every call.
    ``limits`` holds the largest batch (embedder) and K (matcher) the engines accept."""

    name = "tensorrt"

    def __init__(self, bundle: Path, manifest: Manifest, precision: str = "fp32",
                 staged: dict[str, Path] | None = None):
        """``staged``: {graph: engine file} just built by :func:`~.build.build_engines` and not
        yet recorded (checksummed) in the manifest, to check them; otherwise every engine is
        opened through :meth:`~edgedml.bundle.Manifest.path` (inside the bundle, checksummed)."""
        bundle = Path(bundle)
        manifest = rooted(manifest, bundle)
        recorded = manifest.engines
        engines = recorded.get(precision) or {}
        if not all(isinstance(engines.get(g), dict) and engines[g].get("file") for g in GRAPHS):
            have = sorted(recorded) if recorded else "none"
            raise BundleError(f"{bundle} has no TensorRT {precision} engines (it has: {have}); build them on this "
                              f"device with `edgedml build-engine --model {bundle} --engine {precision}`")
        self.trt = import_tensorrt("the TensorRT backend")
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
                path = (staged or {}).get(graph) or manifest.path(f"engines/{engines[graph]['file']}",
                                                                  f"{precision} {graph} engine")
                self._load(bundle, graph, Path(path))
        except BaseException:
            self.close()
            raise

    def _load(self, bundle: Path, graph: str, path: Path) -> None:
        trt, rt = self.trt, self.cudart
        if not path.is_file():
            raise BundleError(f"the {graph} engine {path} is missing; rebuild it with "
                              f"`edgedml build-engine --model {bundle} --engine {self.precision}`")
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BundleError(f"TensorRT {trt.__version__} could not load the {graph} engine {path.name}: it was "
                              f"built for another GPU or TensorRT version; rebuild it here with "
                              f"`edgedml build-engine --model {bundle} --engine {self.precision}`")
        context = engine.create_execution_context()
        if context is None:
            raise BundleError(f"TensorRT could not create an execution context for the {graph} engine "
                              f"(out of GPU memory?)")
        self.engines[graph], self.contexts[graph] = engine, context
        self.locks[graph] = threading.Lock()
        self._streams[graph] = cuda_unpack(rt.cudaStreamCreate(), "cudaStreamCreate")
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
                spec["pointer"] = cuda_unpack(rt.cudaMalloc(nbytes), "cudaMalloc")
                self._buffers.append(spec["pointer"])
                if not context.set_tensor_address(name, int(spec["pointer"])):
                    raise BundleError(f"TensorRT refused the device buffer of '{name}' ({graph} engine)")
        self._io[graph] = io

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            from ...lifecycle import ClosedError

            raise ClosedError("this tensorrt backend is closed; open a new Matcher to run the bundle again")
        if graph not in self._io:
            raise ValueError(f"unknown graph {graph!r}; choose one of {list(GRAPHS)}")
        rt = self.cudart
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
                cuda_unpack(rt.cudaMemcpyAsync(spec["pointer"], host.ctypes.data, host.nbytes,
                                         rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "copy to device")
            if not context.execute_async_v3(int(stream)):
                raise RuntimeError(f"TensorRT failed to run the {graph} engine")
            results = {}
            for name, spec in io["outputs"].items():
                host = np.empty(tuple(int(d) for d in context.get_tensor_shape(name)), dtype=spec["dtype"])
                if host.nbytes:
                    cuda_unpack(rt.cudaMemcpyAsync(host.ctypes.data, spec["pointer"], host.nbytes,
                                             rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "copy to host")
                results[name] = host
            cuda_unpack(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return {name: value.astype(np.float32, copy=False) for name, value in results.items()}

    def describe(self) -> str:
        return f"tensorrt {self.trt.__version__} ({self.precision} engines)"

    @property
    def closed(self) -> bool:
        return getattr(self, "_closed", True)

    def close(self) -> None:
        """Free the device buffers and streams, drop the engines and contexts (idempotent);
        :class:`~...lifecycle.ClosedError` on any later run. ``Matcher.close`` calls it."""
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
