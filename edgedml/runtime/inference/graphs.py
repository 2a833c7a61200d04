"""A bundle's graphs as a backend sees them: which files hold each graph of a precision, their
shape limits, where engines are cached, and :class:`Backend`, the small interface every inference
backend (ONNX Runtime, OpenCV DNN, TensorRT) provides."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from ...bundle import Manifest
from ...errors import BundleError
from ..lifecycle import ClosedError
from .chunking import Limit

GRAPHS = ("embedder", "matcher")


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

    closed = False

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Release what the backend holds (sessions, nets); idempotent. Running a closed backend is
        a one-line :class:`~..lifecycle.ClosedError`."""
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"this {self.name} backend is closed; open a new Matcher to run the bundle again")
