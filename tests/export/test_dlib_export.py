"""The `faces` preset (dlib's face network) exported at every precision, held to dlib itself: the
bundle's embedders run by ONNX Runtime on dlib's own chips of real faces give dlib's descriptor
(fp32 ≤ 1e-4 max |Δ|, fp16 cosine ≥ 0.9999, int8-cpu cosine ≥ 0.99), and every graph is ready
for TensorRT's strongly typed builder."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path
from dlib_oracle import YUNET

pytestmark = pytest.mark.slow
PRECISIONS = ("fp32", "fp16", "int8-cpu")


@pytest.fixture(scope="module")
def faces_bundle(tmp_path_factory):
    """The faces preset exported with YuNet at fp32, fp16 and int8-cpu, INT8 calibrated on YuNet
    chips of people and photos the oracle's chips do not use (orl s01–s20, photos 3–6)."""
    pytest.importorskip("onnxruntime")
    from dlib_oracle import faces_preset_or_skip, yunet_chips

    from edgedml.export.exporter import ExportOptions, export_bundle

    model = faces_preset_or_skip()
    root = tmp_path_factory.mktemp("dlib_export")
    calib = root / "calib"
    orl = data_path("orl_faces")
    yunet_chips([orl / f"s{person:02d}" / f"{photo}.pgm" for person in range(1, 21) for photo in (3, 4, 5, 6)], calib)
    options = ExportOptions(precisions=PRECISIONS, calib=str(calib), calib_images=64, validate_with=str(calib),
                            detector=f"yunet:{YUNET}")
    export_bundle(model.eval(), root / "bundle", options, source="preset faces", log=lambda m: None)
    return root / "bundle"


@pytest.fixture(scope="module")
def oracle():
    dlib = pytest.importorskip("dlib")  # noqa: F841  (the oracle's own pipeline needs it)
    from dlib_oracle import dlib_pipeline_chips

    from edgedml.models.dlib_files import dlib_model_file

    chips, descriptors = dlib_pipeline_chips(dlib_model_file())
    return chips, descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_of_the_faces_bundle_gives_dlibs_descriptor(faces_bundle, oracle, precision):
    from edgedml.runtime.matching.matcher import Matcher

    chips, expected = oracle
    assert len(chips) >= 50
    # the chips are dlib's own, so no detector: the embedder sees exactly dlib's input
    matcher = Matcher(faces_bundle, backend="onnxruntime", precision=precision, detector="none")
    got = matcher.embed(list(chips)).embedding
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1)
    if precision == "fp32":
        assert np.abs(got - expected).max() <= 1e-4
    else:
        assert cosine.min() >= {"fp16": 0.9999, "int8-cpu": 0.99}[precision], cosine.min()


def test_the_faces_bundle_is_ready_for_tensorrt_and_cuts_dlibs_chip(faces_bundle):
    from edgedml.bundle import read_manifest

    manifest = read_manifest(faces_bundle)
    assert manifest.detector["settings"]["chip"] == "dlib"
    assert manifest.preprocessing.size == 150 and manifest.preprocessing.resize == "stretch"
    assert manifest.model["backbone"] == "dlib_resnet" and manifest.model["global_feature"] == "descriptor"
    readiness = manifest.tensorrt_readiness
    assert set(readiness) == {f for files in manifest.graphs.values() for f in files.values()}  # every graph
    assert all(problems == [] for problems in readiness.values()), readiness
    assert set(manifest.graphs) == set(PRECISIONS)


def test_a_door_on_the_faces_bundle_calibrates_enrolls_and_decides(faces_bundle, tmp_path):
    """The door's path on dlib's network: calibrate on yalefaces (15 people, whole photos through
    YuNet → dlib chip), then a gallery at the calibrated default threshold opens for the enrolled
    person's other photos and stays shut for ten other people claiming that name."""
    import shutil

    from edgedml.runtime.assurance.calibration import calibrate
    from edgedml.runtime.gallery.gallery import Gallery
    from edgedml.runtime.matching.matcher import Matcher

    bundle = tmp_path / "door"
    shutil.copytree(faces_bundle, bundle)
    report = calibrate(bundle, data_path("yalefaces"), backend="onnxruntime")
    matcher = Matcher(bundle, backend="onnxruntime")
    assert matcher.threshold is not None and matcher.cropping.endswith(":chip=dlib")
    orl = data_path("orl_faces")
    with Gallery(tmp_path / "door.db", matcher) as gallery:
        gallery.enroll("s21", [str(orl / "s21" / f"{k}.pgm") for k in (1, 2)])
        genuine = [gallery.verify(str(orl / "s21" / f"{k}.pgm"), "s21") for k in range(3, 11)]
        impostors = [gallery.verify(str(orl / f"s{p}" / "1.pgm"), "s21") for p in range(22, 32)]
    assert all(d.accepted for d in genuine), [(d.score, d.threshold) for d in genuine]
    assert not any(d.accepted for d in impostors), [(d.score, d.threshold) for d in impostors]
    assert report["thresholds"]
