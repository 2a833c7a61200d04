"""The `edgedml` command line. Each command imports the heavy packages it needs, when it runs."""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path

import click

from . import __version__
from .errors import MissingDependencyError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgedml")
def main() -> None:
    """edgedml: interpretable deep metric learning, from training to devices."""


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except Exception:  # not installed, or broken: report it as absent rather than crash `info`
        return None


def collect_info() -> dict:
    """What is installed: versions of the optional packages, ONNX Runtime providers, GPUs."""
    info: dict = {
        "edgedml": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(module) for name, module in [
            ("numpy", "numpy"), ("opencv", "cv2"), ("torch", "torch"), ("torchvision", "torchvision"),
            ("timm", "timm"), ("pytorch-metric-learning", "pytorch_metric_learning"), ("pot", "ot"),
            ("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt"),
        ]},
    }
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = []
    gpus: list[str] = []
    if info["packages"]["torch"]:
        import torch

        info["torch_cuda"] = torch.cuda.is_available()
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import cv2

        info["opencv_cuda_devices"] = int(cv2.cuda.getCudaEnabledDeviceCount())
    except Exception:  # OpenCV built without its CUDA module
        info["opencv_cuda_devices"] = 0
    info["gpus"] = gpus
    return info


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Report what is installed: torch, ONNX Runtime providers, TensorRT, GPUs."""
    data = collect_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"edgedml {data['edgedml']} on Python {data['python']} ({data['platform']})")
    for name, version in data["packages"].items():
        click.echo(f"  {name:<24} {version or 'not installed'}")
    click.echo(f"  onnxruntime providers    {', '.join(data['onnxruntime_providers']) or 'none'}")
    click.echo(f"  GPUs                     {', '.join(data['gpus']) or 'none visible to torch'}")
    click.echo(f"  OpenCV CUDA devices      {data['opencv_cuda_devices']}")


def _class_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _fail(exc: Exception) -> None:
    """Turn an edgedml error into a one-line message and exit code 2 (usage/config error)."""
    raise click.ClickException(str(exc)) from exc


_data_options = [
    click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
                 help="Dataset root: class folders, or CUB-200-2011 / Cars196 / SOP as distributed."),
    click.option("--format", "data_format", default="auto", show_default=True,
                 type=click.Choice(["auto", "folders", "cub200", "cars196", "sop"])),
    click.option("--train-classes", help="Class folders only: comma-separated training classes."),
    click.option("--test-classes", help="Class folders only: comma-separated test classes."),
]


def _with(options):
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


@main.command()
@_with(_data_options)
@click.option("--out", default="runs/edgedml", show_default=True, help="Run folder (checkpoints, metrics).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A train_config.json to start from; flags given here override it.")
@click.option("--head", type=click.Choice(["diml", "grouping", "abe"]), help="[default: diml]")
@click.option("--backbone", help="efficientnet_lite0 (default), efficientnet_lite1/2, resnet50, googlenet.")
@click.option("--backbone-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local ImageNet state dict for resnet50 / googlenet (never downloaded).")
@click.option("--embed-dim", type=int, help="Global embedding size [default: the head's].")
@click.option("--image-size", type=int, help="Input size [default: the backbone's].")
@click.option("--loss", type=click.Choice(["multi_similarity", "margin", "triplet", "proxy_anchor"]),
              help="Base metric loss [default: multi_similarity].")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int, help="Global batch size (all ranks together).")
@click.option("--m-per-class", type=int, help="Images per class in a batch.")
@click.option("--batches-per-epoch", type=int)
@click.option("--lr", type=float, help="Backbone learning rate (AdamW, warm-up then cosine).")
@click.option("--head-lr", type=float)
@click.option("--freeze-stages", type=int, help="Freeze the first N backbone stages.")
@click.option("--freeze-bn/--train-bn", default=None, help="Freeze BatchNorm statistics [default: freeze].")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA [default: on].")
@click.option("--diversity-weight", type=float, help="Attentive grouping's diversity loss weight.")
@click.option("--divergence-weight", type=float, help="ABE's divergence loss weight.")
@click.option("--val-fraction", type=float, help="Training classes held out to pick the best epoch.")
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda, cuda:1 ...")
@click.option("--workers", type=int, help="Data-loading processes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last finished epoch.")
@click.option("--eval/--no-eval", "final_eval", default=True, help="Evaluate the best model on the test classes.")
def train(data, data_format, train_classes, test_classes, out, config_file, resume, final_eval, **flags):
    """Train a model on a dataset; checkpoints, metrics.jsonl and the config go to --out.

    Runs on CPU, CUDA, and under torchrun (DistributedDataParallel; gloo on CPU, NCCL on GPU):
    torchrun --nproc_per_node 2 -m edgedml.cli train --data DIR ...
    """
    import os

    from .errors import EdgeDMLError
    from .models import ModelConfig

    try:
        from .training.trainer import TrainConfig, train as run_training
    except ImportError as exc:
        _fail(MissingDependencyError(exc.name or "torch", "edgedml train", "train"))
    base = {}
    if resume and config_file is None and (Path(out) / "train_config.json").is_file():
        config_file = Path(out) / "train_config.json"
    if config_file:
        base = json.loads(Path(config_file).read_text())
    model = dict(base.get("model", {}))
    model_flags = {k: flags.pop(k) for k in ("head", "backbone", "backbone_weights", "embed_dim", "image_size")}
    if model_flags["head"] not in (None, model.get("head")) and model_flags["embed_dim"] is None:
        model.pop("embed_dim", None)  # a new head takes its own default embedding size
    model.update({k: v for k, v in model_flags.items() if v is not None})
    base.update({k: v for k, v in flags.items() if v is not None})
    base.update(data=data, out=out, data_format=data_format, model=model)
    if _class_list(train_classes):
        base["train_classes"] = _class_list(train_classes)
    if _class_list(test_classes):
        base["test_classes"] = _class_list(test_classes)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        cfg = TrainConfig.from_dict({**base, "model": ModelConfig.from_dict(base["model"])})
        if world > 1:
            import torch
            import torch.distributed as dist

            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        summary = run_training(cfg, resume=resume)
        if final_eval and summary and int(os.environ.get("RANK", "0")) == 0:
            from .training.evaluate import evaluate_model
            from .training.trainer import load_cfg_split
            from .models import load_checkpoint

            split = load_cfg_split(cfg)
            model_best = load_checkpoint(summary["best"])
            results = evaluate_model(model_best, split.test, workers=cfg.workers, progress=cfg.progress)
            (Path(out) / "test_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
            click.echo(_table(results))
    except EdgeDMLError as exc:
        _fail(exc)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _table(results: dict) -> str:
    columns = list(next(iter(results.values())).keys())
    lines = ["ranking     " + "".join(f"{c:>13}" for c in columns)]
    for name, row in results.items():
        lines.append(f"{name:<12}" + "".join(f"{row[c]:>13.4f}" if c in row else f"{'-':>13}" for c in columns))
    return "\n".join(lines)


@main.command(name="eval")
@_with(_data_options)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="A .safetensors checkpoint; without it, the ImageNet-pretrained default model (untrained head).")
@click.option("--head", type=click.Choice(["diml", "grouping", "abe"]), default="diml", show_default=True,
              help="Head of the untrained model (ignored with --checkpoint).")
@click.option("--image-size", type=int, help="Input size of the untrained model (ignored with --checkpoint).")
@click.option("--split", "which", type=click.Choice(["test", "train", "all"]), default="test", show_default=True,
              help="all: every class of the dataset (a shipped or pretrained model on your own folder).")
@click.option("--k", "rerank_k", default=100, show_default=True, help="Candidates re-ranked by multi-scale matching.")
@click.option("--structural/--no-structural", default=None,
              help="Rank all pairs by structural similarity [default: on up to 10,000 images].")
@click.option("--nmi/--no-nmi", default=True, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seeds the untrained head.")
def evaluate(data, data_format, train_classes, test_classes, checkpoint, head, image_size, which, rerank_k,
             structural, nmi, json_out, device, batch_size, workers, seed):
    """Recall@{1,2,4,8}, MAP@R, R-precision (and NMI) for global, structural and multi-scale ranking."""
    from .errors import EdgeDMLError

    try:
        import torch

        from .models import ModelConfig, build_model, load_checkpoint
        from .errors import ConfigError
        from .training.datasets import check_readable, load_split
        from .training.evaluate import evaluate_model
        from .training.trainer import resolve_device
    except ImportError as exc:
        _fail(MissingDependencyError(exc.name or "torch", "edgedml eval", "train"))
    try:
        lists = {k: v for k, v in (("train_classes", _class_list(train_classes)),
                                   ("test_classes", _class_list(test_classes))) if v}
        split = load_split(data, data_format, **lists)
        samples = {"test": split.test, "train": split.train, "all": _all_classes(split)}[which]
        samples, unreadable = check_readable(samples, progress=False)
        for path in unreadable:  # listed before the progress bars, and left out of every count
            click.echo(f"skipped unreadable image: {path}", err=True)
        if len({s.label for s in samples}) < 2:
            raise ConfigError(f"{data} has fewer than 2 classes with readable images in the {which} split")
        dev = resolve_device(device)
        if checkpoint:
            model = load_checkpoint(checkpoint, device=str(dev))
        else:
            torch.manual_seed(seed)
            model = build_model(ModelConfig(head=head, image_size=image_size)).to(dev)
        results = evaluate_model(model, samples, device=dev, batch_size=batch_size, workers=workers,
                                 progress=True, k=rerank_k, structural=structural, nmi=nmi)
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"{len(samples)} images, {len({s.label for s in samples})} classes ({which} split of {data})"
               + (f"; {len(unreadable)} unreadable images skipped" if unreadable else ""))
    click.echo(_table(results))
    if json_out:
        Path(json_out).write_text(json.dumps({"data": str(data), "split": which, "checkpoint": checkpoint,
                                              "images": len(samples), "results": results}, indent=2) + "\n")


def _all_classes(split):
    """The train and the test samples together, the test labels moved past the train ones."""
    import dataclasses

    offset = 1 + max((s.label for s in split.train), default=-1)
    return list(split.train) + [dataclasses.replace(s, label=s.label + offset) for s in split.test]


EXIT_NO_ENGINE = 3  # the bundle is complete but TensorRT or a GPU is missing here
_PRECISION_CHOICE = click.Choice(["fp32", "fp16", "int8", "int8-cpu"])


def _build_engines_or_explain(bundle, engine, max_batch, max_candidates) -> None:
    from .runtime.tensorrt import EngineUnavailable, build_engines

    try:
        build_engines(bundle, engine, max_batch, max_candidates, log=lambda m: click.echo(m, err=True))
    except EngineUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_NO_ENGINE)


@main.command(name="export")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="A .safetensors checkpoint; without it, the ImageNet-pretrained default model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="Graph sets to write, comma-separated: fp32, fp16, int8 (TensorRT QDQ), int8-cpu (ONNX Runtime "
                   "QDQ). Each is run and validated against fp32 on real images.")
@click.option("--engine", type=click.Choice(["none", "fp32", "fp16", "int8"]), default="none", show_default=True,
              help="Also build TensorRT engines from that precision's graphs (needs TensorRT and a CUDA GPU here).")
@click.option("--calib", type=click.Path(exists=True, file_okay=False),
              help="Real images for INT8 calibration (also used for validation).")
@click.option("--calib-images", default=64, show_default=True, help="Calibration images taken from --calib.")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="How INT8 ranges are chosen from the calibration activations.")
@click.option("--validate-with", type=click.Path(exists=True, file_okay=False),
              help="Real images to validate against PyTorch and fp32 [default: --calib, else random tensors].")
@click.option("--validate-data", type=click.Path(exists=True, file_okay=False),
              help="A labelled class-per-folder set: MAP@R of every precision against fp32 (bounded).")
@click.option("--max-batch", default=8, show_default=True, help="Largest embedder batch of the engine profile.")
@click.option("--max-candidates", default=100, show_default=True, help="Largest K of the matcher engine profile.")
@click.option("--fixed-batch", type=int, help="Export the embedder at exactly this batch (static shapes).")
@click.option("--iters", type=int, help="Sinkhorn iterations unrolled in matcher.onnx [default: the model's].")
@click.option("--matcher-form", type=click.Choice(["scaling", "log"]), default="scaling", show_default=True,
              help="fp32 matcher: scaling (fastest) or log. The fp16 matcher is always the log form.")
@click.option("--head", type=click.Choice(["diml", "grouping", "abe"]), default="diml", show_default=True,
              help="Head of the pretrained default (ignored with --checkpoint).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle in --out.")
def export_command(checkpoint, out, precisions, engine, calib, calib_images, calib_method, validate_with,
                   validate_data, max_batch, max_candidates, fixed_batch, iters, matcher_form, head, overwrite):
    """Export a model to a validated bundle: one embedder and one matcher graph per precision,
    manifest.json [, TensorRT engines]."""
    from .errors import EdgeDMLError

    try:
        import torch

        from .export.exporter import ExportOptions, export_bundle
        from .models import ModelConfig, build_model, load_checkpoint
    except ImportError as exc:
        _fail(MissingDependencyError(exc.name or "torch", "edgedml export", "export"))
    try:
        options = ExportOptions(precisions=precisions, engine=engine, matcher_form=matcher_form, iters=iters,
                                max_batch=max_batch, max_candidates=max_candidates, fixed_batch=fixed_batch,
                                calib=calib, calib_images=calib_images, calib_method=calib_method,
                                validate_with=validate_with, validate_data=validate_data, overwrite=overwrite)
        if checkpoint:
            model, source = load_checkpoint(checkpoint), f"checkpoint {checkpoint}"
        else:
            torch.manual_seed(0)  # the untrained head of the default model is reproducible
            model, source = build_model(ModelConfig(head=head)), "ImageNet-pretrained default (untrained head, seed 0)"
        manifest = export_bundle(model, out, options, source=source, log=lambda m: click.echo(m, err=True))
    except EdgeDMLError as exc:
        _fail(exc)
    report = manifest["validation"]
    click.echo(f"bundle: {out}")
    click.echo(f"  fp32: embedder vs PyTorch max |Δ| {report['embedder']['max_abs_diff_embedding']:.1e}; "
               f"matcher vs PyTorch: {report['matcher']['max_abs_diff_multiscale']:.1e}; "
               f"vs POT: {report['pot']['max_abs_diff_score_vs_pot']:.1e}")
    for name, entry in report.get("precisions", {}).items():
        line = (f"  {name}: embedding cosine to fp32 {entry['embedder']['embedding_cosine_mean']:.4f} (min "
                f"{entry['embedder']['embedding_cosine_min']:.4f}); matcher |Δ| "
                f"{entry['matcher']['max_abs_diff_multiscale']:.1e}")
        if "map_at_r" in entry:
            line += f"; MAP@R multi-scale {entry['map_at_r'][name]['multiscale']:.4f} (fp32 " \
                    f"{entry['map_at_r']['fp32']['multiscale']:.4f})"
        click.echo(line)
    if engine != "none":
        _build_engines_or_explain(out, engine, max_batch, max_candidates)


@main.command(name="build-engine")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--engine", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="The bundle's graph set to build (the precision is in the graphs; INT8 was calibrated at export).")
@click.option("--max-batch", default=8, show_default=True)
@click.option("--max-candidates", default=100, show_default=True)
def build_engine_command(bundle, engine, max_batch, max_candidates):
    """Build strongly typed TensorRT engines from a bundle's ONNX graphs, on the target device
    (engines do not move between GPUs or TensorRT versions): export on a workstation, build on
    the Jetson. Needs no torch. Every engine is checked against ONNX Runtime's stored outputs."""
    from .errors import EdgeDMLError

    try:
        _build_engines_or_explain(bundle, engine, max_batch, max_candidates)
    except EdgeDMLError as exc:
        _fail(exc)


EXPLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@main.command()
@click.argument("image_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("image_b", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "bundle", required=True, type=click.Path(exists=True, file_okay=False),
              help="A bundle folder written by `edgedml export`.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--threshold", type=float, help="Decision threshold [default: the bundle's calibrated one].")
@click.option("--precision", type=_PRECISION_CHOICE, default="fp32", show_default=True,
              help="Which of the bundle's graph sets to run.")
@click.option("--explain", "explain_path", type=click.Path(dir_okay=False),
              help="Write the side-by-side explanation picture (PNG/JPEG) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compare(image_a, image_b, bundle, backend, threshold, precision, explain_path, as_json):
    """Compare two images: score, decision, and (with --explain) a picture of why."""
    from .errors import EdgeDMLError

    if explain_path and (Path(explain_path).suffix.lower() not in EXPLAIN_SUFFIXES
                         or not Path(explain_path).resolve().parent.is_dir()):
        raise click.ClickException(f"--explain {explain_path}: give a path ending in "
                                   f"{', '.join(EXPLAIN_SUFFIXES)} in an existing folder")
    try:
        from .runtime.matcher import Matcher

        matcher = Matcher(bundle, backend=backend, threshold=threshold, precision=precision)
        result = matcher.compare(image_a, image_b)
        if explain_path:
            import cv2

            if not cv2.imwrite(explain_path, result.render()):
                raise click.ClickException(f"could not write {explain_path}; use a .png or .jpg path in an "
                                           f"existing folder")
    except EdgeDMLError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"a": image_a, "b": image_b, "backend": matcher.backend.describe(),
                               **result.to_dict()}, indent=2))
        return
    decision = ("uncalibrated: run `edgedml calibrate` or pass --threshold" if result.is_match is None
                else ("MATCH" if result.is_match else "NO MATCH") + f" at threshold {result.threshold:.4f}")
    click.echo(f"score {result.score:.4f} (structural {result.structural:.4f} + global "
               f"{result.global_similarity:.4f}) via {matcher.backend.describe()}")
    click.echo(f"decision: {decision}")
    if explain_path:
        click.echo(f"explanation: {explain_path}")


