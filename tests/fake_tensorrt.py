"""A fake TensorRT + cuda-python for the tests of edgedml.runtime.inference.tensorrt (and of the
matcher and `edgedml info` on top of it): ``install(monkeypatch, tmp_path)`` puts it in
``sys.modules``; ``make_fake_bundle(root)`` writes a bundle its engines can be built for."""

from __future__ import annotations

import ctypes
import json
import sys
import types
from pathlib import Path

import numpy as np

from edgedml.bundle import GraphIO, Manifest
from edgedml.preprocessing import PreprocessSpec

# ---------------------------------------------------------------------------------------------
# A fake TensorRT + cuda-python. It checks the call surface and the build/check/manifest flow of
# edgedml.runtime.inference.tensorrt, NOT TensorRT: it models only the TensorRT 10.3/11.x API names that
# module uses (classes use __slots__, so setting a removed attribute such as a calibrator fails
# too), and its "engines" compute the same numpy functions that wrote the stored ONNX Runtime
# outputs of the fake bundle below.
# ---------------------------------------------------------------------------------------------
S, R, D, E = 4, 4, 2, 3


def fake_embedder(images):
    return {"embedding": images.mean(axis=(2, 3)), "local": images[:, :2, :2, :2].reshape(len(images), R, D)}


def fake_matcher(f):
    k = len(f["candidate_local"])
    return {"structural": f["candidate_embedding"] @ f["query_embedding"][0],
            "multiscale": (f["candidate_local"] * f["query_local"]).sum(axis=(1, 2)),
            "plan": np.full((k, R, R), 1.0 / R, np.float32), "query_evidence": np.zeros((k, R), np.float32),
            "candidate_evidence": np.zeros((k, R), np.float32)}


OUTPUTS = {"embedder": {"embedding": (-1, E), "local": (-1, R, D)},
           "matcher": {"structural": (-1,), "multiscale": (-1,), "plan": (-1, R, R), "query_evidence": (-1, R),
                       "candidate_evidence": (-1, R)}}


def make_fakes(version: str, calls: dict, drift: float = 0.0):
    memory: dict[int, bytearray] = {}

    def ok(*values):
        return (0, *values)

    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    rt.cudaGetDeviceCount = lambda: ok(1)
    rt.cudaGetDeviceProperties = lambda i: ok(types.SimpleNamespace(name=b"Fake GPU\x00", major=8, minor=7))

    def malloc(n):
        pointer = 4096 * (len(memory) + 1)
        memory[pointer] = bytearray(n)
        return ok(pointer)

    def memcpy(dst, src, n, kind, stream):
        if kind == 1:
            memory[dst][:n] = ctypes.string_at(src, n)
        else:
            ctypes.memmove(dst, bytes(memory[src][:n]), n)
        return ok()

    rt.cudaMalloc, rt.cudaMemcpyAsync = malloc, memcpy
    rt.cudaFree = lambda p: (memory.pop(p), ok())[1]
    rt.cudaStreamCreate = lambda: ok(7)
    rt.cudaStreamSynchronize = rt.cudaStreamDestroy = lambda s: ok()

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1 if major < 11 else 0)
    trt.BuilderFlag = types.SimpleNamespace(TF32=6, DEBUG=2, REFIT=4)  # no weak-typing flags
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.TensorIOMode = types.SimpleNamespace(NONE=0, INPUT=1, OUTPUT=2)
    trt.float32 = "float32"
    trt.nptype = lambda dtype: {"float32": np.float32}[dtype]

    class Logger:
        __slots__ = ()
        WARNING = 2

        def __init__(self, severity):
            pass

    class Network:
        __slots__ = ("flags", "spec")

    class Profile:
        __slots__ = ("shapes",)

        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            self.shapes[name] = [list(low), list(opt), list(high)]

    class Cache:
        __slots__ = ()

        def serialize(self):
            return b"timing"

    class Config:
        __slots__ = ("flags", "pool", "profiles", "cache")

        def __init__(self):
            self.flags, self.profiles = {6}, []

        def set_memory_pool_limit(self, pool, size):
            self.pool = (pool, size)

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return 0

        def create_timing_cache(self, blob):
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        __slots__ = ()

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            network = Network()
            network.flags = flags
            calls.setdefault("network_flags", []).append(flags)
            return network

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            (profile,) = config.profiles
            calls.setdefault("tf32", {})[network.spec["graph"]] = 6 in config.flags
            return json.dumps({"graph": network.spec["graph"], "profile": profile.shapes}).encode()

    class OnnxParser:
        __slots__ = ("network",)
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, model):
            self.network.spec = json.loads(model)
            return True

    class Context:
        __slots__ = ("engine", "shapes", "addresses")

        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name, shape):
            low, _, high = self.engine.profile[name]
            inside = len(shape) == len(low) and all(a <= d <= b for d, a, b in zip(shape, low, high))
            if inside:
                self.shapes[name] = tuple(shape)
            return inside

        def _rows(self):
            first = "images" if self.engine.graph == "embedder" else "candidate_local"
            return self.shapes[first][0]

        def get_tensor_shape(self, name):
            if name in self.engine.profile:
                return self.shapes[name]
            return tuple(self._rows() if d < 0 else d for d in OUTPUTS[self.engine.graph][name])

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer
            return True

        def execute_async_v3(self, stream_handle):
            assert isinstance(stream_handle, int)
            feeds = {}
            for name, shape in self.shapes.items():
                n = int(np.prod(shape)) * 4
                feeds[name] = np.frombuffer(bytes(memory[self.addresses[name]][:n]), np.float32).reshape(shape)
            out = fake_embedder(feeds["images"]) if self.engine.graph == "embedder" else fake_matcher(feeds)
            for name, value in out.items():
                data = np.ascontiguousarray(value + drift, np.float32).tobytes()
                memory[self.addresses[name]][:len(data)] = data
            return True

    class Engine:
        __slots__ = ("graph", "profile", "names")

        def __init__(self, blob):
            spec = json.loads(blob)
            self.graph, self.profile = spec["graph"], {k: [tuple(s) for s in v] for k, v in spec["profile"].items()}
            self.names = [*self.profile, *OUTPUTS[self.graph]]

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name in self.profile else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            if name in self.profile:
                low, _, high = self.profile[name]
                return tuple(a if a == b else -1 for a, b in zip(low, high))
            return OUTPUTS[self.graph][name]

        def get_tensor_profile_shape(self, name, index):
            assert index == 0
            return self.profile[name]

        def get_tensor_dtype(self, name):
            return trt.float32

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        __slots__ = ()

        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            try:
                return Engine(blob)
            except ValueError:
                return None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt, rt, memory


