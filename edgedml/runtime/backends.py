"""Inference backends behind one small interface: run a bundle's graph on named numpy inputs.

- ``onnxruntime``: providers TensorRT EP → CUDA EP → CPU, whichever this onnxruntime has, with
  the TensorRT EP's engine cache inside the bundle folder;
- ``opencv``: OpenCV's own DNN module (CPU, or CUDA / CUDA-FP16 targets where OpenCV is built
  with CUDA, as in JetPack): a runtime that needs nothing but numpy and OpenCV;
- ``tensorrt``: the bundle's native engines (TensorRT 10 named-tensor API, ``execute_async_v3``,
  device buffers through cuda-python). Written against the documented API; not executed where
  this was developed (no TensorRT, no GPU).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from ..errors import BundleError, MissingDependencyError

BACKENDS = ("onnxruntime", "opencv", "tensorrt")


class Backend:
    """``run(graph, feeds)``: graph is "embedder" or "matcher"; feeds map input names to float32
    arrays; returns {output name: array}. Implementations are safe to call from several threads."""

    name = "base"

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, bundle: Path, manifest: dict, providers: list[str] | None = None, threads: int = 0):
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
        self.sessions = {}
        for graph in ("embedder", "matcher"):
            chosen = []
            for provider in wanted:
                if provider == "TensorrtExecutionProvider":
                    cache = bundle / "ort_trt_cache"
                    chosen.append((provider, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                              "trt_fp16_enable": graph == "embedder"}))
                else:
                    chosen.append(provider)
            self.sessions[graph] = ort.InferenceSession(str(bundle / manifest[graph]["file"]), options,
                                                        providers=chosen)
        self.providers = self.sessions["embedder"].get_providers()

    def run(self, graph, feeds):
        session = self.sessions[graph]  # InferenceSession.run is thread-safe
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds)))

    def describe(self) -> str:
        return f"onnxruntime ({', '.join(self.providers)})"


class OpenCVBackend(Backend):
    name = "opencv"

    def __init__(self, bundle: Path, manifest: dict, cuda: bool | None = None):
        import cv2

        if cuda is None:
            try:
                cuda = cv2.cuda.getCudaEnabledDeviceCount() > 0
            except Exception:  # OpenCV built without its CUDA module
                cuda = False
        self.nets, self.outputs, self.locks = {}, {}, {}
        for graph in ("embedder", "matcher"):
            net = cv2.dnn.readNetFromONNX(str(bundle / manifest[graph]["file"]))
            if cuda:
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                # fp16 only for the embedder: the scaling-form matcher underflows in fp16
                fp16 = graph == "embedder" or manifest["matcher"].get("form") == "log"
                net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA_FP16 if fp16 else cv2.dnn.DNN_TARGET_CUDA)
            self.nets[graph] = net
            self.outputs[graph] = list(manifest[graph]["outputs"])
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


class TensorRTBackend(Backend):
    """Native TensorRT engines: one execution context per graph, guarded by a lock."""

    name = "tensorrt"

    def __init__(self, bundle: Path, manifest: dict):
        engines = manifest.get("engines") or {}
        if "embedder" not in engines or "matcher" not in engines:
            raise BundleError(f"{bundle} has no TensorRT engines; build them on this device with "
                              f"`edgedml build-engine {bundle} --engine fp16`")
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "tensorrt", "the TensorRT backend", "gpu") from exc
        self.trt, self.cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engines, self.contexts, self.locks = {}, {}, {}
        for graph in ("embedder", "matcher"):
            engine = runtime.deserialize_cuda_engine((bundle / "engines" / engines[graph]["file"]).read_bytes())
            if engine is None:
                raise BundleError(f"TensorRT could not load the {graph} engine: it was built for another GPU or "
                                  f"TensorRT version; rebuild it here with `edgedml build-engine {bundle}`")
            self.engines[graph] = engine
            self.contexts[graph] = engine.create_execution_context()
            self.locks[graph] = threading.Lock()
        err, self.stream = cudart.cudaStreamCreate()

    def _check(self, result, what):
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise RuntimeError(f"CUDA error in {what}: {err}")
        return result[1] if isinstance(result, tuple) and len(result) > 1 else None

    def run(self, graph, feeds):
        trt, cudart = self.trt, self.cudart
        engine, context = self.engines[graph], self.contexts[graph]
        with self.locks[graph]:
            buffers, outputs = [], {}
            try:
                for name, value in feeds.items():
                    value = np.ascontiguousarray(value, dtype=np.float32)
                    context.set_input_shape(name, value.shape)
                    pointer = self._check(cudart.cudaMalloc(value.nbytes), "cudaMalloc")
                    buffers.append(pointer)
                    self._check(cudart.cudaMemcpyAsync(pointer, value.ctypes.data, value.nbytes,
                                                       cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream),
                                "copy to device")
                    context.set_tensor_address(name, int(pointer))
                for i in range(engine.num_io_tensors):
                    name = engine.get_tensor_name(i)
                    if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                        continue
                    shape = tuple(context.get_tensor_shape(name))
                    host = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
                    pointer = self._check(cudart.cudaMalloc(max(host.nbytes, 1)), "cudaMalloc")
                    buffers.append(pointer)
                    context.set_tensor_address(name, int(pointer))
                    outputs[name] = (host, pointer)
                if not context.execute_async_v3(int(self.stream)):  # TensorRT takes the raw handle
                    raise RuntimeError(f"TensorRT failed to run the {graph} engine")
                for host, pointer in outputs.values():
                    self._check(cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes,
                                                       cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream),
                                "copy to host")
                self._check(cudart.cudaStreamSynchronize(self.stream), "synchronize")
            finally:
                for pointer in buffers:
                    cudart.cudaFree(pointer)
        return {name: host.astype(np.float32) for name, (host, _) in outputs.items()}

    def describe(self) -> str:
        return f"tensorrt {self.trt.__version__}"


def create_backend(bundle: Path, manifest: dict, name: str = "auto") -> Backend:
    """The named backend, or with "auto" the best available: TensorRT engines where the bundle
    has them and TensorRT imports, then ONNX Runtime, then OpenCV DNN."""
    if name not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {name!r}; choose auto or one of {list(BACKENDS)}")
    if name == "onnxruntime":
        return OnnxRuntimeBackend(bundle, manifest)
    if name == "opencv":
        return OpenCVBackend(bundle, manifest)
    if name == "tensorrt":
        return TensorRTBackend(bundle, manifest)
    if manifest.get("engines") and importlib.util.find_spec("tensorrt") is not None:
        return TensorRTBackend(bundle, manifest)
    if importlib.util.find_spec("onnxruntime") is not None:
        return OnnxRuntimeBackend(bundle, manifest)
    return OpenCVBackend(bundle, manifest)