EXIT_REJECTED = 4  # verify/identify ran and the answer is no (not the same person, unknown)

_model_option = click.option("--model", "bundle", required=True, type=click.Path(exists=True, file_okay=False),
                             help="A bundle folder written by `edgedml export`.")
_threshold_option = click.option("--threshold", type=float,
                                 help="Decision threshold [default: the bundle's calibrated one].")


_precision_option = click.option("--precision", type=_PRECISION_CHOICE, default="fp32", show_default=True,
                                 help="Which of the bundle's graph sets to run (a gallery keeps to one).")


def _open_gallery(gallery, bundle, threshold, precision="fp32"):
    from .runtime.gallery import Gallery
    from .runtime.matcher import Matcher

    return Gallery(gallery, Matcher(bundle, precision=precision), threshold=threshold)


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images (one folder per identity).")
@click.option("--per-class", type=int, help="Use at most this many images of each class.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv", "tensorrt"]), default="auto")
@_precision_option
def calibrate(bundle, data, per_class, backend, precision):
    """Score all genuine and impostor pairs of --data; write EER, TAR at FAR 1e-2/1e-3/1e-4 and
    their thresholds into the bundle, with a ROC curve and score histograms (PNG)."""
    from .errors import EdgeDMLError
    from .runtime.calibration import calibrate as run

    try:
        report = run(bundle, data, per_class, backend, progress=True, precision=precision)
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"{report['images']} images, {report['genuine_pairs']} genuine and {report['impostor_pairs']} "
               f"impostor pairs; EER {report['eer']:.4f}")
    if report.get("skipped"):
        click.echo(f"skipped {len(report['skipped'])} unreadable images (listed above, and in the manifest)")
    for name, entry in report["thresholds"].items():
        click.echo(f"  {name:<10} threshold {entry['threshold']:.4f}  FAR {entry['far']:.2e}  TAR {entry['tar']:.4f}")
    click.echo(f"written to {bundle}/manifest.json, calibration_roc.png, calibration_scores.png")


