"""The engine check: a bundle's freshly built TensorRT engines run on its stored validation
inputs and held to the bounds of :mod:`..agreement` against ONNX Runtime's stored outputs of the
same precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ....bundle import Manifest
from ..agreement import EMBEDDING_COSINE, SCORE_TOL, row_cosines
from ..chunking import CHUNKED, run_in_chunks
from ..graphs import rooted
from .backend import TensorRTBackend

MATCHER_CHECKED = ("structural", "multiscale")


def check_engines(backend: TensorRTBackend, root: Path, manifest: Manifest, precision: str) -> tuple[dict, list[str]]:
    """Run the engines on the bundle's stored validation inputs; compare with ONNX Runtime's
    stored outputs of the same precision. Returns (numbers, failures)."""
    stored = manifest.validation_inputs
    manifest = rooted(manifest, root)
    with np.load(manifest.path(stored["inputs"], "validation inputs"), allow_pickle=False) as data:
        inputs = {k: data[k] for k in data.files}
    with np.load(manifest.path(stored["outputs"][precision], f"{precision} validation outputs"),
                 allow_pickle=False) as data:
        want = {k: data[k] for k in data.files}
    embedded = run_in_chunks(lambda f: backend.run("embedder", f), {"images": inputs["images"].astype(np.float32)},
                             CHUNKED["embedder"], backend.limits["embedder"])
    feeds = {k: inputs[k].astype(np.float32) for k in manifest.matcher.inputs}
    matched = run_in_chunks(lambda f: backend.run("matcher", f), feeds, CHUNKED["matcher"],
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
