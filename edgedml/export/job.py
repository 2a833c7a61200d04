"""One export as decided before the slow work starts (:func:`prepare`): what could stop it is
checked first (``out`` may be written, the face detector loads, every image folder is listed and
decoded), so a mistake costs seconds, not an export; then the model in eval mode on the CPU, the
Sinkhorn iterations and the fp32 matcher. Every step of :func:`.exporter.export_bundle` reads its
inputs from the :class:`ExportJob` this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..models.embedder import EmbeddingModel
from ..models.matcher import StructuralMatcher
from . import image_sets
from .destination import check_output_folder
from .options import ExportOptions, face_settings
from .precision import QUANTIZED

if TYPE_CHECKING:
    from ..models.config import ModelConfig
    from ..runtime.faces.detection import YuNetDetector


@dataclass(frozen=True)
class ExportJob:
    """What every step of an export reads."""

    model: EmbeddingModel  # in eval mode, on the CPU
    out: Path  # the bundle folder, written only at the end
    options: ExportOptions
    iters: int  # Sinkhorn iterations of every matcher graph: options.iters, else the model config's
    matcher: StructuralMatcher  # the fp32 matcher, in options.matcher_form
    images: image_sets.ExportImages  # calibration, validation and labelled images, decoded
    detector: YuNetDetector | None  # the face detector to copy into the bundle, loaded
    log: Callable[[str], None]  # receives each progress line
    progress: bool  # progress bars (where stderr is a terminal)

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def prepare(model: EmbeddingModel, out: Path, options: ExportOptions, log: Callable[[str], None],
            progress: bool) -> ExportJob:
    """Check what could stop the export, then fix its inputs: ``out`` is a folder the bundle may
    be written to (:func:`.destination.check_output_folder`), the face detector loads with the
    settings the bundle will record (:func:`.options.face_settings`), every image folder is read
    (:func:`.image_sets.export_images`: an empty or unreadable folder fails here) and the
    parent of ``out`` exists."""
    from ..runtime.faces import detection

    check_output_folder(out, options.overwrite)
    cfg = model.config
    detector = detection.load_detector(options.detector, face_settings(cfg, options))
    images = image_sets.export_images(
        cfg.preprocessing(), calib=options.calib, calib_images=options.calib_images,
        quantize=any(p in QUANTIZED for p in options.precisions), validate_with=options.validate_with,
        validation_images=options.validation_images, validate_data=options.validate_data,
        compare_precisions=len(options.precisions) > 1)
    out.parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it (staging_folder makes it, too)
    for warning in images.warnings:
        log(warning)
    iters = options.iters or cfg.sinkhorn_iters
    model = model.eval().cpu()
    return ExportJob(model, out, options, iters, StructuralMatcher.for_model(cfg, options.matcher_form, iters),
                     images, detector, log, progress)