@main.command()
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_model_option
@_precision_option
def enroll(gallery, name, images, bundle, precision):
    """Enroll NAME into the GALLERY file (SQLite) from one or more images, all or nothing."""
    from .errors import EdgeDMLError

    try:
        with _open_gallery(gallery, bundle, None, precision) as g:
            count = g.enroll(name, list(images))
            total = g.identities()[name]
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"enrolled {name!r}: {count} new templates ({total} in all) in {gallery}")


def _report(decision, as_json, kind):
    if as_json:
        click.echo(json.dumps({"kind": kind, "accepted": decision.accepted, "name": decision.name,
                               "score": decision.score, "threshold": decision.threshold,
                               "candidates": [c.__dict__ for c in decision.candidates]}, indent=2))
    else:
        verdict = "ACCEPTED" if decision.accepted else "REJECTED"
        click.echo(f"{verdict}: {decision.name} score {decision.score:.4f} (threshold {decision.threshold:.4f})")
        for c in decision.candidates[1:]:
            click.echo(f"  then {c.name} {c.score:.4f}")
    if not decision.accepted:
        raise SystemExit(EXIT_REJECTED)


@main.command()
@click.argument("gallery", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@_model_option
@_threshold_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@_precision_option
def verify(gallery, image, name, bundle, threshold, as_json, log, precision):
    """1:1 — is IMAGE the enrolled NAME? Exit 0 accepted, 4 rejected, 1 on error."""
    from .errors import EdgeDMLError

    try:
        with _open_gallery(gallery, bundle, threshold, precision) as g:
            decision = g.verify(image, name)
            if log:
                g.log_decision("verify", decision, claimed=name, details={"image": image})
    except EdgeDMLError as exc:
        _fail(exc)
    _report(decision, as_json, "verify")


@main.command()
@click.argument("gallery", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@_model_option
@_threshold_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many identities to list, best first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Record the decision in the gallery.")
@_precision_option
def identify(gallery, image, bundle, threshold, top_k, as_json, log, precision):
    """1:N — who in GALLERY is IMAGE? Exit 0 when the best is above the threshold, 4 otherwise."""
    from .errors import EdgeDMLError

    try:
        with _open_gallery(gallery, bundle, threshold, precision) as g:
            decision = g.identify(image, top_k=top_k)
            if log:
                g.log_decision("identify", decision, details={"image": image})
    except EdgeDMLError as exc:
        _fail(exc)
    _report(decision, as_json, "identify")


if __name__ == "__main__":  # pragma: no cover
    main()
