"""The bundles that install with edgedml (``edgedml/bundles``, ``scripts/ship_bundles.py``): the
device commands run on them with torch and onnx unimportable, ``--model objects|faces`` and
``Matcher(resolve_bundle(...))`` find them, their checksums hold, the wheel's package data holds
every file, and (slow, with the training extras) a fresh export of each preset equals the
shipped bundle byte for byte."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import BLOCK_TORCH, SHIPPED, data_path, run_blocked

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "edgedml" / "bundles"
NAMES = ("objects", "faces")


def edgedml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``edgedml ARGS`` in a fresh Python where torch, timm and onnx cannot be imported (as on a
    device); fails the test if any of them was loaded."""
    code = BLOCK_TORCH + (
        "from edgedml.cli import main\n"
        "try:\n"
        f"    main({list(args)!r}, prog_name='edgedml')\n"
        "finally:\n"
        "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'onnx'))\n"
        "    if heavy:\n"
        "        print('HEAVY', heavy, file=sys.stderr)\n"
        "        import os; os._exit(99)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert done.returncode != 99, done.stderr
    return done


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- what ships --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_shipped_bundle_verifies_and_holds_only_its_own_files(name):
    from edgedml.bundle import read_manifest
    from edgedml.bundle_files import MANIFEST, REPORTS

    manifest = read_manifest(BUNDLES / name)  # every checksum
    on_disk = set(files_of(BUNDLES / name))
    assert on_disk - set(manifest.files) - {MANIFEST} <= REPORTS, on_disk
    assert set(manifest.graph_sets) == {"fp32", "int8-cpu"}
    assert set(manifest.validation_inputs["outputs"]) == {"fp32", "int8-cpu"}
    assert manifest.created == "" and manifest.export_seconds is None  # no wall clock in shipped bytes
    assert manifest.export_options["calib"].startswith("runs/ship_bundles/")  # relative, machine-independent


def test_faces_ships_calibrated_on_people_no_benchmark_tests_and_objects_uncalibrated():
    from edgedml.bundle import read_manifest

    objects, faces = (read_manifest(BUNDLES / n, verify=False) for n in NAMES)
    assert not objects.thresholds and objects.calibration is None and objects.detector is None
    calibration = faces.calibration
    assert calibration["precision"] == "fp32" and calibration["resolved"]
    assert calibration["impostor_pairs"] >= 1000 and calibration["detector"].endswith(":chip=dlib")
    assert calibration["source"] == "whole photos of orl_faces s01–s20 + yalefaces subject01–subject08"
    assert faces.thresholds["default"]["from"] == "far_0.001"
    assert faces.detector["settings"]["chip"] == "dlib"
    assert "orl_faces s01–s20 + yalefaces subject01–subject08" in faces.source
    assert (BUNDLES / "faces" / "calibration_roc.png").is_file()


def test_package_data_holds_every_shipped_file():
    """Every file under edgedml/bundles matches a package-data pattern of pyproject.toml (else
    the wheel would install a bundle without it, and its checksums would refuse it)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = patterns["edgedml.bundles"]
    files = [p.relative_to(BUNDLES).as_posix() for p in BUNDLES.rglob("*") if p.is_file()
             and "__pycache__" not in p.parts and p.suffix != ".py"]
    missed = [f for f in files if not any(fnmatch.fnmatch(f, pattern) and f.count("/") == pattern.count("/")
                                          for pattern in patterns)]
    assert len(files) >= 17 and not missed, missed


# -- resolving a name --------------------------------------------------------------------------

def test_resolve_bundle(tmp_path, monkeypatch):
    from edgedml.runtime.shipped import resolve_bundle, shipped_bundles

    monkeypatch.chdir(tmp_path)
    assert shipped_bundles() == {n: BUNDLES / n for n in NAMES}
    assert resolve_bundle("objects") == BUNDLES / "objects"
    assert resolve_bundle("other/bundle") == Path("other/bundle")
    assert resolve_bundle(Path("faces")) == Path("faces")  # a Path is a path, never a name
    (tmp_path / "faces").mkdir()  # a folder of photos called faces is no bundle: the name still means the shipped one
    (tmp_path / "faces" / "a.jpg").write_bytes(b"x")
    assert resolve_bundle("faces") == BUNDLES / "faces"
    (tmp_path / "objects").mkdir()  # a bundle exported to ./objects wins, as --model objects always meant
    (tmp_path / "objects" / "manifest.json").write_text("{}")
    assert resolve_bundle("objects") == Path("objects")


def test_resolve_bundle_names_the_fix_when_a_shipped_bundle_is_missing(tmp_path, monkeypatch):
    from edgedml.errors import BundleError
    from edgedml.runtime import shipped

    monkeypatch.setattr(shipped, "bundles_folder", lambda: tmp_path)
    assert shipped.shipped_bundles() == {}
    with pytest.raises(BundleError, match="scripts/ship_bundles.py objects"):
        shipped.resolve_bundle("objects")


def test_shipped_module_imports_nothing_heavy():
    out = run_blocked("from edgedml.runtime.shipped import resolve_bundle, shipped_bundles\n"
                      "print(sorted(shipped_bundles()))\n")
    assert out.strip() == "['faces', 'objects']"


def test_faces_matcher_is_calibrated_and_cuts_dlib_chips():
    from edgedml.runtime.matching.matcher import Matcher
    from edgedml.runtime.shipped import resolve_bundle

    with Matcher(resolve_bundle("faces"), backend="onnxruntime") as matcher:
        assert matcher.detector is not None and matcher.detector.settings.chip == "dlib"
        assert matcher.threshold == pytest.approx(matcher.manifest.thresholds["default"]["threshold"])
        assert 1.5 < matcher.threshold < 2.0
    with Matcher("faces", backend="onnxruntime", precision="int8-cpu") as int8:  # the name alone
        assert int8.bundle == BUNDLES / "faces"
        assert int8.threshold is None  # calibrated with the fp32 graphs only: int8-cpu decides with a threshold given


def test_matcher_by_name_runs_with_torch_and_onnx_blocked():
    out = run_blocked("from edgedml.runtime import Matcher\n"
                      f"with Matcher('objects') as m:\n"
                      f"    r = m.compare({str(SHIPPED / 'daisy_1.jpg')!r}, {str(SHIPPED / 'daisy_2.jpg')!r})\n"
                      "print(round(r.score, 4), r.is_match)\n")
    score, decision = out.split()
    assert 1.0 < float(score) < 2.0 and decision == "None"  # objects ships uncalibrated: no decision


def test_licences_of_the_shipped_weights_travel_with_them():
    text = (BUNDLES / "LICENSES.md").read_text()
    for needle in ("objects/embedder.onnx", "Apache License 2.0", "faces/embedder.onnx", "CC0 1.0 Universal",
                   "faces/detector/face_detection_yunet_2026may.onnx", "Copyright (c) 2020 Shiqi Yu"):
        assert needle in text, needle


# -- the device commands, torch and onnx blocked ----------------------------------------------

def test_compare_on_the_shipped_objects_bundle(tmp_path):
    """The README's main job: a score, no decision (objects ships uncalibrated: exit 5), the picture."""
    a, b = (str(SHIPPED / n) for n in ("daisy_1.jpg", "daisy_2.jpg"))
    done = edgedml("compare", a, b, "--model", "objects", "--explain", "why.png", cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("score ") and "via onnxruntime fp32" in lines[0], lines
    assert lines[1:] == ["decision: uncalibrated: run `edgedml calibrate` or pass --threshold", "explanation: why.png"]
    assert (tmp_path / "why.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    score = float(lines[0].split()[1])
    done = edgedml("compare", a, str(SHIPPED / "pansy.jpg"), "--model", "objects", "--precision", "int8-cpu",
                   "--threshold", f"{score - 0.05:.4f}", cwd=tmp_path)
    assert done.returncode == 4 and "decision: NO MATCH at threshold" in done.stdout, done.stdout + done.stderr


def test_enroll_and_verify_on_the_shipped_faces_bundle(tmp_path):
    """A door out of the box: ORL s21 (a person neither INT8 nor the thresholds saw) enrolled from
    three photos; another of theirs is accepted at the shipped threshold, s22 claiming s21 is not."""
    orl = data_path("orl_faces")
    gallery = str(tmp_path / "door.db")
    photos = [str(orl / "s21" / f"{k}.pgm") for k in (1, 2, 3)]
    done = edgedml("enroll", gallery, "s21", *photos, "--model", "faces", cwd=tmp_path)
    assert done.returncode == 0 and "enrolled 's21': 3 new templates" in done.stdout, done.stderr
    done = edgedml("verify", gallery, "s21", str(orl / "s21" / "7.pgm"), "--model", "faces", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("ACCEPTED: s21 score "), done.stdout + done.stderr
    done = edgedml("verify", gallery, "s21", str(orl / "s22" / "7.pgm"), "--model", "faces", cwd=tmp_path)
    assert done.returncode == 4 and done.stdout.startswith("REJECTED: s21 score "), done.stdout + done.stderr


def test_bundles_lists_the_shipped_bundles(tmp_path):
    done = edgedml("bundles", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    objects, faces = done.stdout.splitlines()
    assert objects.startswith("objects  fp32, int8-cpu  ") and " MB  uncalibrated " in objects, objects
    assert faces.startswith("faces    fp32, int8-cpu  ") and "face detector face_detection_yunet" in faces, faces
    assert "default threshold 1.8" in faces and "impostor pairs of whole photos of orl_faces s01–s20" in faces, faces
    listed = json.loads(edgedml("bundles", "--json", cwd=tmp_path).stdout)
    assert [e["name"] for e in listed] == list(NAMES) and not any(e["problem"] for e in listed)
    assert listed[0]["calibration"] is None and listed[1]["calibration"]["precision"] == "fp32"
    assert sum(e["bytes"] for e in listed) < 60e6  # what the presets add to the package


def test_a_missing_model_name_is_a_usage_error(tmp_path):
    done = edgedml("compare", str(SHIPPED / "daisy_1.jpg"), str(SHIPPED / "daisy_2.jpg"), "--model", "object",
                   cwd=tmp_path)
    assert done.returncode == 2 and "'object' does not exist" in done.stderr, done.stderr


# -- a fresh export equals what ships (training extras) -----------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fresh_export_equals_the_shipped_bundle(name, tmp_path, monkeypatch):
    """Same preset, same inputs, same tools → the same bytes, every file (graphs, validation data,
    manifest, calibration pictures). Another CPU family (other ONNX Runtime / PyTorch kernels) or
    other tool versions may move the float results in their last bits: then this fails, and the
    bundle should be re-shipped from the tools the manifest's ``tools`` names."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    data_path("cub_birds" if name == "objects" else "orl_faces")
    sys.path.insert(0, str(ROOT / "scripts"))
    import ship_bundles

    monkeypatch.chdir(ROOT)
    out = tmp_path / name
    ship_bundles.export_preset(name, out, log=lambda message: None)
    assert ship_bundles.differences(BUNDLES / name, out) == []
