"""Export the shipped presets into ``edgedml/bundles/<name>/``: the bundles that install with the
package (``Matcher("objects")``, ``--model faces``), so a device needs no torch and no export.

    python scripts/ship_bundles.py all          # objects and faces (a few minutes on a laptop CPU)
    python scripts/ship_bundles.py faces        # one of them
    python scripts/ship_bundles.py all --check  # export again into a temporary folder and compare bytes

Each bundle holds the fp32 and int8-cpu graph sets, their validation data and the manifest; the
``faces`` bundle also YuNet (its dlib chip cut from YuNet's landmarks) and a calibrated threshold.
What each step reads, and never a test person's photo:

- ``objects``: INT8 calibrated on 64 images of the preset's training classes (cub_birds 01–38,
  flowers17 01–08), validated on 8 others of them. Not calibrated: those classes are the ones it
  was trained on (its scores there are better than on anything a user brings), and the test
  classes are the benchmark's; a threshold for objects is the user's domain's (``edgedml
  calibrate``).
- ``faces``: INT8 calibrated on YuNet → dlib chips of the people no face benchmark tests (ORL
  s01–s20, yalefaces 01–08: ``PEOPLE["train"]`` of ``scripts/derive_dlib_chip_points.py``), even
  photos, validated on their odd photos; then ``edgedml calibrate`` on the whole photos of the
  same people through the bundle's own face stage (dlib's network was never trained on them).

The inputs are assembled under ``runs/ship_bundles/`` (links to ``/work/shared/data``, and the
chips) and named by paths relative to the repository, so an export from another checkout of
the same commit and tools writes the same bytes (``--check``; ``tests/test_shipped_bundles.py``).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
DATA = ROOT.parent / "shared" / "data"
YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
WORK = Path("runs") / "ship_bundles"  # relative to ROOT: the manifests name these paths
SHIPPED = Path("edgedml") / "bundles"
PRECISIONS = ("fp32", "int8-cpu")
CALIB_IMAGES = 64
OBJECT_CLASSES = {"cub_birds": range(1, 39), "flowers17": range(1, 9)}  # the objects preset's training classes
PHOTO_SUFFIXES = (".pgm", ".png", ".jpg", ".gif")


def face_people() -> dict[str, list[str]]:
    """The people no face benchmark tests: ORL s01–s20, yalefaces subject01–08."""
    from derive_dlib_chip_points import PEOPLE

    return PEOPLE["train"]


def _replace(staging: Path, target: Path) -> Path:
    """Move ``staging`` to ``target`` (an earlier copy is removed first)."""
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def _fresh(folder: Path) -> Path:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def object_images() -> Path:
    """``runs/ship_bundles/objects/calib/<dataset>/<class>/<image>``: links to every image of the
    objects preset's training classes (the export takes 64 of them, spread over the classes, to
    calibrate, and 8 others to validate)."""
    target = WORK / "objects" / "calib"
    staging = _fresh(target)
    for dataset, numbers in OBJECT_CLASSES.items():
        for folder in sorted((DATA / dataset).iterdir()):
            if folder.is_dir() and int(folder.name.split("_")[0]) in numbers:
                (staging / dataset / folder.name).mkdir(parents=True)
                for image in sorted(folder.iterdir()):
                    (staging / dataset / folder.name / image.name).symlink_to(image)
    return _replace(staging, target)


def face_chips(chip: str) -> tuple[Path, Path]:
    """(calibration, validation) folders of YuNet-cut face chips of :func:`face_people`:
    ``runs/ship_bundles/faces/chips/{calib,validate}/<dataset>/<person>/<photo>.png``, the even
    photos of each person (in sorted order, counting those with a face) to calibrate, the odd
    ones to validate. Cut by the face stage the bundle records (``roi.cut_view``)."""
    import cv2

    from edgedml.runtime.faces.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.faces.roi import cut_view
    from edgedml.runtime.inference.image import load_image

    target = WORK / "faces" / "chips"
    staging = _fresh(target)
    detector = YuNetDetector(YUNET, DetectorSettings(chip=chip))
    for dataset, people in face_people().items():
        for person in people:
            found = 0
            for photo in sorted((DATA / dataset / person).iterdir()):
                if photo.suffix.lower() not in PHOTO_SUFFIXES:
                    continue
                faces = detector.detect(rgb := load_image(photo))
                if not faces:
                    continue
                half = "calib" if found % 2 == 0 else "validate"
                found += 1
                out = staging / half / dataset / person / (photo.stem + ".png")
                out.parent.mkdir(parents=True, exist_ok=True)
                pixels = cut_view(rgb, faces[0], detector.settings).pixels
                if not cv2.imwrite(str(out), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
                    raise SystemExit(f"could not write {out}")
    _replace(staging, target)
    return target / "calib", target / "validate"


def face_photos() -> Path:
    """``runs/ship_bundles/faces/photos/<dataset>_<person>/<photo>``: links to the whole photos of
    :func:`face_people`, one folder per person, for ``edgedml calibrate``."""
    target = WORK / "faces" / "photos"
    staging = _fresh(target)
    for dataset, people in face_people().items():
        for person in people:
            folder = staging / f"{dataset}_{person}"
            folder.mkdir()
            for photo in sorted((DATA / dataset / person).iterdir()):
                if photo.suffix.lower() in PHOTO_SUFFIXES:
                    (folder / photo.name).symlink_to(photo)
    return _replace(staging, target)


def export_preset(name: str, out: Path, log=print):
    """Export preset ``name`` into ``out`` (a new folder, or an earlier bundle it replaces) as it
    ships, calibrated for ``faces``; returns the manifest. Run with the working directory at the
    repository root (:func:`main` does)."""
    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.export.options import face_settings
    from edgedml.models import load_checkpoint
    from edgedml.models.presets import PRESETS

    model = load_checkpoint(name)
    people = " + ".join(f"{d} {p[0]}–{p[-1]}" for d, p in face_people().items())
    if name == "objects":
        calib = object_images()
        options = ExportOptions(precisions=PRECISIONS, calib=str(calib), calib_images=CALIB_IMAGES, overwrite=True)
        classes = " + ".join(f"{d} {n[0]:02d}–{n[-1]:02d}" for d, n in OBJECT_CLASSES.items())
        source = (f"preset objects: {PRESETS['objects']}; INT8 calibrated on {CALIB_IMAGES} images of its training "
                  f"classes ({classes}) and validated on 8 others of them; not calibrated (scripts/ship_bundles.py)")
    elif name == "faces":
        detector = f"yunet:{os.path.relpath(YUNET, ROOT)}"  # relative, as every path the manifest records
        chip = face_settings(model.config, ExportOptions(detector=detector)).chip
        calib, validate = face_chips(chip)
        options = ExportOptions(precisions=PRECISIONS, calib=str(calib), validate_with=str(validate),
                                calib_images=CALIB_IMAGES, detector=detector, overwrite=True)
        source = (f"preset faces: {PRESETS['faces']}; YuNet ({YUNET.name}) cuts dlib's chip; INT8 calibrated on "
                  f"{CALIB_IMAGES} YuNet chips of {people} (even photos), validated on their odd photos; thresholds "
                  f"calibrated on the whole photos of the same people (scripts/ship_bundles.py)")
    else:
        raise SystemExit(f"unknown bundle {name!r}; choose objects, faces or all")
    manifest = export_bundle(model, out, options, source=source, log=log)
    if name == "faces":
        manifest = calibrate_faces(out, log)
    return manifest


def calibrate_faces(bundle: Path, log=print):
    """``edgedml calibrate`` on :func:`face_photos` through the bundle's own face stage (fp32).
    The calibration's wall-clock ``seconds`` is printed, not kept: the shipped bytes must not
    depend on how fast the machine was."""
    from edgedml.bundle import read_manifest
    from edgedml.runtime.assurance.calibration import calibrate

    report = calibrate(bundle, face_photos(), backend="onnxruntime", precision="fp32")
    log(f"calibrated on {report['images']} photos of {report['classes']} people: {report['genuine_pairs']} genuine "
        f"and {report['impostor_pairs']} impostor pairs, EER {report['eer']:.4f}, default threshold "
        f"{report['thresholds']['default']['threshold']:.4f} (FAR {report['thresholds']['default']['far']:.2e}, TAR "
        f"{report['thresholds']['default']['tar']:.4f}) in {report['seconds']:.0f} s")
    people = " + ".join(f"{d} {p[0]}–{p[-1]}" for d, p in face_people().items())
    manifest = read_manifest(bundle)
    calibration = {k: v for k, v in manifest.calibration.items() if k != "seconds"}
    calibration["source"] = f"whole photos of {people}"  # what `edgedml bundles` names; data is the folder
    return manifest.update(calibration=calibration)


def differences(a: Path, b: Path) -> list[str]:
    """Files that differ between two bundle folders (or exist in one only), as relative paths."""
    names = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()} | \
            {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    return sorted(n for n in names if not ((a / n).is_file() and (b / n).is_file()
                                           and filecmp.cmp(a / n, b / n, shallow=False)))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["objects", "faces", "all"])
    parser.add_argument("--check", action="store_true",
                        help="Export into a temporary folder and compare with the shipped bundle, byte by byte.")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    names = ["objects", "faces"] if args.which == "all" else [args.which]
    failed = []
    for name in names:
        started = time.perf_counter()
        if args.check:
            with tempfile.TemporaryDirectory(prefix=f"ship-{name}-") as tmp:
                export_preset(name, Path(tmp) / name, log=lambda m: print(m, file=sys.stderr))
                diff = differences(SHIPPED / name, Path(tmp) / name)
            print(f"{name}: " + ("identical to the shipped bundle" if not diff else f"differs in {', '.join(diff)}"))
            failed += [name] if diff else []
        else:
            export_preset(name, SHIPPED / name, log=lambda m: print(m, file=sys.stderr))
            print(f"{name}: {SHIPPED / name}, {folder_bytes(SHIPPED / name) / 1e6:.1f} MB")
        print(f"  in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
