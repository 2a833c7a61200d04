"""The bundle a face benchmark measures: one export of a face model with its fp32, fp16 and
int8-cpu graphs and the YuNet face stage, cached under ``runs/`` and exported again when the
model file (or what is asked of the export) changes.

INT8 is calibrated, and the precisions validated, on chips of the people no face benchmark tests
(ORL s01–s20, yalefaces 01–08; ``PEOPLE["train"]`` of ``scripts/derive_dlib_chip_points.py``),
cut by the face stage the bundle records (:func:`edgedml.runtime.faces.roi.cut_view`): even-numbered
photos calibrate, odd-numbered ones validate. Never the test people.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
CACHE = ROOT / "runs" / "face_verification"
PRECISIONS = ("fp32", "fp16", "int8-cpu")


def model_file(spec: str) -> Path:
    """A preset name or a checkpoint path → the checkpoint file (for its sha256)."""
    from edgedml.models.presets import PRESETS, preset_file

    path = preset_file(spec) if spec in PRESETS else Path(spec)
    if not path.is_file():
        raise SystemExit(f"{spec}: no such preset file or checkpoint ({path}); pass a preset name or a "
                         f".safetensors path")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_chips(out: Path, chip: str, yunet: Path) -> tuple[Path, Path]:
    """(calibration folder, validation folder) of face chips of the training people, written
    once: ``out/calib/<set>/<person>/<photo>.png`` (even-numbered photos of each person) and
    ``out/validate/...`` (odd-numbered)."""
    import cv2
    from derive_dlib_chip_points import DATA, PEOPLE, photos

    from edgedml.runtime.faces.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.faces.roi import cut_view
    from edgedml.runtime.inference.image import load_image

    calib, validate = out / "calib", out / "validate"
    if calib.is_dir() and validate.is_dir():
        return calib, validate
    staging = out.with_name(out.name + ".partial")
    detector = YuNetDetector(yunet, DetectorSettings(chip=chip))
    count = {}
    for person, path in photos(PEOPLE["train"]):
        faces = detector.detect(rgb := load_image(path))
        if not faces:
            continue
        n = count[person] = count.get(person, -1) + 1
        target = staging / ("calib" if n % 2 == 0 else "validate") / path.relative_to(DATA).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(cut_view(rgb, faces[0], detector.settings).pixels, cv2.COLOR_RGB2BGR))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)
    return calib, validate


def cached_bundle(spec: str, yunet: Path, fresh: bool = False, log=print) -> tuple[Path, dict]:
    """The bundle of model ``spec`` (preset or checkpoint) with :data:`PRECISIONS` and YuNet:
    (folder, facts: model file, sha256, chip, export seconds or "cached")."""
    import time

    import torch

    from edgedml.bundle import read_manifest
    from edgedml.errors import BundleError
    from edgedml.export.exporter import ExportOptions, export_bundle
    from edgedml.export.options import face_settings
    from edgedml.models import load_checkpoint

    path = model_file(spec)
    digest = sha256(path)
    model = load_checkpoint(spec)
    # the face stage `edgedml export --detector` gives this model, with no --chip (dlib's for dlib_resnet)
    chip = face_settings(model.config, ExportOptions(detector=f"yunet:{yunet}")).chip
    chips = training_chips(CACHE / f"train_chips_{chip}", chip, yunet)
    key = hashlib.sha256(json.dumps([digest, sha256(yunet), chip, PRECISIONS]).encode()).hexdigest()[:16]
    out = CACHE / f"bundle_{key}"
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        stored = len(list(f.keys()))
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    facts = {"stored_tensors": stored, "model": spec, "model_file": str(shown), "model_sha256": digest,
             "model_config": model.config.to_dict(), "chip": chip, "bundle": str(out.relative_to(ROOT))}
    if not fresh:
        try:
            manifest = read_manifest(out)
            if manifest.detector and manifest.detector.get("settings", {}).get("chip", "square") == chip:
                return out, {**facts, "export": "cached"}
        except BundleError:
            pass
    options = ExportOptions(precisions=PRECISIONS, calib=str(chips[0]), validate_with=str(chips[1]),
                            detector=f"yunet:{yunet}", overwrite=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # the export is not what is timed
    started = time.perf_counter()
    try:
        export_bundle(model, out, options, source=f"benchmarks/face_bundle.py ({spec})", log=log)
    finally:
        torch.set_num_threads(threads)
    return out, {**facts, "export": f"{time.perf_counter() - started:.0f} s"}
