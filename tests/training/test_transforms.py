import numpy as np
import pytest
import torch
from conftest import SHIPPED, data_path_or_none

from edgedml.preprocessing import PreprocessSpec
from edgedml.runtime.inference.image import read_rgb
from edgedml.runtime.inference.preprocess import to_network_input
from edgedml.training.transforms import EvalTransform, TrainTransform, resample

SPECS = [PreprocessSpec(), PreprocessSpec(size=160), PreprocessSpec(size=240, resize="stretch"),
         PreprocessSpec(size=512, crop_fraction=1.0)]  # 512 upsamples the 243-pixel faces


def real_images(tmp_path):
    """The shipped photos and a grey version of one; the shared flowers and faces where present."""
    import cv2

    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), cv2.imread(str(SHIPPED / "pansy.jpg"), cv2.IMREAD_GRAYSCALE))
    files = sorted(SHIPPED.glob("*.jpg")) + [grey]
    flowers, faces = data_path_or_none("flowers17"), data_path_or_none("yalefaces")
    files += sorted(flowers.glob("*/*.jpg"))[::160] if flowers else []
    files += sorted(faces.glob("*/*"))[::40] if faces else []
    return files


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.resize}{s.size}")
def test_torch_and_opencv_preprocessing_agree_on_real_images(tmp_path, spec):
    torch_side = EvalTransform(spec)
    for path in real_images(tmp_path):
        rgb = read_rgb(path)
        a = to_network_input(rgb, spec)
        b = torch_side(rgb).numpy()
        assert a.shape == b.shape == (3, spec.size, spec.size)
        diff = np.abs(a - b).max() * max(spec.std)  # back in [0, 1] pixel units
        assert diff < 1 / 255, path
        assert diff < 1e-5, f"{path}: the two implementations drifted apart ({diff})"


def test_resample_is_exact_area_average_for_integer_factors():
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 4, 6)
    out = resample(image, 2, 3)
    expect = torch.nn.functional.avg_pool2d(image[None], 2)[0]
    assert torch.allclose(out, expect)


def test_train_transform_is_random_but_repeatable():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)
    t = TrainTransform(PreprocessSpec(size=64))
    torch.manual_seed(0)
    a = [t(rgb) for _ in range(3)]
    torch.manual_seed(0)
    b = [t(rgb) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])
    assert a[0].shape == (3, 64, 64)


def test_train_transform_flip_and_full_crop_equal_eval_mirrored():
    rgb = np.random.default_rng(1).integers(0, 255, size=(50, 50, 3), dtype=np.uint8)
    spec = PreprocessSpec(size=32, crop_fraction=1.0)
    t = TrainTransform(spec, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=1.0)
    assert torch.allclose(t(rgb), EvalTransform(spec)(rgb).flip(-1), atol=1e-6)
