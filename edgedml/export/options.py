"""What ``edgedml export`` was asked for, checked before any work: :class:`ExportOptions` (the
graph sets per precision, the matcher's form and iterations, the image folders for INT8
calibration and validation, the face detector and how it cuts faces), recorded in the manifest as
given; and :func:`face_settings`, the detector settings a bundle of a given model records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from . import precision
from .precision import QUANTIZED

ENGINES = ("none", "fp32", "fp16", "int8")
MATCHER_FORMS = ("scaling", "log")


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
