"""`edgedml export`: a checkpoint (or the pretrained default) → a validated, self-describing bundle.

The bundle is assembled in a temporary folder beside ``out`` and renamed into place only when
every file is written and validation passed, so an interrupted export never leaves a half
bundle under the final name.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import __version__
from ..bundle import read_manifest, write_manifest
from ..errors import ConfigError
from ..models.embedder import EmbeddingModel
from ..models.matcher import StructuralMatcher
from . import checks, graphs, validate

ENGINES = ("none", "fp32", "fp16", "int8")
MATCHER_FORMS = ("scaling", "log")


@dataclass
class ExportOptions:
    """What ``edgedml export`` was asked for (recorded in the manifest)."""

    engine: str = "none"
    matcher_form: str = "scaling"
    iters: int | None = None  # None: the model config's sinkhorn_iters
    max_batch: int = 8
    max_candidates: int = 100
    calib: str | None = None  # images for INT8 calibration (and validation)
    validate_with: str | None = None  # images for validation
    validation_images: int = 8
    overwrite: bool = False

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine precision {self.engine!r}; choose one of {list(ENGINES)}")
        if self.matcher_form not in MATCHER_FORMS:
            raise ConfigError(f"unknown matcher form {self.matcher_form!r}; choose one of {list(MATCHER_FORMS)}")
        if self.engine == "int8" and not self.calib:
            raise ConfigError("--engine int8 calibrates on real images: pass --calib DIR")
        if self.max_batch < 1 or self.max_candidates < 1 or (self.iters is not None and self.iters < 1):
            raise ConfigError("max_batch, max_candidates and iters must be positive")


def image_files(folder: str | Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files under ``folder`` (recursively, sorted, spread over classes)."""
    from ..runtime.image import image_extensions

    suffixes = image_extensions()
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise ConfigError(f"no images found under {folder}; pass a folder of images (any depth)")
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def load_images(files: list[Path], model: EmbeddingModel) -> torch.Tensor:
    """Images through the deployment preprocessing (OpenCV): (N, 3, S, S)."""
    import numpy as np

    from ..runtime.image import load_image
    from ..runtime.preprocess import to_network_input

    spec = model.config.preprocessing()
    return torch.from_numpy(np.stack([to_network_input(load_image(f), spec) for f in files]))


def _versions() -> dict:
    import onnx
    import onnxruntime

    return {"edgedml": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": graphs.OPSET, "python": platform.python_version()}


def export_bundle(model: EmbeddingModel, out: str | Path, options: ExportOptions | None = None,
                  source: str = "pretrained", log=print) -> dict:
    """Export ``model`` to a bundle folder ``out``; returns the manifest.

    Raises :class:`validate.ValidationError` if a numerical bound breaks. Engines are not built
    here (see :func:`edgedml.export.tensorrt.build_engines`); the caller builds them afterwards.
    """
    options = options or ExportOptions()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    cfg = model.config
    iters = options.iters or cfg.sinkhorn_iters
    model = model.eval().cpu()
    matcher = StructuralMatcher(cfg.sinkhorn_eps, iters, cfg.marginals, options.matcher_form)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    started = time.perf_counter()
    try:
        log("exporting embedder.onnx")
        embedder_io = graphs.export_embedder(model, staging / "embedder.onnx")
        log(f"exporting matcher.onnx ({options.matcher_form} form, {iters} Sinkhorn iterations)")
        matcher_io = graphs.export_matcher(matcher, staging / "matcher.onnx", cfg.regions, cfg.local_dim,
                                           cfg.embed_dim)
        export_seconds = time.perf_counter() - started

        log("validating against PyTorch, POT and fp16")
        folder = options.validate_with or options.calib
        if folder:
            images = load_images(image_files(folder, options.validation_images), model)
            image_source = f"{len(images)} real images from {folder}"
        else:
            size = cfg.preprocessing().size
            images = torch.randn(options.validation_images, 3, size, size, generator=torch.Generator().manual_seed(0))
            image_source = f"{len(images)} random tensors"
        report = {"images": image_source, "embedder": validate.validate_embedder(model, staging / "embedder.onnx", images)}
        synthetic = validate.matcher_inputs(cfg.regions, cfg.local_dim, cfg.embed_dim, k=64)
        with torch.no_grad():
            out_t = model(images)
        real = (out_t.local[:1], out_t.embedding[:1], out_t.local, out_t.embedding)
        on_synthetic = validate.validate_matcher(matcher, staging / "matcher.onnx", synthetic)
        on_images = validate.validate_matcher(matcher, staging / "matcher.onnx", real)
        report["matcher"] = {k: max(on_synthetic[k], on_images[k]) for k in on_synthetic}
        report["pot"] = validate.validate_against_pot(staging / "matcher.onnx", synthetic, cfg.sinkhorn_eps, iters,
                                                      cfg.marginals)
        report["fp16"] = validate.fp16_matcher_check(cfg.sinkhorn_eps, iters, cfg.marginals, synthetic)
        report["bounds"] = {"embedding": validate.EMBEDDING_TOL, "scores": validate.SCORE_TOL,
                            "score_vs_pot": validate.POT_TOL, "fp16_scores": validate.FP16_TOL}
        failures = validate.check_bounds(report)
        if failures:
            raise validate.ValidationError(report, failures)

        readiness = {
            "embedder.onnx": checks.tensorrt_readiness(staging / "embedder.onnx", {
                n: {0} for n in (*embedder_io["inputs"], *embedder_io["outputs"])}),
            "matcher.onnx": checks.tensorrt_readiness(staging / "matcher.onnx", {
                n: ({0} if n.startswith("candidate") or n in matcher_io["outputs"] else set())
                for n in (*matcher_io["inputs"], *matcher_io["outputs"])}),
        }
        for name, problems in readiness.items():
            for problem in problems:
                log(f"warning: {name} may not build with TensorRT: {problem}")
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "model": cfg.to_dict(),
            "preprocessing": cfg.preprocessing().to_dict(),
            "embedder": {"file": "embedder.onnx", **embedder_io,
                         "nodes": checks.node_counts(staging / "embedder.onnx")},
            "matcher": {"file": "matcher.onnx", **matcher_io, "form": options.matcher_form,
                        "nodes": checks.node_counts(staging / "matcher.onnx")},
            "sinkhorn": {"eps": cfg.sinkhorn_eps, "iters": iters, "marginals": cfg.marginals,
                         "form": options.matcher_form},
            "rerank_k": options.max_candidates,
            "thresholds": {},  # filled by `edgedml calibrate`
            "validation": report,
            "tensorrt_readiness": readiness,
            "engines": {},
            "export_options": asdict(options),
            "export_seconds": round(export_seconds, 2),
            "tools": _versions(),
        }
        write_manifest(staging, manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"bundle written to {out} in {time.perf_counter() - started:.1f} s")
    return read_manifest(out, verify=False)


def default_log(message: str) -> None:
    print(message, file=sys.stderr)
