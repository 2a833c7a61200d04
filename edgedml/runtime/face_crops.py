"""Train on what the door sees: a class-per-folder photo set → the detector's face crops.

A face model deployed behind a detector embeds square, eye-levelled crops (:mod:`.roi`), framed
by the detector whatever the photo's own framing was. ``edgedml crop-faces`` writes those crops
for a whole data set, so that training and calibration see the same pixels as the device:

    edgedml crop-faces ../shared/data/orl_faces crops/orl_faces --detector yunet:yunet.onnx

Each photo's largest face is written as PNG under the same class folder and file stem; photos
without a face are listed and left out. numpy + OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EdgeDMLError
from .detection import YuNetDetector
from .image import image_extensions, load_image
from .roi import face_view


@dataclass
class CropReport:
    written: int = 0
    classes: int = 0
    without_face: list[str] = field(default_factory=list)


def crop_dataset(source: str | Path, out: str | Path, detector: YuNetDetector, progress=None) -> CropReport:
    """Write the largest face of every photo under ``source``/<class>/ to ``out``/<class>/<stem>.png."""
    import cv2

    source, out = Path(source), Path(out)
    classes = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")) if source.is_dir() else []
    if not classes:
        raise EdgeDMLError(f"{source} has no class folders; pass a folder with one sub-folder of photos per class")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise EdgeDMLError(f"--out {out} is inside the source {source}; write the crops to a folder of their own")
    suffixes = image_extensions()
    settings = detector.settings
    report = CropReport(classes=len(classes))
    for folder in classes:
        target = out / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes):
            rgb = load_image(photo)
            faces = detector.detect(rgb)
            if not faces:
                report.without_face.append(str(photo))
                continue
            view = face_view(rgb, faces[0], settings.margin, settings.align)
            if not cv2.imwrite(str(target / f"{photo.stem}.png"), cv2.cvtColor(view.pixels, cv2.COLOR_RGB2BGR)):
                raise EdgeDMLError(f"could not write {target / photo.stem}.png; check the folder is writable")
            report.written += 1
        if progress:
            progress(f"{folder.name}: {report.written} crops so far")
    return report


def cropped_copy(source: str | Path, out: str | Path, detector: YuNetDetector) -> Path:
    """``out``, filled with :func:`crop_dataset` of ``source`` unless it already exists (how the
    training recipes and benchmarks keep one cropped copy of a data set)."""
    out = Path(out)
    if not out.is_dir():
        staging = out.with_name(out.name + ".partial")
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
        report = crop_dataset(source, staging, detector)
        staging.rename(out)  # only a finished copy is ever used
        print(f"{Path(source).name}: {report.written} crops in {out}; no face in {report.without_face or 'none'}")
    return out
