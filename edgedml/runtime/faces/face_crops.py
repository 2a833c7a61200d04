"""Train on what the door sees: a class-per-folder photo set → the detector's face crops.

A face model deployed behind a detector embeds the detector's crops (:func:`.roi.cut_view`: square
and eye-levelled, or dlib's 150×150 face chip), framed by the detector whatever the photo's own
framing was. ``edgedml crop-faces`` writes those crops for a whole data set, so that training and
calibration see the same pixels as the device:

    edgedml crop-faces ../shared/data/orl_faces crops/orl_faces --detector yunet:yunet.onnx
    edgedml crop-faces ../shared/data/orl_faces crops/orl_chips --detector yunet:yunet.onnx --chip dlib

Each photo's largest face is written as PNG under the same class folder and file stem; photos
without a face, and photos that cannot be decoded, are listed and left out. The user's files are
never written over: OUT must be new or empty, or (with ``--overwrite``) hold nothing but what an
earlier run wrote there, unchanged (recorded in ``crop_faces.json``); two photos that would give
one crop file (``x.png`` and ``x.jpg`` of a class) are refused before anything is written; the
crops appear under OUT only once all are written. numpy + OpenCV only.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ...bundle_files import sha256_file
from ...errors import ConfigError, EdgeDMLError, InvalidImageError
from ...output_folders import move_into_place, refuse_link, staging_folder
from ..inference.image import image_extensions, load_image
from .detection import DetectorSettings, YuNetDetector
from .roi import cut_view

log = logging.getLogger(__name__)

RECORD = "crop_faces.json"  # what a run wrote (names and sha256): --overwrite replaces only such a folder


@dataclass
class CropReport:
    written: int = 0
    classes: int = 0
    without_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # the decoder's message per photo left out


def crop_name(photo: Path) -> str:
    """The crop's file name: the photo's stem, as PNG (``a/x.jpg`` → ``a/x.png``)."""
    return f"{photo.stem}.png"


def plan(source: Path, classes: list[Path]) -> dict[str, Path]:
    """{crop path relative to OUT: photo} for every photo; refuses (before anything is written)
    two photos that would be written to one crop file, e.g. ``x.png`` and ``x.jpg`` of a class."""
    suffixes = image_extensions()
    crops: dict[str, Path] = {}
    clashes = []
    for folder in classes:
        for photo in sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes and f.is_file()):
            name = f"{folder.name}/{crop_name(photo)}"
            if name in crops:
                clashes.append(f"{crops[name].relative_to(source)} and {photo.relative_to(source)} → {name}")
            else:
                crops[name] = photo
    if clashes:
        raise ConfigError(f"{len(clashes)} pair(s) of photos would be written to one crop file "
                          f"({'; '.join(clashes[:3])}{'; …' if len(clashes) > 3 else ''}): "
                          "rename one photo of each pair; nothing was written")
    return crops


def crop_settings(settings: DetectorSettings) -> dict:
    """How the crops were cut, as :data:`RECORD` keeps it: the chip, and for square crops their
    margin and align (which the dlib chip does not use)."""
    if settings.chip == "square":
        return {"chip": "square", "margin": settings.margin, "align": settings.align}
    return {"chip": settings.chip}


def check_out_folder(out: Path, overwrite: bool) -> None:
    """OUT may be new or empty; with ``overwrite``, a folder holding nothing but the crops an
    earlier crop-faces run wrote there, unchanged (its :data:`RECORD`). Anything else is refused,
    naming what is not crop-faces' own: the user's files are never written over or deleted."""
    refuse_link(out, "OUT")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"OUT {out} is a file; choose a folder path for the crops")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"OUT {out} exists and is not empty; choose a new folder, or pass --overwrite to replace "
                          f"the crops an earlier crop-faces run wrote there")
    try:
        written = json.loads((out / RECORD).read_text())["files"]
        assert isinstance(written, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise ConfigError(f"OUT {out} was not written by crop-faces (no readable {RECORD}), so --overwrite will not "
                          f"replace it: nothing was changed; choose a new folder") from None
    foreign = []
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_file() or (relative != RECORD
                                                       and written.get(relative) != sha256_file(path)):
            foreign.append(relative)
    if foreign:
        raise ConfigError(f"OUT {out} holds files crop-faces did not write, or changed since ({', '.join(foreign[:8])}"
                          f"{f' and {len(foreign) - 8} more' if len(foreign) > 8 else ''}), so --overwrite will not "
                          f"replace it: nothing was changed; move those out or choose a new folder")


def crop_dataset(source: str | Path, out: str | Path, detector: YuNetDetector, progress: bool = False,
                 overwrite: bool = False) -> CropReport:
    """Write the largest face of every photo under ``source``/<class>/ to ``out``/<class>/<stem>.png.

    Decided before any photo is read: ``out`` (:func:`check_out_folder`) and the crops' names
    (:func:`plan`). The crops are written to a staging folder renamed to ``out`` when all are
    done, so a failed run leaves nothing. Photos that cannot be decoded, or show no face, are
    left out and listed in the report (and in ``out``/:data:`RECORD`). ``progress``: a bar on
    stderr (when it is a terminal)."""
    import cv2

    from ...progress import progress_bar

    source, out = Path(source), Path(out)
    classes = (sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
               if source.is_dir() else [])
    if not classes:
        raise EdgeDMLError(f"{source} has no class folders; pass a folder with one sub-folder of photos per class")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise EdgeDMLError(f"--out {out} is inside the source {source}; write the crops to a folder of their own")
    check_out_folder(out, overwrite)
    crops = plan(source, classes)
    settings = detector.settings
    report = CropReport(classes=len(classes))
    staging = staging_folder(out)
    bar = progress_bar(total=len(crops), desc="cutting faces", unit="photo", enabled=progress)
    try:
        written = {}
        for folder in classes:
            (staging / folder.name).mkdir()
            for name, photo in ((n, p) for n, p in crops.items() if p.parent == folder):
                bar.update()
                try:
                    rgb = load_image(photo)
                except InvalidImageError as exc:
                    report.unreadable.append(str(exc))
                    continue
                faces = detector.detect(rgb)
                if not faces:
                    report.without_face.append(str(photo))
                    continue
                view = cut_view(rgb, faces[0], settings)
                if not cv2.imwrite(str(staging / name), cv2.cvtColor(view.pixels, cv2.COLOR_RGB2BGR)):
                    raise EdgeDMLError(f"could not write {out / name}; check the folder is writable")
                written[name] = sha256_file(staging / name)
                report.written += 1
        bar.close()
        (staging / RECORD).write_text(json.dumps({
            "source": str(source), "settings": crop_settings(settings),
            "files": written, "without_face": report.without_face, "unreadable": report.unreadable}, indent=2) + "\n")
        check_out_folder(out, overwrite)  # still new, empty or crop-faces' own at the last moment
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def cropped_copy(source: str | Path, out: str | Path, detector: YuNetDetector) -> Path:
    """``out``, filled with :func:`crop_dataset` of ``source`` unless it already exists (how the
    training recipes and benchmarks keep one cropped copy of a data set; an interrupted run
    leaves no ``out``)."""
    out = Path(out)
    if not out.is_dir():
        report = crop_dataset(source, out, detector)
        log.info("%s: %d crops in %s; no face in %s", Path(source).name, report.written, out,
                 report.without_face or "none")
    return out
