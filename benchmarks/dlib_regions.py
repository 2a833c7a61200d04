"""Which regions DIML should match on dlib's face network: the level, and whether to learn a projection.

    python benchmarks/dlib_regions.py        # → benchmarks/results/dlib_regions.{json,md}

dlib's network (``ModelConfig(backbone="dlib_resnet")``) has five residual levels: 35, 17, 8, 4
and 2 px at its 150 px chip. The global embedding is dlib's descriptor in every variant (so the
global row is the same throughout); what changes is the structural term's regions (4×4 = 16):

- the 4×4 level (256 channels) as it is (``upsample=4``: no resampling), or smoothed the way the
  official recipe resamples a 7×7 map (``upsample=16``);
- the level before it (8×8, 128 channels: 2×2 cells averaged) and the last one (2×2, upsampled);
- a learned 1×1 projection to 128 (the backbone frozen: dlib's descriptor unchanged), trained by
  edgedml's trainer on the training people's chips (orl s01–s20, yale 01–08); the last epoch
  is scored (validation cannot choose one: it is saturated by dlib's descriptor).

Faces are cut as a door cuts them: YuNet's largest face, warped to dlib's chip
(``roi.dlib_chip_view``). Test people: orl s21–s40 and yale 09–15, every pair. Scores: global
(cosine of dlib's descriptors), structural (Σ T ⊙ s) and multi-scale (their sum), as EER and TAR
at FAR 1e-3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
SETS = {"orl_faces": ([f"s{i:02d}" for i in range(1, 21)], [f"s{i:02d}" for i in range(21, 41)]),
        "yalefaces": ([f"subject{i:02d}" for i in range(1, 9)], [f"subject{i:02d}" for i in range(9, 16)])}
RAW = {  # name → ModelConfig fields (projection=False: the level's own channels)
    "4×4 level, as it is": dict(feature_level=3, upsample=4),
    "4×4 level, resampled 4→16→4": dict(feature_level=3, upsample=16),
    "8×8 level, 2×2 cells averaged": dict(feature_level=2, upsample=8),
    "2×2 level, upsampled 2→4": dict(feature_level=4, upsample=4),
}
LEARNED = {"4×4 level, learned projection to 128": dict(feature_level=3, upsample=4),
           "8×8 level, learned projection to 128": dict(feature_level=2, upsample=8)}
TRAIN = dict(epochs=6, batches_per_epoch=30, batch_size=32, m_per_class=4, head_lr=1e-3, freeze_stages=7,
             crop_scale=(0.85, 1.0), workers=2, seed=0)


def chip_folder(name: str) -> Path:
    """``DATA/name`` as dlib chips of YuNet's largest face (runs/dlib_chips/name), made once;
    photos without a face are left out."""
    import cv2

    from edgedml.runtime.faces.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.faces.roi import dlib_chip_view
    from edgedml.runtime.inference.image import load_image

    out = ROOT / "runs" / "dlib_chips" / name
    if (out / ".done").is_file():
        return out
    detector = YuNetDetector(YUNET, DetectorSettings())
    for folder in sorted(p for p in (DATA / name).iterdir() if p.is_dir()):
        for photo in sorted(folder.iterdir()):
            rgb = load_image(str(photo))
            faces = detector.detect(rgb)
            if faces:
                target = out / folder.name / (photo.stem + ".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), cv2.cvtColor(dlib_chip_view(rgb, faces[0]).pixels, cv2.COLOR_RGB2BGR))
    (out / ".done").write_text("")
    return out


def scores(model, samples) -> dict:
    """All pairs of ``samples``: {score name: (genuine, impostor)}."""
    import numpy as np
    import torch

    from edgedml.models.matching import structural_match
    from edgedml.training.evaluate import embed_samples

    cfg = model.config
    with torch.no_grad():
        data = embed_samples(model, samples, cfg.preprocessing(), workers=0)
        cosine = data.embedding @ data.embedding.T
        structural = structural_match(data.local[:, None], data.local[None], cfg.sinkhorn_eps, cfg.sinkhorn_iters,
                                      cfg.marginals, "scaling").score
    labels = data.labels.numpy()
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    return {name: (s.numpy()[upper][same], s.numpy()[upper][~same])
            for name, s in (("global", cosine), ("structural", structural), ("multiscale", structural + cosine))}


def metrics(genuine, impostor) -> dict:
    from edgedml.runtime.assurance.error_rates import equal_error_rate, far_tar, threshold_at_far

    return {"eer": equal_error_rate(genuine, impostor)[0],
            "tar@far=0.001": far_tar(genuine, impostor, threshold_at_far(impostor, 1e-3))[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if not YUNET.is_file() or not all((DATA / s).is_dir() for s in SETS):
        sys.exit(f"needs {YUNET} and ../shared/data/{{{','.join(SETS)}}}")
    import torch

    from edgedml.models import ModelConfig, build_model, load_checkpoint
    from edgedml.training.datasets import load_splits
    from edgedml.training.trainer import TrainConfig, train

    torch.set_num_threads(2)
    roots = [chip_folder(name) for name in SETS]
    train_people = [c for tr, _ in SETS.values() for c in tr]
    test_people = [c for _, te in SETS.values() for c in te]
    split = load_splits(roots, train_classes=train_people, test_classes=test_people)
    report = {"command": "python benchmarks/dlib_regions.py", "test_images": len(split.test),
              "test_people": len(test_people), "train_images": len(split.train), "training": TRAIN,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU", "variants": {}}
    for name, fields in {**RAW, **LEARNED}.items():
        started = time.perf_counter()
        if name in RAW:
            model = build_model(ModelConfig(backbone="dlib_resnet", projection=False, **fields))
        else:
            out = ROOT / "runs" / "dlib_regions" / f"level{fields['feature_level']}"
            shutil.rmtree(out, ignore_errors=True)  # this benchmark's own run folder: trained afresh
            cfg = TrainConfig(data=[str(r) for r in roots], out=str(out), train_classes=train_people,
                              test_classes=test_people, model=ModelConfig(backbone="dlib_resnet", **fields), **TRAIN)
            train(cfg)
            # the last epoch, not the "best": validation MAP@R on held-out training people is 0.998
            # from the first epoch on (dlib's descriptor decides it), so it cannot pick an epoch
            model = load_checkpoint(out / "last.safetensors")
        pairs = scores(model, split.test)
        report["genuine_pairs"], report["impostor_pairs"] = (len(x) for x in pairs["global"])
        row = {"config": fields, "learned": name in LEARNED, "scores": {s: metrics(*p) for s, p in pairs.items()}}
        row["seconds"] = round(time.perf_counter() - started, 1)
        report["variants"][name] = row
        print(name, json.dumps(row["scores"]), flush=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "dlib_regions.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"Regions for DIML on dlib's face network: {report['test_images']} YuNet→dlib chips of "
             f"{report['test_people']} unseen people (orl s21–s40, yale 09–15), every pair: "
             f"{report['genuine_pairs']:,} genuine, {report['impostor_pairs']:,} impostor (one genuine pair is "
             f"{1 / report['genuine_pairs']:.4f} of FRR) (`{report['command']}`).", "",
             "| regions | global EER | structural EER | multi-scale EER | global TAR@1e-3 | multi-scale TAR@1e-3 |",
             "|---|---|---|---|---|---|"]
    for name, row in report["variants"].items():
        s = row["scores"]
        lines.append(f"| {name} | {s['global']['eer']:.4f} | {s['structural']['eer']:.4f} | "
                     f"{s['multiscale']['eer']:.4f} | {s['global']['tar@far=0.001']:.3f} | "
                     f"{s['multiscale']['tar@far=0.001']:.3f} |")
    (results / "dlib_regions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(format="%(message)s")  # the library logs its progress lines; a script shows them
    logging.getLogger("edgedml").setLevel(logging.INFO)
    sys.exit(main())
