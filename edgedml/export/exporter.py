"""`edgedml export`: a checkpoint (or the pretrained default) → a validated, self-describing bundle.

The bundle is assembled in a temporary folder beside ``out`` and renamed into place only when
every file is written and validation passed, so an interrupted export never leaves a half
bundle under the final name (:mod:`edgedml.output_folders`). What would stop it is decided
before the work starts: ``out`` (a link, a file, a folder with anything but a bundle's own
files: :func:`check_output_folder`) and every image folder it reads (:mod:`.image_sets`).
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
from ..bundle import CACHE_FOLDER, MANIFEST, REPORTS, GraphIO, Manifest, SinkhornSettings, read_manifest
from ..errors import BundleError, ConfigError
from ..models.embedder import EmbeddingModel
from ..models.matcher import StructuralMatcher
from ..output_folders import move_into_place, refuse_link, staging_folder
from ..runtime.inference.chunking import Limit
from . import checks, graphs, image_sets, precision, precision_report, validate
from .precision import QUANTIZED

logger = logging.getLogger(__name__)

ENGINES = ("none", "fp32", "fp16", "int8")
MATCHER_FORMS = ("scaling", "log")
STORED_VALIDATION_IMAGES = 4  # kept in the bundle, for checking engines where they are built


@dataclass
class ExportOptions:
    """What ``edgedml export`` was asked for (recorded in the manifest)."""

    precisions: tuple[str, ...] | str = ("fp32",)  # graph sets to write (fp32 always)
    engine: str = "none"
    matcher_form: str = "scaling"  # of the fp32 matcher; the fp16 matcher is always the log form
    iters: int | None = None  # None: the model config's sinkhorn_iters
    max_batch: int = 8
    max_candidates: int = 100
    fixed_batch: int | None = None  # export the embedder at exactly this batch (static shapes)
    calib: str | None = None  # images for INT8 calibration (and validation)
    calib_images: int = 64
    calib_method: str = "minmax"
    validate_with: str | None = None  # images for validation
    validate_data: str | None = None  # a labelled class-per-folder set: MAP@R per precision
    validation_images: int = 8
    overwrite: bool = False
    detector: str = "none"  # "yunet:PATH": copy that face detector into the bundle (runtime.detection)
    detector_settings: dict | None = None  # DetectorSettings fields; None: the defaults
    chip: str | None = None  # how the detector cuts faces: "square" or "dlib"; None: the model's (face_settings)

    def __post_init__(self):
        self.precisions = precision.parse_precisions(self.precisions)
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine precision {self.engine!r}; choose one of {list(ENGINES)}")
        if self.engine not in ("none", *self.precisions):
            self.precisions = precision.parse_precisions((*self.precisions, self.engine))
        if self.matcher_form not in MATCHER_FORMS:
            raise ConfigError(f"unknown matcher form {self.matcher_form!r}; choose one of {list(MATCHER_FORMS)}")
        quantized = [p for p in self.precisions if p in QUANTIZED]
        if quantized and not self.calib:  # fp16 without a folder is checked on the shipped photos (image_sets)
            raise ConfigError(f"{quantized[0]} learns its ranges from real images of your own domain (what the "
                              f"camera sees), which edgedml cannot ship: pass --calib DIR")
        if self.calib_method not in precision.CALIBRATION_METHODS:
            raise ConfigError(f"unknown calibration method {self.calib_method!r}; choose one of "
                              f"{list(precision.CALIBRATION_METHODS)}")
        if self.max_batch < 1 or self.max_candidates < 1 or (self.iters is not None and self.iters < 1) \
                or self.calib_images < 1 or (self.fixed_batch is not None and self.fixed_batch < 1):
            raise ConfigError("max_batch, max_candidates, iters, calib_images and fixed_batch must be positive")
        from ..runtime.faces.detection import DetectorSettings, parse_spec

        kind, _ = parse_spec(self.detector)
        if self.detector_settings is not None:
            DetectorSettings.from_dict(self.detector_settings)
        if self.chip is not None:
            if kind == "none":
                raise ConfigError(f"--chip {self.chip} says how the detector's faces are cut, and no detector is "
                                  f"exported: pass --detector yunet:PATH, or leave --chip out")
            DetectorSettings(chip=self.chip)  # a known chip
            recorded = (self.detector_settings or {}).get("chip", self.chip)
            if recorded != self.chip:
                raise ConfigError(f"chip {self.chip!r} and detector_settings' chip {recorded!r} disagree; give one")


def face_settings(cfg, options: ExportOptions):
    """The detector settings a bundle of a model with config ``cfg`` records: ``options``'
    detector_settings, with the chip asked for (``options.chip``, else detector_settings'), or
    the one the backbone works on (dlib's 150×150 chip for ``dlib_resnet``), else the square crop.
    A chip other than the one the backbone works on is refused: its scores would mean nothing."""
    from ..runtime.faces.detection import CHIP_OF_BACKBONE, DetectorSettings

    given = dict(options.detector_settings or {})
    asked = options.chip or given.get("chip")
    needed = CHIP_OF_BACKBONE.get(cfg.backbone)
    if needed and asked and asked != needed and options.detector != "none":
        raise ConfigError(f"the {cfg.backbone} network works only on the face crop it was trained on (chip {needed}), "
                          f"not on {asked} crops: leave --chip out (this model's default is {needed}) or pass "
                          f"--chip {needed}")
    return DetectorSettings.from_dict({**given, "chip": asked or needed or "square"})


def _versions() -> dict:
    import onnx
    import onnxruntime

    return {"edgedml": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": graphs.OPSET, "python": platform.python_version()}


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

    ``log`` receives each progress line (default: this module's logger, at INFO; the CLI echoes
    them on stderr).
    """
    log = log or logger.info
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _export_bundle(model, out, options, source, log, progress)
    finally:
        torch.set_num_threads(threads)


def _export_bundle(model: EmbeddingModel, out: str | Path, options: ExportOptions | None, source: str,
                   log, progress: bool = False) -> Manifest:
    from ..runtime.faces import detection

    options = options or ExportOptions()
    out = Path(out)
    check_output_folder(out, options.overwrite)
    cfg = model.config
    face_detector = detection.load_detector(options.detector, face_settings(cfg, options))  # before the slow work
    inputs = image_sets.export_images(  # an empty or unreadable folder fails before the slow work, too
        cfg.preprocessing(), calib=options.calib, calib_images=options.calib_images,
        quantize=any(p in QUANTIZED for p in options.precisions), validate_with=options.validate_with,
        validation_images=options.validation_images, validate_data=options.validate_data,
        compare_precisions=len(options.precisions) > 1)
    out.parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it (staging_folder makes it, too)
    for warning in inputs.warnings:
        log(warning)
    iters = options.iters or cfg.sinkhorn_iters
    model = model.eval().cpu()
    matcher = StructuralMatcher.for_model(cfg, options.matcher_form, iters)
    staging = staging_folder(out)
    started = time.perf_counter()
    try:
        log("exporting embedder.onnx" + (f" (fixed batch {options.fixed_batch})" if options.fixed_batch else ""))
        embedder_io = graphs.export_embedder(model, staging / "embedder.onnx", fixed_batch=options.fixed_batch)
        log(f"exporting matcher.onnx ({options.matcher_form} form, {iters} Sinkhorn iterations)")
        matcher_io = graphs.export_matcher(matcher, staging / "matcher.onnx", cfg.regions, cfg.local_dim,
                                           cfg.embed_dim)
        limits = {"embedder": Limit(options.fixed_batch, True) if options.fixed_batch else Limit(),
                  "matcher": Limit()}

        log("validating against PyTorch, POT and fp16")
        if inputs.validation:
            images = torch.from_numpy(inputs.validation.images)
            image_source = f"{len(images)} real images from {inputs.validation.folder}"
        else:
            size = cfg.preprocessing().size
            images = torch.randn(options.validation_images, 3, size, size, generator=torch.Generator().manual_seed(0))
            image_source = f"{len(images)} random tensors"
        fp32_embedder = precision_report.embedder_runner(staging / "embedder.onnx", limits["embedder"])
        report = {"images": image_source,
                  "embedder": validate.validate_embedder(model, fp32_embedder, images)}
        rollout = cfg.marginals == "rollout"
        synthetic = validate.matcher_inputs(cfg.regions, cfg.local_dim, cfg.embed_dim, k=64, marginals=rollout)
        with torch.no_grad():
            out_t = model(images)
        real = (out_t.local[:1], out_t.embedding[:1], out_t.local, out_t.embedding)
        if rollout:
            real += (out_t.marginal[:1], out_t.marginal)
        on_synthetic = validate.validate_matcher(matcher, staging / "matcher.onnx", synthetic)
        on_images = validate.validate_matcher(matcher, staging / "matcher.onnx", real)
        report["matcher"] = {k: max(on_synthetic[k], on_images[k]) for k in on_synthetic}
        report["pot"] = validate.validate_against_pot(staging / "matcher.onnx", synthetic, matcher)
        report["fp16"] = validate.fp16_matcher_check(matcher, synthetic)
        report["bounds"] = {"embedding": validate.EMBEDDING_TOL, "scores": validate.SCORE_TOL,
                            "score_vs_pot": validate.POT_TOL, "fp16_scores": validate.FP16_TOL,
                            "score_vs_pot_partial": validate.POT_PARTIAL_TOL}
        failures = validate.check_bounds(report)
        if failures:
            raise validate.ValidationError(report, failures)

        graph_sets, precision_facts = _write_precisions(model, staging, options, inputs.calibration, iters, log,
                                                            progress)
        runners = _runners(staging, graph_sets, limits["embedder"], fp32_embedder)
        stored = _store_validation_inputs(staging, images[:STORED_VALIDATION_IMAGES].numpy(), runners)
        if len(graph_sets) > 1:
            log("validating " + ", ".join(p for p in graph_sets if p != "fp32") + " against fp32 on real images")
            report["precisions"], failures = _validate_precisions(runners, images.numpy(), inputs.labelled, cfg,
                                                                        iters, options.max_candidates, log,
                                                                        progress=progress)
            report["precision_bounds"] = {p: vars(b) for p, b in precision_report.BOUNDS.items()} | {
                "matcher_scores": precision_report.MATCHER_SCORE_TOL}
            if failures:
                raise validate.ValidationError(report, failures)

        readiness = {}
        for files in graph_sets.values():
            for graph, name in files.items():
                if name in readiness:
                    continue
                io = embedder_io if graph == "embedder" else matcher_io
                readiness[name] = checks.tensorrt_readiness(staging / name, _dynamic_axes(graph, io, options))
                if name.endswith(".int8.onnx"):
                    readiness[name] += checks.qdq_rules(staging / name)
        for name, problems in readiness.items():
            for problem in problems:
                log(f"warning: {name} may not build with TensorRT: {problem}")
        detector_entry = detection.install(face_detector, staging) if face_detector else None
        if detector_entry:
            log(f"face detector: {detector_entry['file']} (sha256 {detector_entry['sha256'][:12]}…, "
                f"{face_detector.settings.chip} crops)")
        Manifest(
            created=_created(),  # no wall clock: an unchanged model re-exports to the same bytes
            source=source,
            model=cfg.to_dict(),
            preprocessing=cfg.preprocessing(),
            embedder=GraphIO("embedder.onnx", **embedder_io, nodes=checks.node_counts(staging / "embedder.onnx")),
            matcher=GraphIO("matcher.onnx", **matcher_io, nodes=checks.node_counts(staging / "matcher.onnx"),
                            form=options.matcher_form),
            graphs=graph_sets,
            precisions=precision_facts,
            limits={graph: limit.to_dict() for graph, limit in limits.items()},
            sinkhorn=SinkhornSettings(cfg.sinkhorn_eps, iters, cfg.marginals, options.matcher_form,
                                      cfg.centers_from_embedding, cfg.partial_mass),
            rerank_k=options.max_candidates,
            detector=detector_entry,
            validation=report,
            validation_inputs=stored,
            tensorrt_readiness=readiness,
            export_options=asdict(options),
            tools=_versions(),
        ).write(staging)
        check_output_folder(out, options.overwrite)  # still only a bundle (or empty) at the last moment
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"bundle written to {out} in {time.perf_counter() - started:.1f} s")
    return read_manifest(out, verify=False)


BUNDLE_FOLDERS = ("validation", "detector", "engines")  # what export and build-engine write, file by file


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an empty folder or, with ``overwrite``, a folder that
    holds nothing but an edgedml bundle's own files (:func:`foreign_entries`): --overwrite
    replaces an old bundle, never a user's file. Decided before any work starts."""
    refuse_link(out, "--out")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} is a file; choose a folder path for --out")
    if out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise ConfigError(f"--out {out} is the current folder (or one above it); choose a new folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    if not (out / MANIFEST).is_file():
        raise ConfigError(f"{out} is not an edgedml bundle (no manifest.json), so --overwrite will not replace it: "
                          f"nothing was changed; choose a new folder for --out")
    try:
        manifest = read_manifest(out, verify=False)
    except BundleError as exc:
        raise ConfigError(f"{out} is not an edgedml bundle ({exc}), so --overwrite will not replace it: nothing was "
                          f"changed; choose a new folder for --out") from exc
    foreign = foreign_entries(out, manifest)
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise ConfigError(f"{out} is not an edgedml bundle alone: it also holds {shown}, so --overwrite will not "
                          f"replace it: nothing was changed; move those out or choose a new folder for --out")


def foreign_entries(root: Path, manifest: Manifest) -> list[str]:
    """What in a bundle folder is not the bundle's own, as paths relative to it (sorted; a folder
    outside the bundle's own ends with "/" and stands for all it holds). The bundle's own are:
    the manifest (and its ``.tmp``), the files the manifest lists in ``files``, its reports (the
    calibration pictures), temporary files (``*.tmp``) of a build in progress inside its folders
    (``validation/``, ``detector/``, ``engines/``), and anything under ``cache/``. A link is never
    the bundle's own."""
    listed = set(manifest.files) | {MANIFEST, MANIFEST + ".tmp"} | REPORTS
    folders = set(BUNDLE_FOLDERS) | {"/".join(name.split("/")[:k]) for name in listed
                                     for k in range(1, name.count("/") + 1)}

    def walk(folder: Path, prefix: str) -> list[str]:
        found = []
        for entry in sorted(folder.iterdir()):
            relative = prefix + entry.name
            if entry.is_symlink():
                found.append(relative)
            elif entry.is_dir():
                if relative in folders:
                    found += walk(entry, relative + "/")
                elif relative != CACHE_FOLDER:
                    found.append(relative + "/")
            elif not (relative in listed or (relative.endswith(".tmp") and relative.split("/")[0] in BUNDLE_FOLDERS)):
                found.append(relative)
        return found

    return walk(root, "")


def _dynamic_axes(graph: str, io: dict, options: ExportOptions) -> dict[str, set[int]]:
    """The axes allowed to be symbolic in a graph: the batch axis (unless fixed) or K."""
    if graph == "embedder":
        return {n: (set() if options.fixed_batch else {0}) for n in (*io["inputs"], *io["outputs"])}
    return {n: ({0} if n.startswith("candidate") or n in io["outputs"] else set()) for n in (*io["inputs"],
                                                                                               *io["outputs"])}


def _write_precisions(model: EmbeddingModel, staging: Path, options: ExportOptions,
                      calibration: image_sets.ImageSet | None, iters: int, log,
                      progress: bool = False) -> tuple[dict, dict]:
    """The fp16 / INT8 graph files beside the fp32 ones: ({precision: {graph: file}}, {precision: facts})."""
    cfg = model.config
    graph_sets = {"fp32": {g: precision.graph_file(g, "fp32") for g in ("embedder", "matcher")}}
    facts: dict = {"fp32": {"matcher_form": options.matcher_form}}
    if "fp16" in options.precisions:
        log("converting to fp16 (embedder, and the log-form matcher)")
        log_matcher = StructuralMatcher.for_model(cfg, "log", iters)
        graphs.export_matcher(log_matcher, staging / "matcher.log.tmp", cfg.regions, cfg.local_dim, cfg.embed_dim)
        files = graph_sets["fp16"] = {g: precision.graph_file(g, "fp16") for g in ("embedder", "matcher")}
        facts["fp16"] = {"embedder": precision.to_fp16(staging / "embedder.onnx", staging / files["embedder"]),
                         "matcher": precision.to_fp16(staging / "matcher.log.tmp", staging / files["matcher"]),
                         "matcher_form": "log"}
        (staging / "matcher.log.tmp").unlink()
    quantized = [p for p in options.precisions if p in QUANTIZED]
    if quantized:
        calib = calibration.images
        for name in quantized:
            log(f"quantizing the embedder to {name} ({precision.LAYOUTS[name].target}) on {len(calib)} images "
                f"from {options.calib}")
            file = precision.graph_file("embedder", name)
            facts[name] = {"embedder": precision.quantize(staging / "embedder.onnx", staging / file,
                                                          precision.LAYOUTS[name], calib, options.calib_method,
                                                          progress=progress),
                           "matcher": "the fp32 graph (not quantized)", "matcher_form": options.matcher_form}
            graph_sets[name] = {"embedder": file, "matcher": "matcher.onnx"}
    return graph_sets, facts


def _runners(staging: Path, graph_sets: dict, limit: Limit, fp32_embedder) -> dict:
    """{precision: (embedder runner, matcher runner)}: one ONNX Runtime session per graph file,
    shared by the precisions that use the same file (the INT8 sets use the fp32 matcher)."""
    made = {"embedder.onnx": fp32_embedder}

    def runner(file, make):
        if file not in made:
            made[file] = make(staging / file)
        return made[file]

    return {name: (runner(files["embedder"], lambda path: precision_report.embedder_runner(path, limit)),
                   runner(files["matcher"], precision_report.matcher_runner))
            for name, files in graph_sets.items()}


def _store_validation_inputs(staging: Path, images, runners: dict) -> dict:
    """Real inputs and ONNX Runtime's outputs of every graph set on them, kept in the bundle
    (``validation/``, numpy .npz, no pickles) so that an engine built anywhere is checked
    against exactly what ONNX Runtime computed here."""
    folder = staging / "validation"
    folder.mkdir()
    fp32 = runners["fp32"][0]({"images": images})
    feeds = precision_report.matcher_feeds(fp32["embedding"], fp32["local"], fp32.get("marginal"))
    save_npz(folder / "inputs.npz", {"images": images, **feeds})
    outputs = {}
    for name, (embedder, matcher) in runners.items():
        embedded = fp32 if name == "fp32" else embedder({"images": images})
        path = f"validation/outputs.{name}.npz"
        save_npz(staging / path, {**{f"embedder.{k}": v for k, v in embedded.items()},
                                  **{f"matcher.{k}": v for k, v in matcher(feeds).items()}})
        outputs[name] = path
    return {"inputs": "validation/inputs.npz", "outputs": outputs}


def save_npz(path: Path, arrays: dict) -> None:
    """``np.savez`` with every entry's zip time fixed at 1980-01-01 and the entries in the order
    given: the same arrays give the same bytes (no pickles)."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                              force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)


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


def _validate_precisions(runners: dict, images, labelled: image_sets.LabelledSet | None, cfg, iters: int, k: int,
                         log, progress: bool = False) -> tuple[dict, list[str]]:
    """Run every non-fp32 graph set against fp32 (see :mod:`precision_report`)."""
    ref = runners["fp32"][0]({"images": images})
    feeds = precision_report.matcher_feeds(ref["embedding"], ref["local"], ref.get("marginal"))
    ref_match = runners["fp32"][1](feeds)
    reports = {name: {"embedder": precision_report.compare_outputs(embedder({"images": images}), ref),
                      "matcher": precision_report.compare_matchers(matcher(feeds), ref_match)}
               for name, (embedder, matcher) in runners.items() if name != "fp32"}
    if labelled:
        scores = _labelled_map_at_r(labelled, {n: r[0] for n, r in runners.items()}, cfg, iters, k, log,
                                    progress)
        for name, report in reports.items():
            report["map_at_r"] = {"fp32": scores["fp32"], name: scores[name], "data": labelled.folder,
                                  "drop_global": round(scores["fp32"]["global"] - scores[name]["global"], 5),
                                  "drop_multiscale": round(scores["fp32"]["multiscale"] - scores[name]["multiscale"],
                                                           5)}
    failures = [f for name, report in reports.items() for f in precision_report.check(name, report)]
    return reports, failures


def _labelled_map_at_r(labelled: image_sets.LabelledSet, embedders: dict, cfg, iters: int, k: int, log,
                       progress: bool = False) -> dict:
    """MAP@R (global, multi-scale) of every precision's embedder on a class-per-folder set."""
    import numpy as np

    from ..runtime.inference.image import load_image
    from ..runtime.inference.preprocess import to_network_input

    paths, labels = labelled.paths, labelled.labels
    log(f"MAP@R on {len(paths)} labelled images of {len(labelled.names)} classes from {labelled.folder}")
    spec = cfg.preprocessing()
    features = {name: ([], []) for name in embedders}
    from ..progress import progress_bar

    for start in progress_bar(range(0, len(paths), 32), desc="MAP@R images", unit="batch", enabled=progress):
        batch = np.stack([to_network_input(load_image(p), spec) for p in paths[start:start + 32]])
        for name, run in embedders.items():
            out = run({"images": batch})
            features[name][0].append(out["embedding"])
            features[name][1].append(out["local"])
    sinkhorn = {"eps": cfg.sinkhorn_eps, "iters": iters, "marginals": cfg.marginals,
                "centers": cfg.centers_from_embedding}
    return {name: precision_report.map_at_r(np.concatenate(emb), np.concatenate(loc), labels, k, sinkhorn)
            for name, (emb, loc) in features.items()}

