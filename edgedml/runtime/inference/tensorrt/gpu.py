"""What this device offers the TensorRT engines: cuda-python's CUDA runtime, a CUDA GPU, and
the tensorrt module, each imported when asked for."""

from __future__ import annotations

from ....errors import EdgeDMLError, MissingDependencyError

FIX_HINT = 'pip install "edgedml[gpu]"'
JETSON_HINT = ("on a Jetson TensorRT comes with JetPack: sudo apt install python3-libnvinfer, in a venv made with "
               "--system-site-packages")


def install_hint() -> str:
    """How to get TensorRT here: pip's [gpu] extra where PyPI serves it, JetPack's packages on
    aarch64 Linux (a Jetson), where the extra leaves tensorrt out (pyproject's markers)."""
    import platform
    import sys

    return JETSON_HINT if sys.platform.startswith("linux") and platform.machine() == "aarch64" else FIX_HINT


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


def cuda_unpack(result, what: str):
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
        return f"TensorRT is not installed here (fix: {install_hint()})"
    try:
        gpu_info()
    except EngineUnavailable as exc:
        return str(exc)
    return None


def import_tensorrt(feature: str):
    """The tensorrt module, or :class:`MissingDependencyError` naming ``feature`` as what needs it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", feature, "gpu") from exc
    return trt
