"""The real images an export reads: the INT8 calibration set (``--calib``), the validation images
(``--validate-with``, else ``--calib``, else, when fp16 or another precision is checked against
fp32, the photos that install with edgedml: :func:`shipped_validation_folder`) and the labelled
MAP@R set (``--validate-data``).

All are listed and decoded before the export's work starts, so an empty, corrupt or non-image
folder is named at once, in one line, rather than after the graphs were exported. Unreadable
images are left out and listed; a folder with none readable is refused. The export warns when
INT8 is calibrated on fewer than :data:`MIN_CALIBRATION_IMAGES` images and when validation
reuses calibration images (INT8 would then be checked on what it was calibrated on).
numpy + OpenCV (the deployment decoder and preprocessing).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InvalidImageError
from ..preprocessing import PreprocessSpec

MIN_CALIBRATION_IMAGES = 32  # fewer: INT8 ranges that may miss what the door sees
SHIPPED_VALIDATION = "edgedml/validation_images"  # how reports name the shipped photos (not a machine's path)


def shipped_validation_folder() -> Path:
    """The public-domain and CC0 photos that install with edgedml (``edgedml/validation_images``,
    its README gives each one's source and licence): what fp16 graphs are checked against fp32
    on when the export is given no folder of images. Never used to calibrate INT8."""
    return Path(__file__).resolve().parents[1] / "validation_images"


@dataclass
class ImageSet:
    """Images decoded through the deployment preprocessing: ``images`` (N, 3, S, S) float32 of ``files``."""

    folder: str
    files: list[Path]
    images: np.ndarray
    skipped: list[str] = field(default_factory=list)  # the decoder's message per unreadable file


@dataclass
class LabelledSet:
    """A class-per-folder set whose every image decodes: paths, labels (N,), class names."""

    folder: str
    paths: list[Path]
    labels: np.ndarray
    names: list[str]
    skipped: list[str] = field(default_factory=list)


@dataclass
class ExportImages:
    """What an export reads, decided before it starts; ``warnings`` are for the console."""

    calibration: ImageSet | None
    validation: ImageSet | None
    labelled: LabelledSet | None
    warnings: list[str]


def candidates(folder: str | Path, limit: int, exclude: tuple[Path, ...] | list[Path] = ()) -> list[Path]:
    """Every image file under ``folder`` (any depth, sorted) in the order an export takes them:
    ``limit`` spread over the whole set (so over the classes), then the others, the files in
    ``exclude`` last (taken only when too few others decode)."""
    from ..runtime.inference.image import image_extensions

    suffixes = image_extensions()
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    excluded = set(exclude)
    others = [f for f in files if f not in excluded]
    step = max(1, len(others) // max(1, limit))
    spread = others[::step][:limit]
    taken = set(spread)
    return spread + [f for f in others if f not in taken] + [f for f in files if f in excluded]


def _decode(path: Path, spec: PreprocessSpec) -> np.ndarray | str:
    """The network input of one image, or the decoder's message saying why it cannot be read."""
    from ..runtime.inference.image import load_image
    from ..runtime.inference.preprocess import to_network_input

    try:
        return to_network_input(load_image(path), spec)
    except InvalidImageError as exc:
        return str(exc)


def read_images(folder: str | Path, limit: int, spec: PreprocessSpec, option: str,
                exclude: tuple[Path, ...] | list[Path] = ()) -> ImageSet:
    """Up to ``limit`` readable images of ``folder`` (in :func:`candidates` order), decoded;
    the unreadable ones met on the way are skipped and listed. Refuses a folder without image
    files, or without one that decodes."""
    from ..runtime.inference.image import image_extensions

    files = candidates(folder, limit, exclude)
    if not files:
        raise ConfigError(f"{option} {folder} holds no image files ({', '.join(image_extensions())}, any depth); "
                          f"pass a folder of images")
    taken, images, skipped = [], [], []
    for path in files:
        decoded = _decode(path, spec)
        if isinstance(decoded, str):
            skipped.append(decoded)
            continue
        taken.append(path)
        images.append(decoded)
        if len(taken) == limit:
            break
    if not taken:
        raise ConfigError(f"{option} {folder}: none of its {len(files)} image files can be decoded (e.g. "
                          f"{skipped[0]}); pass a folder of readable images")
    return ImageSet(str(folder), taken, np.stack(images).astype(np.float32), skipped)


def _shipped_validation(spec: PreprocessSpec, limit: int) -> ImageSet:
    """:func:`shipped_validation_folder`'s photos, decoded, named by :data:`SHIPPED_VALIDATION`
    (so a manifest records no machine's path); missing photos (an install without the package's
    data) are one line with the fix."""
    folder = shipped_validation_folder()
    try:
        images = read_images(folder, limit, spec, "the shipped validation folder")
    except ConfigError:
        raise ConfigError(f"the validation photos that install with edgedml are missing or unreadable in {folder}: "
                          f"reinstall edgedml, or pass --validate-with DIR of real images") from None
    images.folder = SHIPPED_VALIDATION
    return images


def read_labelled(folder: str | Path, option: str, workers: int = 4) -> LabelledSet:
    """Every image of a class-per-folder set, decoded once to check it (in parallel threads:
    OpenCV releases the GIL); the unreadable ones are left out and listed. Refuses a set with
    fewer than two classes of readable images."""
    from ..errors import EdgeDMLError
    from ..runtime.assurance.labelled_set import labelled_images
    from ..runtime.inference.image import read_rgb

    def problem(path: Path) -> str | None:
        try:
            read_rgb(path)
        except InvalidImageError as exc:
            return str(exc)
        return None

    try:
        paths, labels, names = labelled_images(folder)
    except EdgeDMLError:
        raise ConfigError(f"{option} {folder} has fewer than 2 class folders of images; MAP@R needs at least 2 (a "
                          f"class-per-folder set)") from None
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = list(pool.map(problem, paths))
    keep = [k for k, p in enumerate(problems) if p is None]
    held = sorted({int(labels[k]) for k in keep})
    if len(held) < 2:
        raise ConfigError(f"{option} {folder} has {len(held)} class folder(s) of readable images "
                          f"({len(paths) - len(keep)} of {len(paths)} images cannot be decoded); "
                          "MAP@R needs at least 2")
    relabel = {old: new for new, old in enumerate(held)}
    return LabelledSet(str(folder), [paths[k] for k in keep], np.asarray([relabel[int(labels[k])] for k in keep]),
                       [names[old] for old in held], [p for p in problems if p is not None])


def export_images(spec: PreprocessSpec, *, calib: str | None, calib_images: int, quantize: bool,
                  validate_with: str | None, validation_images: int, validate_data: str | None,
                  compare_precisions: bool) -> ExportImages:
    """Read every image set an export will use, before it starts (see the module doc)."""
    warnings = []
    calibration = read_images(calib, calib_images, spec, "--calib") if calib and quantize else None
    calib_files = calibration.files if calibration else []
    folder = validate_with or calib
    validation = None
    if folder:
        validation = read_images(folder, validation_images, spec, "--validate-with" if validate_with else "--calib",
                                 exclude=calib_files)
    elif compare_precisions:  # fp16 against fp32: natural pixels suffice (no ranges are learned from them)
        validation = _shipped_validation(spec, validation_images)
        warnings.append(f"note: fp16 is checked against fp32 on the {len(validation.files)} photos that install "
                        f"with edgedml ({SHIPPED_VALIDATION}); pass --validate-with DIR to check it on your own")
    labelled = None
    if validate_data and compare_precisions:
        labelled = read_labelled(validate_data, "--validate-data")
    elif validate_data:
        warnings.append(f"warning: --validate-data {validate_data} is not used: MAP@R compares other precisions "
                        f"with fp32, and only fp32 is exported (add one with --precision)")
    for image_set in (calibration, validation, labelled):
        warnings += [f"warning: skipped an unreadable image: {reason}" for reason in (image_set.skipped
                                                                                      if image_set else [])]
    if calibration and len(calibration.files) < MIN_CALIBRATION_IMAGES:
        warnings.append(f"warning: INT8 is calibrated on only {len(calibration.files)} images from {calib} "
                        f"(fewer than {MIN_CALIBRATION_IMAGES}): its ranges may miss what the door sees; pass a folder "
                        f"of more images and --calib-images")
    calibrated = {p.resolve() for p in calib_files}
    reused = [p for p in (validation.files if validation else []) if p.resolve() in calibrated]
    if reused:
        warnings.append(f"warning: {len(reused)} of the {len(validation.files)} validation images are also calibration "
                        f"images ({calib} has too few others): INT8 is checked on what it was calibrated on; pass "
                        f"--validate-with DIR of other images")
    reused = [p for p in (labelled.paths if labelled else []) if p.resolve() in calibrated]
    if reused:
        warnings.append(f"warning: {len(reused)} of the {len(labelled.paths)} images of --validate-data are also "
                        f"calibration images: INT8's MAP@R is partly measured on what it was calibrated on; pass a "
                        f"labelled set apart from --calib")
    return ExportImages(calibration, validation, labelled, warnings)
