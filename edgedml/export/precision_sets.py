"""The fp16 and INT8 graph sets beside the fp32 pair, and how they are held to it: each set's
graphs are written (:func:`write_precision_sets`: fp16 by conversion, with the log-form matcher;
INT8 by quantizing the embedder on the calibration images, beside the fp32 matcher), every graph
file gets one ONNX Runtime session (:func:`graph_runners`), and every set is compared with fp32 on
real images, with MAP@R per precision on a labelled set when one is given
(:func:`validate_precisions`; the bounds are :mod:`.precision_report`'s).
"""

from __future__ import annotations

from pathlib import Path

from ..models.matcher import StructuralMatcher
from ..runtime.inference.chunking import Limit
from . import graphs, precision, precision_report, validate
from .job import ExportJob
from .precision import QUANTIZED


def write_precision_sets(job: ExportJob, staging: Path) -> tuple[dict, dict]:
    """The fp16 / INT8 graph files beside the fp32 ones (``embedder.onnx`` and ``matcher.onnx``
    in ``staging``): ({precision: {graph: file}}, {precision: facts}), fp32 included."""
    cfg, options, iters, log = job.config, job.options, job.iters, job.log
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
        calib = job.images.calibration.images
        for name in quantized:
            log(f"quantizing the embedder to {name} ({precision.LAYOUTS[name].target}) on {len(calib)} images "
                f"from {options.calib}")
            file = precision.graph_file("embedder", name)
            facts[name] = {"embedder": precision.quantize(staging / "embedder.onnx", staging / file,
                                                          precision.LAYOUTS[name], calib, options.calib_method,
                                                          progress=job.progress),
                           "matcher": "the fp32 graph (not quantized)", "matcher_form": options.matcher_form}
            graph_sets[name] = {"embedder": file, "matcher": "matcher.onnx"}
    return graph_sets, facts


def graph_runners(staging: Path, graph_sets: dict, limit: Limit, fp32_embedder) -> dict:
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


def validate_precision_sets(job: ExportJob, runners: dict, images, report: dict) -> None:
    """Hold every fp16 / INT8 set to fp32 on the validation ``images`` (and MAP@R on the labelled
    set, when given): adds ``precisions`` and ``precision_bounds`` to the validation ``report``
    and raises :class:`.validate.ValidationError` with it when a bound breaks."""
    job.log("validating " + ", ".join(p for p in runners if p != "fp32") + " against fp32 on real images")
    report["precisions"], failures = _compare_with_fp32(job, runners, images)
    report["precision_bounds"] = {p: vars(b) for p, b in precision_report.BOUNDS.items()} | {
        "matcher_scores": precision_report.MATCHER_SCORE_TOL}
    if failures:
        raise validate.ValidationError(report, failures)


def _compare_with_fp32(job: ExportJob, runners: dict, images) -> tuple[dict, list[str]]:
    """Run every non-fp32 graph set against fp32 (see :mod:`precision_report`)."""
    ref = runners["fp32"][0]({"images": images})
    feeds = precision_report.matcher_feeds(ref["embedding"], ref["local"], ref.get("marginal"))
    ref_match = runners["fp32"][1](feeds)
    reports = {name: {"embedder": precision_report.compare_outputs(embedder({"images": images}), ref),
                      "matcher": precision_report.compare_matchers(matcher(feeds), ref_match)}
               for name, (embedder, matcher) in runners.items() if name != "fp32"}
    labelled = job.images.labelled
    if labelled:
        scores = labelled_map_at_r(job, {n: r[0] for n, r in runners.items()})
        for name, report in reports.items():
            report["map_at_r"] = {"fp32": scores["fp32"], name: scores[name], "data": labelled.folder,
                                  "drop_global": round(scores["fp32"]["global"] - scores[name]["global"], 5),
                                  "drop_multiscale": round(scores["fp32"]["multiscale"] - scores[name]["multiscale"],
                                                           5)}
    failures = [f for name, report in reports.items() for f in precision_report.check(name, report)]
    return reports, failures


def labelled_map_at_r(job: ExportJob, embedders: dict) -> dict:
    """MAP@R (global, multi-scale) of every precision's embedder on the labelled class-per-folder
    set (``--validate-data``), re-ranking the top ``max_candidates``."""
    import numpy as np

    from ..progress import progress_bar
    from ..runtime.inference.image import load_image
    from ..runtime.inference.preprocess import to_network_input

    cfg, labelled = job.config, job.images.labelled
    paths, labels = labelled.paths, labelled.labels
    job.log(f"MAP@R on {len(paths)} labelled images of {len(labelled.names)} classes from {labelled.folder}")
    spec = cfg.preprocessing()
    features = {name: ([], []) for name in embedders}
    for start in progress_bar(range(0, len(paths), 32), desc="MAP@R images", unit="batch", enabled=job.progress):
        batch = np.stack([to_network_input(load_image(p), spec) for p in paths[start:start + 32]])
        for name, run in embedders.items():
            out = run({"images": batch})
            features[name][0].append(out["embedding"])
            features[name][1].append(out["local"])
    sinkhorn = {"eps": cfg.sinkhorn_eps, "iters": job.iters, "marginals": cfg.marginals,
                "centers": cfg.centers_from_embedding}
    return {name: precision_report.map_at_r(np.concatenate(emb), np.concatenate(loc), labels,
                                       job.options.max_candidates, sinkhorn)
            for name, (emb, loc) in features.items()}