def _named(shape, axis):
    """An engine's shape (-1 for a dynamic dimension) as a manifest records it: an axis name."""
    return [axis if d < 0 else d for d in shape]


def make_fake_bundle(root: Path) -> Path:
    """A bundle the fake TensorRT builds engines for, written to root (test_runtime_api uses it too)."""
    (root / "validation").mkdir(parents=True)
    for graph in ("embedder", "matcher"):
        for suffix in ("", ".fp16"):
            (root / f"{graph}{suffix}.onnx").write_text(json.dumps({"graph": graph}))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 3, S, S)).astype(np.float32)
    emb = fake_embedder(images)
    feeds = {"query_local": emb["local"][:1], "query_embedding": emb["embedding"][:1],
             "candidate_local": rng.standard_normal((7, R, D)).astype(np.float32),
             "candidate_embedding": rng.standard_normal((7, E)).astype(np.float32)}
    np.savez(root / "validation/inputs.npz", images=images, **feeds)
    outputs = {}
    for name in ("fp32", "fp16"):
        np.savez(root / f"validation/outputs.{name}.npz", **{f"embedder.{k}": v for k, v in emb.items()},
                 **{f"matcher.{k}": v for k, v in fake_matcher(feeds).items()})
        outputs[name] = f"validation/outputs.{name}.npz"
    Manifest(
        model={},
        graphs={"fp32": {"embedder": "embedder.onnx", "matcher": "matcher.onnx"},
                "fp16": {"embedder": "embedder.fp16.onnx", "matcher": "matcher.fp16.onnx"},
                "int8-cpu": {"embedder": "embedder.onnx", "matcher": "matcher.onnx"}},
        embedder=GraphIO("embedder.onnx", {"images": ["batch", 3, S, S]},
                         {k: _named(v, "batch") for k, v in OUTPUTS["embedder"].items()}),
        matcher=GraphIO("matcher.onnx", {"query_local": [1, R, D], "query_embedding": [1, E],
                                         "candidate_local": ["K", R, D], "candidate_embedding": ["K", E]},
                        {k: _named(v, "K") for k, v in OUTPUTS["matcher"].items()}),
        limits={"embedder": {"size": None, "fixed": False}, "matcher": {"size": None, "fixed": False}},
        preprocessing=PreprocessSpec(),  # not read by the engine build, which uses the graph inputs
        validation_inputs={"inputs": "validation/inputs.npz", "outputs": outputs}).write(root)
    return root


def install(monkeypatch, tmp_path, version="11.0.0", drift=0.0):
    calls: dict = {}
    trt, rt, memory = make_fakes(version, calls, drift)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("EDGEDML_CACHE", str(tmp_path / "cache"))
    return calls, memory
