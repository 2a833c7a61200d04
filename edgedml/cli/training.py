"""The commands that need torch (and onnx): train, eval, export. Each imports them when it runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ConfigError, EdgeDMLError, MissingDependencyError
from .common import _build_engines_or_explain, _fail, echo_logs
from .params import COUNT, FRACTION, NON_NEGATIVE, OPEN_UNIT, RATE, WEIGHT, BackboneWeights, DetectorSpec, OutputFile


def _class_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


_PARTIAL_MASS = OPEN_UNIT  # train, eval and export alike: finite, in (0, 1)
_data_options = [
    click.option("--data", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
                 help="Dataset root: class folders, or CUB-200-2011 / Cars196 / SOP as distributed. "
                      "Repeat it to use several datasets as one (class names become root/class)."),
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


@click.command()
@_with(_data_options)
@click.option("--out", default="runs/edgedml", show_default=True, help="Run folder (checkpoints, metrics).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A train_config.json to start from; flags given here override it.")
@click.option("--head", type=click.Choice(["diml", "grouping", "abe"]), help="[default: diml]")
@click.option("--backbone", help="efficientnet_lite0 (default), efficientnet_lite1/2, resnet50, googlenet, "
                                 "vit_tiny_patch16_224, vit_small_patch16_224, deit_tiny_patch16_224.")
@click.option("--backbone-weights", type=BackboneWeights(),
              help="A local weights file for resnet50 / googlenet / the ViTs (never downloaded); for a ViT, "
                   "random for an untrained backbone.")
@click.option("--embed-dim", type=COUNT, help="Global embedding size [default: the head's].")
@click.option("--image-size", type=click.IntRange(min=32), help="Input size [default: the backbone's].")
@click.option("--partial-mass", type=_PARTIAL_MASS,
              help="Partial transport: match only this share of each image's regions (DIML) [default: all].")
@click.option("--loss", type=click.Choice(["multi_similarity", "margin", "triplet", "proxy_anchor"]),
              help="Base metric loss [default: multi_similarity].")
@click.option("--epochs", type=COUNT)
@click.option("--batch-size", type=COUNT, help="Global batch size (all ranks together).")
@click.option("--m-per-class", type=COUNT, help="Images per class in a batch.")
@click.option("--batches-per-epoch", type=COUNT)
@click.option("--lr", type=RATE, help="Backbone learning rate (AdamW, warm-up then cosine).")
@click.option("--head-lr", type=RATE)
@click.option("--freeze-stages", type=NON_NEGATIVE, help="Freeze the first N backbone stages.")
@click.option("--freeze-bn/--train-bn", default=None, help="Freeze BatchNorm statistics [default: freeze].")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA [default: on].")
@click.option("--diversity-weight", type=WEIGHT, help="Attentive grouping's diversity loss weight.")
@click.option("--divergence-weight", type=WEIGHT, help="ABE's divergence loss weight.")
@click.option("--divergence-reduction", type=click.Choice(["sum", "mean"]),
              help="ABE's divergence loss: summed as in the paper, or averaged [default: sum].")
@click.option("--val-fraction", type=FRACTION, help="Training classes held out to pick the best epoch.")
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda, cuda:1 ...")
@click.option("--workers", type=NON_NEGATIVE, help="Data-loading processes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last finished epoch.")
@click.option("--eval/--no-eval", "final_eval", default=True, help="Evaluate the best model on the test classes.")
def train(data, data_format, train_classes, test_classes, out, config_file, resume, final_eval, **flags):
    """Train a model on a dataset; checkpoints, metrics.jsonl and the config go to --out.

    Runs on CPU, CUDA, and under torchrun (DistributedDataParallel; gloo on CPU, NCCL on GPU):
    torchrun --nproc_per_node 2 -m edgedml.cli train --data DIR ...
    """
    import os


    try:
        from ..training.trainer import TrainConfig
        from ..training.trainer import train as run_training
    except ImportError as exc:
        _fail(MissingDependencyError(exc.name or "torch", "edgedml train", "train"))
    base = {}
    if resume and config_file is None and (Path(out) / "train_config.json").is_file():
        config_file = Path(out) / "train_config.json"
    if config_file:
        base = json.loads(Path(config_file).read_text())
    model = dict(base.get("model", {}))
    model_flags = {k: flags.pop(k) for k in ("head", "backbone", "backbone_weights", "embed_dim", "image_size",
                                             "partial_mass")}
    if model_flags["head"] not in (None, model.get("head")) and model_flags["embed_dim"] is None:
        model.pop("embed_dim", None)  # a new head takes its own default embedding size
    model.update({k: v for k, v in model_flags.items() if v is not None})
    base.update({k: v for k, v in flags.items() if v is not None})
    base.update(data=data[0] if len(data) == 1 else list(data), out=out, data_format=data_format, model=model)
    if _class_list(train_classes):
        base["train_classes"] = _class_list(train_classes)
    if _class_list(test_classes):
        base["test_classes"] = _class_list(test_classes)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        cfg = TrainConfig.from_dict(base, saved=resume)
        if world > 1:
            import torch
            import torch.distributed as dist

            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        with echo_logs("edgedml.training"):  # skipped images; each epoch's line unless the config has progress false
            summary = run_training(cfg, resume=resume)
        if final_eval and summary and int(os.environ.get("RANK", "0")) == 0:
            from ..models import load_checkpoint
            from ..training.evaluate import evaluate_model
            from ..training.trainer import load_cfg_split

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


@click.command(name="eval")
@_with(_data_options)
@click.option("--checkpoint", default="objects", show_default=True, metavar="PRESET|PATH",
              help="A shipped preset (objects, faces, imagenet = the untrained backbone) or a .safetensors checkpoint.")
@click.option("--split", "which", type=click.Choice(["test", "train", "all"]), default="test", show_default=True,
              help="all: every class of the dataset (a shipped or pretrained model on your own folder).")
@click.option("--k", "rerank_k", default=100, show_default=True, type=COUNT,
              help="Global top N re-ranked by multi-scale matching: 100, as the official DIML training and test "
                   "scripts re-rank (1000 is the largest of eval_diml.py's default list: --k 1000).")
@click.option("--structural/--no-structural", default=None,
              help="Rank all pairs by structural similarity [default: on up to 10,000 images].")
@click.option("--nmi/--no-nmi", default=True, show_default=True)
@click.option("--partial-mass", type=_PARTIAL_MASS,
              help="Score with partial transport at this mass [default: the model's].")
@click.option("--marginals", type=click.Choice(["cross", "uniform", "rollout"]),
              help="Score with these transport marginals [default: the model's].")
@click.option("--json-out", type=OutputFile(), help="Also write the results as JSON.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=COUNT)
@click.option("--workers", default=2, show_default=True, type=NON_NEGATIVE)
def evaluate(data, data_format, train_classes, test_classes, checkpoint, which, rerank_k,
             structural, nmi, partial_mass, marginals, json_out, device, batch_size, workers):
    """Recall@{1,2,4,8}, MAP@R, R-precision (and NMI) for global, structural and multi-scale ranking."""
    try:
        from ..models import load_checkpoint
        from ..training.datasets import load_splits
        from ..training.evaluate import evaluate_model
        from ..training.image_dataset import check_readable
        from ..training.trainer import resolve_device
    except ImportError as exc:
        _fail(MissingDependencyError(exc.name or "torch", "edgedml eval", "train"))
    try:
        split = load_splits(list(data), data_format, _class_list(train_classes), _class_list(test_classes))
        samples = {"test": split.test, "train": split.train, "all": _all_classes(split)}[which]
        samples, unreadable = check_readable(samples, progress=False)
        for path in unreadable:  # listed before the progress bars, and left out of every count
            click.echo(f"skipped unreadable image: {path}", err=True)
        if len({s.label for s in samples}) < 2:
            raise ConfigError(f"{' + '.join(data)} has fewer than 2 classes with readable images in the {which} split")
        dev = resolve_device(device)
        model = with_matching(load_checkpoint(checkpoint, device=str(dev)), partial_mass, marginals)
        if which != "all":  # said before the work: half a folder's classes is the DML protocol, not a default to miss
            click.echo(_split_classes(split, which), err=True)
        results = evaluate_model(model, samples, device=dev, batch_size=batch_size, workers=workers,
                                 progress=True, k=rerank_k, structural=structural, nmi=nmi)
    except EdgeDMLError as exc:
        _fail(exc)
    click.echo(f"{len(samples)} images, {len({s.label for s in samples})} classes ({which} split of {' + '.join(data)})"
               + (f"; {len(unreadable)} unreadable images skipped" if unreadable else ""))
    click.echo(_table(results))
    if json_out:
        Path(json_out).write_text(json.dumps({"data": list(data), "split": which, "checkpoint": checkpoint,
                                              "images": len(samples), "results": results}, indent=2) + "\n")


def _split_classes(split, which: str) -> str:
    """Which classes the evaluated split holds, which the other one does, and how to take all."""
    def names(classes: list[str]) -> str:
        return ", ".join(classes[:6]) + (f", … ({len(classes)} in all)" if len(classes) > 6 else "")

    other = "train" if which == "test" else "test"
    mine, theirs = getattr(split, f"{which}_classes"), getattr(split, f"{other}_classes")
    return (f"evaluating the {which} split: {len(mine)} of {len(mine) + len(theirs)} classes ({names(mine)}); the "
            f"{other} split holds {names(theirs)}. A model not trained on these classes (a shipped preset on your "
            f"own folder) is measured on every class with --split all")


def _all_classes(split):
    """The train and the test samples together, the test labels moved past the train ones."""
    import dataclasses

    offset = 1 + max((s.label for s in split.train), default=-1)
    return list(split.train) + [dataclasses.replace(s, label=s.label + offset) for s in split.test]


@click.command(name="export")
@click.option("--checkpoint", default="objects", show_default=True, metavar="PRESET|PATH",
              help="A shipped preset (objects, faces, imagenet = the untrained backbone) or a .safetensors checkpoint.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="Graph sets to write, comma-separated: fp32, fp16, int8 (TensorRT QDQ), int8-cpu (ONNX Runtime "
                   "QDQ). Each is run and validated against fp32 on real images.")
@click.option("--engine", type=click.Choice(["none", "fp32", "fp16", "int8"]), default="none", show_default=True,
              help="Also write that precision's graphs and build TensorRT engines from them (needs TensorRT and a "
                   "CUDA GPU here; without them the ONNX bundle is written and the command exits 3).")
@click.option("--calib", type=click.Path(exists=True, file_okay=False),
              help="Real images of your own domain for INT8 calibration (also used for validation); INT8 needs "
                   "it, fp16 does not.")
@click.option("--calib-images", default=64, show_default=True, type=COUNT,
              help="Calibration images taken from --calib.")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="How INT8 ranges are chosen from the calibration activations.")
@click.option("--validate-with", type=click.Path(exists=True, file_okay=False),
              help="Real images to validate against PyTorch and fp32 [default: --calib, else with fp16 the 8 "
                   "public-domain and CC0 photos that install with edgedml, else random tensors].")
@click.option("--validate-data", type=click.Path(exists=True, file_okay=False),
              help="A labelled class-per-folder set: MAP@R of every precision against fp32 (bounded).")
@click.option("--max-batch", default=8, show_default=True, type=COUNT,
              help="Largest embedder batch of the engine profile.")
@click.option("--max-candidates", default=100, show_default=True, type=COUNT,
              help="Largest K of the matcher engine profile.")
@click.option("--fixed-batch", type=COUNT, help="Export the embedder at exactly this batch (static shapes).")
@click.option("--iters", type=COUNT, help="Sinkhorn iterations unrolled in matcher.onnx [default: the model's].")
@click.option("--matcher-form", type=click.Choice(["scaling", "log"]), default="scaling", show_default=True,
              help="fp32 matcher: scaling (fastest) or log. The fp16 matcher is always the log form.")
@click.option("--detector", default="none", show_default=True, type=DetectorSpec(), metavar="yunet:PATH|none",
              help="Copy this face detector (a YuNet ONNX file) into the bundle: the device then detects, aligns "
                   "and crops faces before embedding.")
@click.option("--face-score", type=OPEN_UNIT, help="The detector's score threshold [default: 0.7].")
@click.option("--chip", type=click.Choice(["square", "dlib"]),
              help="How the detector's faces are cut: a square, eye-levelled crop, or dlib's 150×150 face chip "
                   "[default: dlib for a dlib_resnet model, else square]. Needs --detector.")
@click.option("--min-face", type=COUNT, help="Ignore faces narrower than this many pixels [default: 32].")
@click.option("--partial-mass", type=_PARTIAL_MASS,
              help="Match with partial transport at this mass (dummy bins in matcher.onnx) [default: the model's].")
@click.option("--backbone", "new_backbone",
              help="Export a new model on this backbone (an untrained DIML head, seed 0) instead of --checkpoint, "
                   "e.g. deit_tiny_patch16_224.")
@click.option("--backbone-weights", type=BackboneWeights(), help="With --backbone: a local weights file, or random.")
@click.option("--marginals", type=click.Choice(["cross", "uniform", "rollout"]),
              help="The transport marginals [default: the model's]; rollout: a ViT's truncated attention rollout.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle in --out.")
def export_command(checkpoint, out, precisions, engine, calib, calib_images, calib_method, validate_with,
                   validate_data, max_batch, max_candidates, fixed_batch, iters, matcher_form, detector, face_score,
                   chip, min_face, partial_mass, new_backbone, backbone_weights, marginals, overwrite):
    """Export a model to a validated bundle: one embedder and one matcher graph per precision,
    manifest.json [, TensorRT engines]."""
    try:
        from ..export.destination import check_output_folder
        from ..export.exporter import ExportOptions, export_bundle
        from ..models import load_checkpoint
        from ..models.presets import PRESETS
    except ImportError as exc:
        _fail(MissingDependencyError(exc.name or "torch", "edgedml export", "export"))
    try:
        check_output_folder(Path(out), overwrite)  # before the checkpoint is even read
        options = ExportOptions(precisions=precisions, engine=engine, matcher_form=matcher_form, iters=iters,
                                max_batch=max_batch, max_candidates=max_candidates, fixed_batch=fixed_batch,
                                calib=calib, calib_images=calib_images, calib_method=calib_method,
                                validate_with=validate_with, validate_data=validate_data, overwrite=overwrite,
                                detector=detector, detector_settings={
                                    k: v for k, v in (("score_threshold", face_score), ("min_size", min_face))
                                    if v is not None} or None, chip=chip)
        if new_backbone:
            import torch

            from ..models import ModelConfig, build_model

            torch.manual_seed(0)
            model = build_model(ModelConfig(backbone=new_backbone, backbone_weights=backbone_weights)).eval()
            source = (f"backbone {new_backbone} ({backbone_weights or 'its default weights'}), "
                      "untrained DIML head (seed 0)")
        elif backbone_weights:
            raise ConfigError("--backbone-weights goes with --backbone; a checkpoint carries its own weights")
        else:
            model = load_checkpoint(checkpoint)
            source = (f"preset {checkpoint}: {PRESETS[checkpoint]}" if checkpoint in PRESETS
                      else f"checkpoint {checkpoint}")
        model = with_matching(model, partial_mass, marginals)
        manifest = export_bundle(model, out, options, source=source, log=lambda m: click.echo(m, err=True),
                                 progress=True)  # bars where stderr is a terminal
    except EdgeDMLError as exc:
        _fail(exc)
    report = manifest.validation
    click.echo(f"bundle: {out}")
    if manifest.detector:
        settings = manifest.detector["settings"]
        crop = ("chip dlib 150×150" if settings.get("chip") == "dlib"
                else f"margin {settings['margin']:g}, align {settings['align']}")
        click.echo(f"  face detector: {manifest.detector['file']} (score ≥ {settings['score_threshold']:g}, faces ≥ "
                   f"{settings['min_size']} px, {crop})")
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


def with_matching(model, partial_mass: float | None = None, marginals: str | None = None):
    """``model`` with other matching settings (partial transport's mass, the marginals): they
    change how features are compared, not the weights."""
    changes = {k: v for k, v in (("partial_mass", partial_mass), ("marginals", marginals)) if v is not None}
    if changes:
        import dataclasses

        model.config = dataclasses.replace(model.config, **changes)  # validated again: rollout needs a ViT
    return model


COMMANDS = [train, evaluate, export_command]  # in the order `edgedml --help` lists them
