"""Face verification on unseen people: orl_faces s21–s40 and yalefaces subjects 09–15 (277
photos of 27 people), the untrained ImageNet backbone against the trained `faces` preset.

    python scripts/train_presets.py faces          # the trained model (orl s01–s20 + yale 01–08)
    python benchmarks/face_verification.py         # → benchmarks/results/face_verification.{json,md,png}
    python benchmarks/face_verification.py --photos   # the photos as they are (no detector)

By default the photos are first cut as a detector bundle cuts them (YuNet, square, eyes levelled,
the default DetectorSettings), which is also what the `faces` preset trained on.

Every pair of test photos is scored (genuine: same person; impostor: different people) with the
global cosine and with the multi-scale score (Σ T ⊙ s + cosine, the score `Matcher.compare`
returns). Reported: EER, TAR at FAR 1e-2 and 1e-3, identification Recall@1 (each photo against
all others) and the ROC curves (PNG). ORL (AT&T Laboratories Cambridge) and Yale Faces (Yale
University) are research-use sets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
TEST = {"orl_faces": [f"s{i:02d}" for i in range(21, 41)], "yalefaces": [f"subject{i:02d}" for i in range(9, 16)]}
MODELS = {"untrained ImageNet Lite0 (preset imagenet)": "imagenet", "trained (preset faces)": "faces"}
FARS = (1e-2, 1e-3)


def pair_scores(model, samples) -> dict:
    """All-pairs global and multi-scale scores of the samples: {score: (genuine, impostor)}, and R@1."""
    import numpy as np
    import torch

    from edgedml.models.matching import structural_match
    from edgedml.training.evaluate import embed_samples

    cfg = model.config
    data = embed_samples(model, samples, cfg.preprocessing(), workers=2)
    cosine = data.embedding @ data.embedding.T
    centers = (data.embedding[:, None], data.embedding[None]) if cfg.centers_from_embedding else (None, None)
    with torch.no_grad():
        structural = structural_match(data.local[:, None], data.local[None], cfg.sinkhorn_eps, cfg.sinkhorn_iters,
                                      cfg.marginals, "scaling", x_center=centers[0], y_center=centers[1]).score
    labels = data.labels.numpy()
    n = len(labels)
    upper = np.triu_indices(n, k=1)
    same = labels[upper[0]] == labels[upper[1]]
    out = {}
    for name, scores in (("global", cosine), ("multiscale", structural + cosine)):
        s = scores.numpy()
        masked = s.copy()
        np.fill_diagonal(masked, -np.inf)
        recall1 = float((labels[masked.argmax(1)] == labels).mean())
        out[name] = {"genuine": s[upper][same], "impostor": s[upper][~same], "recall@1": recall1}
    return out


def verification(genuine, impostor) -> dict:
    from edgedml.runtime.calibration import equal_error_rate, far_tar, threshold_at_far

    eer, at = equal_error_rate(genuine, impostor)
    row = {"eer": eer, "eer_threshold": at, "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor))}
    for far in FARS:
        row[f"tar@far={far:g}"] = far_tar(genuine, impostor, threshold_at_far(impostor, far))[1]
    return row


def markdown(report: dict) -> str:
    lines = ["| model | score | EER | TAR @ FAR 1e-2 | TAR @ FAR 1e-3 | Recall@1 |", "|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        for score, m in entry["scores"].items():
            lines.append(f"| {name} | {score} | {m['eer']:.3f} | {m['tar@far=0.01']:.3f} | {m['tar@far=0.001']:.3f} | "
                         f"{m['recall@1']:.3f} |")
    models = list(report["models"].values())
    if len(models) == 2:
        before, after = (m["scores"]["multiscale"]["eer"] for m in models)
        lines += ["", f"- trained multi-scale EER {after:.3f} vs untrained {before:.3f}: "
                      f"{after / before:.2f}× (target ≤ 0.5×: {'met' if after <= before / 2 else 'missed'})"]
    return "\n".join(lines) + "\n"


def face_crops(names) -> list[Path]:
    """The data sets as YuNet's aligned crops (the default DetectorSettings, as the faces preset
    was trained and a detector bundle cuts), made once under runs/face_crops."""
    from edgedml.runtime.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.face_crops import cropped_copy

    detector = YuNetDetector(YUNET, DetectorSettings())
    return [cropped_copy(DATA / name, ROOT / "runs" / "face_crops" / name, detector) for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--photos", action="store_true",
                        help="score the photos as they are, not YuNet's face crops of them")
    args = parser.parse_args()
    for name in TEST:
        if not (DATA / name).is_dir():
            sys.exit(f"{DATA / name} not found: this benchmark needs ../shared/data")
    if not args.photos and not YUNET.is_file():
        sys.exit(f"{YUNET} not found: pass --photos, or put the YuNet model there")
    import cv2

    from edgedml.models import load_checkpoint
    from edgedml.runtime.calibration import draw_roc
    from edgedml.training.datasets import load_splits

    roots = [DATA / name for name in TEST] if args.photos else face_crops(TEST)
    split = load_splits(roots, test_classes=[c for names in TEST.values() for c in names])
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    report = {"test_people": len(split.test_classes), "test_images": len(split.test), "test_classes": TEST,
              "images": "photos" if args.photos else "YuNet's aligned face crops (default DetectorSettings)",
              "command": "python benchmarks/face_verification.py" + (" --photos" if args.photos else ""),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
              "models": {}}
    curves = {}
    for name, checkpoint in MODELS.items():
        started = time.perf_counter()
        scored = pair_scores(load_checkpoint(checkpoint), split.test)
        report["models"][name] = {"checkpoint": checkpoint, "seconds": round(time.perf_counter() - started, 1),
                                  "scores": {s: {**verification(v["genuine"], v["impostor"]), "recall@1": v["recall@1"]}
                                             for s, v in scored.items()}}
        curves[f"{checkpoint}, multi-scale"] = (scored["multiscale"]["genuine"], scored["multiscale"]["impostor"])
        print(name, json.dumps(report["models"][name]["scores"]), flush=True)
    stem = "face_verification_photos" if args.photos else "face_verification"
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / f"{stem}.md").write_text(markdown(report))
    cv2.imwrite(str(results / f"{stem}_roc.png"), draw_roc(curves))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
