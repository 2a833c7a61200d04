"""`edgedml export`: a checkpoint (or the pretrained default) → a validated, self-describing bundle.

:func:`export_bundle` runs these steps in order, each a function named for what it does:

1. :func:`.job.prepare`: what would stop the export is decided before the work starts: ``out``
   (a link, a file, a folder with anything but a bundle's own files: :mod:`.destination`), the
   face detector and every image folder it reads (:mod:`.image_sets`);
2. :func:`write_fp32_graphs`: ``embedder.onnx`` and ``matcher.onnx`` (:mod:`.graphs`);
3. :func:`validate_fp32`: both run by ONNX Runtime against PyTorch, the matcher also against POT
   and an fp16 emulation (:mod:`.validate`), on real images when a folder is given;
4. :func:`.precision_sets.write_precision_sets` and
   :func:`.precision_sets.validate_precision_sets`: the fp16 and INT8 graph sets, held to fp32;
5. :func:`.validation_data.store_validation_inputs`: inputs and outputs kept for engine checks;
6. :func:`tensorrt_readiness` (warnings only) and :func:`install_detector`;
7. :func:`write_manifest`, then the move into place.

The bundle is assembled in a temporary folder beside ``out`` and renamed into place only when
every file is written and validation passed, so an interrupted export never leaves a half
bundle under the final name (:mod:`edgedml.output_folders`).
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import __version__
from ..bundle import GraphIO, Manifest, SinkhornSettings, read_manifest
from ..models.embedder import EmbeddingModel
from ..output_folders import move_into_place, staging_folder
from ..runtime.inference.chunking import Limit
from . import checks, graphs, precision_report, validate
from .destination import check_output_folder
from .job import ExportJob, prepare
from .options import ExportOptions
from .precision_sets import graph_runners, validate_precision_sets, write_precision_sets
from .validation_data import STORED_VALIDATION_IMAGES, store_validation_inputs

logger = logging.getLogger(__name__)


def export_bundle(model: EmbeddingModel, out: str | Path, options: ExportOptions | None = None,
                  source: str = "pretrained", log: Callable[[str], None] | None = None,
                  progress: bool = False) -> Manifest:
    """Export ``model`` to a bundle folder ``out``; returns the manifest.

    Writes one embedder and one matcher graph per precision asked for, runs every one of them
    with ONNX Runtime on real inputs, and raises :class:`validate.ValidationError` (writing
    nothing) if a bound breaks. Engines are not built here (see
    :func:`edgedml.runtime.inference.tensorrt.build_engines`); the caller builds them afterwards.

    Deterministic: the same model, options, inputs and tools give the same bytes. PyTorch runs
    on one thread meanwhile (restored after): its reductions are split by thread count, so the
    PyTorch-vs-ONNX-Runtime differences the manifest records would otherwise change with the
    machine's cores (ONNX Runtime's outputs, the graphs and the INT8 ranges do not).

    ``source`` says where the model came from (recorded in the manifest); ``log`` receives each
    progress line (default: this module's logger, at INFO; the CLI echoes them on stderr);
    ``progress`` draws progress bars for the slow loops.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job = prepare(model, Path(out), options or ExportOptions(), log or logger.info, progress)
        return _build(job, source)
    finally:
        torch.set_num_threads(threads)


def _build(job: ExportJob, source: str) -> Manifest:
    """Steps 2–7 in a staging folder beside ``job.out``, removed if any of them fails."""
    staging = staging_folder(job.out)
    started = time.perf_counter()
    try:
        fp32 = write_fp32_graphs(job, staging)
        images, described = validation_images(job)
        fp32_embedder = precision_report.embedder_runner(staging / "embedder.onnx", fp32.limits["embedder"])
        report = validate_fp32(job, staging, fp32_embedder, images, described)
        graph_sets, precision_facts = write_precision_sets(job, staging)
        runners = graph_runners(staging, graph_sets, fp32.limits["embedder"], fp32_embedder)
        stored = store_validation_inputs(staging, images[:STORED_VALIDATION_IMAGES].numpy(), runners)
        if len(graph_sets) > 1:
            validate_precision_sets(job, runners, images.numpy(), report)
        readiness = tensorrt_readiness(job, staging, graph_sets, fp32)
        detector = install_detector(job, staging)
        write_manifest(job, staging, source=source, fp32=fp32, graph_sets=graph_sets, precisions=precision_facts,
                       validation=report, validation_inputs=stored, readiness=readiness, detector=detector)
        check_output_folder(job.out, job.options.overwrite)  # still only a bundle (or empty) at the last moment
        move_into_place(staging, job.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    job.log(f"bundle written to {job.out} in {time.perf_counter() - started:.1f} s")
    return read_manifest(job.out, verify=False)


@dataclass(frozen=True)
class Fp32Graphs:
    """The fp32 pair as written: each graph's inputs and outputs (name → shape), and how many
    images (or candidates) one call of each may take."""

    embedder: dict
    matcher: dict
    limits: dict[str, Limit]


def write_fp32_graphs(job: ExportJob, staging: Path) -> Fp32Graphs:
    """``embedder.onnx`` (at ``fixed_batch`` images when asked, else any batch) and
    ``matcher.onnx`` (the fp32 matcher's form and iterations, any number of candidates)."""
    fixed_batch, cfg = job.options.fixed_batch, job.config
    job.log("exporting embedder.onnx" + (f" (fixed batch {fixed_batch})" if fixed_batch else ""))
    embedder = graphs.export_embedder(job.model, staging / "embedder.onnx", fixed_batch=fixed_batch)
    job.log(f"exporting matcher.onnx ({job.options.matcher_form} form, {job.iters} Sinkhorn iterations)")
    matcher = graphs.export_matcher(job.matcher, staging / "matcher.onnx", cfg.regions, cfg.local_dim, cfg.embed_dim)
    return Fp32Graphs(embedder, matcher, {"embedder": Limit(fixed_batch, True) if fixed_batch else Limit(),
                                          "matcher": Limit()})


def validation_images(job: ExportJob) -> tuple[torch.Tensor, str]:
    """The images every graph is validated on, and how the report names them: the validation
    folder's, else ``validation_images`` random tensors (seeded: the same every export)."""
    if job.images.validation:
        images = torch.from_numpy(job.images.validation.images)
        return images, f"{len(images)} real images from {job.images.validation.folder}"
    size = job.config.preprocessing().size
    images = torch.randn(job.options.validation_images, 3, size, size, generator=torch.Generator().manual_seed(0))
    return images, f"{len(images)} random tensors"


def validate_fp32(job: ExportJob, staging: Path, fp32_embedder, images: torch.Tensor, described: str) -> dict:
    """The validation report of the fp32 pair, raising :class:`.validate.ValidationError` when a
    bound breaks: the embedder against PyTorch on ``images``; the matcher against PyTorch on
    seeded synthetic features and on ``images``' own, against POT, and as fp16 would compute it."""
    job.log("validating against PyTorch, POT and fp16")
    cfg, matcher, path = job.config, job.matcher, staging / "matcher.onnx"
    report = {"images": described, "embedder": validate.validate_embedder(job.model, fp32_embedder, images)}
    rollout = cfg.marginals == "rollout"
    synthetic = validate.matcher_inputs(cfg.regions, cfg.local_dim, cfg.embed_dim, k=64, marginals=rollout)
    with torch.no_grad():
        out = job.model(images)
    real = (out.local[:1], out.embedding[:1], out.local, out.embedding)
    if rollout:
        real += (out.marginal[:1], out.marginal)
    on_synthetic = validate.validate_matcher(matcher, path, synthetic)
    on_images = validate.validate_matcher(matcher, path, real)
    report["matcher"] = {k: max(on_synthetic[k], on_images[k]) for k in on_synthetic}
    report["pot"] = validate.validate_against_pot(path, synthetic, matcher)
    report["fp16"] = validate.fp16_matcher_check(matcher, synthetic)
    report["bounds"] = {"embedding": validate.EMBEDDING_TOL, "scores": validate.SCORE_TOL,
                        "score_vs_pot": validate.POT_TOL, "fp16_scores": validate.FP16_TOL,
                        "score_vs_pot_partial": validate.POT_PARTIAL_TOL}
    failures = validate.check_bounds(report)
    if failures:
        raise validate.ValidationError(report, failures)
    return report


def tensorrt_readiness(job: ExportJob, staging: Path, graph_sets: dict, fp32: Fp32Graphs) -> dict[str, list[str]]:
    """{graph file: why TensorRT may not build it} (:mod:`.checks`: operators, opset, dynamic
    axes, and the Q/DQ rules of an INT8 graph), each problem logged as a warning, never fatal:
    the bundle runs with ONNX Runtime either way."""
    readiness = {}
    for files in graph_sets.values():
        for graph, name in files.items():
            if name in readiness:
                continue
            io = fp32.embedder if graph == "embedder" else fp32.matcher
            readiness[name] = checks.tensorrt_readiness(staging / name, _dynamic_axes(graph, io, job.options))
            if name.endswith(".int8.onnx"):
                readiness[name] += checks.qdq_rules(staging / name)
    for name, problems in readiness.items():
        for problem in problems:
            job.log(f"warning: {name} may not build with TensorRT: {problem}")
    return readiness


def _dynamic_axes(graph: str, io: dict, options: ExportOptions) -> dict[str, set[int]]:
    """The axes allowed to be symbolic in a graph: the batch axis (unless fixed) or K."""
    if graph == "embedder":
        return {n: (set() if options.fixed_batch else {0}) for n in (*io["inputs"], *io["outputs"])}
    return {n: ({0} if n.startswith("candidate") or n in io["outputs"] else set()) for n in (*io["inputs"],
                                                                                               *io["outputs"])}


def install_detector(job: ExportJob, staging: Path) -> dict | None:
    """Copy the face detector into the bundle (``detector/``) and return its manifest entry
    with the settings it records; None when no detector was asked for."""
    from ..runtime.faces import detection

    entry = detection.install(job.detector, staging) if job.detector else None
    if entry:
        job.log(f"face detector: {entry['file']} (sha256 {entry['sha256'][:12]}…, {job.detector.settings.chip} crops)")
    return entry


def write_manifest(job: ExportJob, staging: Path, *, source: str, fp32: Fp32Graphs, graph_sets: dict,
                   precisions: dict, validation: dict, validation_inputs: dict, readiness: dict,
                   detector: dict | None) -> None:
    """``manifest.json`` in ``staging``, last: what the bundle holds and how it was made, with
    the sha256 of every file written before it. No wall clock, no machine's path: an unchanged
    model re-exports to the same bytes."""
    cfg, options = job.config, job.options
    Manifest(
        created=_created(),
        source=source,
        model=cfg.to_dict(),
        preprocessing=cfg.preprocessing(),
        embedder=GraphIO("embedder.onnx", **fp32.embedder, nodes=checks.node_counts(staging / "embedder.onnx")),
        matcher=GraphIO("matcher.onnx", **fp32.matcher, nodes=checks.node_counts(staging / "matcher.onnx"),
                        form=options.matcher_form),
        graphs=graph_sets,
        precisions=precisions,
        limits={graph: limit.to_dict() for graph, limit in fp32.limits.items()},
        sinkhorn=SinkhornSettings(cfg.sinkhorn_eps, job.iters, cfg.marginals, options.matcher_form,
                                  cfg.centers_from_embedding, cfg.partial_mass),
        rerank_k=options.max_candidates,
        detector=detector,
        validation=validation,
        validation_inputs=validation_inputs,
        tensorrt_readiness=readiness,
        export_options=asdict(options),
        tools=_versions(),
    ).write(staging)


def _versions() -> dict:
    """The tools that made the bundle, as the manifest records them."""
    import onnx
    import onnxruntime

    return {"edgedml": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": graphs.OPSET, "python": platform.python_version()}


def _created() -> str:
    """The manifest's ``created``: the build time reproducible builds agree on
    (``SOURCE_DATE_EPOCH``, seconds since 1970, as UTC) when it is set, else empty. The export's
    wall-clock time and duration are logged, not written: they would make every export's bytes
    differ."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch.isdigit():
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
