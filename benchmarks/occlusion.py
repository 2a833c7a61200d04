"""Occluded faces: does partial transport match the visible part instead of forcing mass onto the
occluder?

    python benchmarks/occlusion.py        # → benchmarks/results/occlusion.{json,md}

Protocol: the face-verification test split (orl_faces s21–s40, yalefaces subjects 09–15: 277
photos of 27 people the `faces` preset never saw), cut as the model's detector bundle cuts them
(YuNet, then dlib's chip for the `faces` preset, a square crop for other models). Every pair
i < j is scored, with image i occluded by a grey box (value 128) over a random 25–40% of the
crop (seeded): the lower part (a scarf, a mask), the upper part (a cap, sunglasses) or one side
(left or right, at random).
Scores: the multi-scale score `Matcher.compare` returns (structural + cosine), with full transport
and with partial transport at m = 0.5 … 0.9 (`ModelConfig.partial_mass`), on the `faces`
preset. Reported: EER and TAR at FAR 1e-2 on the occluded pairs, and the EER on the clean pairs
(no occlusion) for each mass. Target: partial matching lowers the occluded-pair EER without raising
the clean-pair EER by more than 1 point.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
KINDS = ("lower", "upper", "side")
MASSES = (None, 0.9, 0.8, 0.7, 0.6, 0.5)
FRACTION = (0.25, 0.40)
GREY = 128


def occlude(rgb: np.ndarray, kind: str, fraction: float, left: bool) -> np.ndarray:
    """A copy of ``rgb`` with a grey box over ``fraction`` of it: the lower or upper rows, or the
    left or right columns."""
    out = rgb.copy()
    h, w = rgb.shape[:2]
    if kind == "lower":
        out[h - int(round(h * fraction)):] = GREY
    elif kind == "upper":
        out[:int(round(h * fraction))] = GREY
    elif left:
        out[:, :int(round(w * fraction))] = GREY
    else:
        out[:, w - int(round(w * fraction)):] = GREY
    return out


def embed(model, images: list[np.ndarray]):
    """RGB arrays through the deployment preprocessing and the model → (embedding, local)."""
    import torch

    from edgedml.runtime.inference.preprocess import to_network_input

    spec = model.config.preprocessing()
    embeddings, locals_ = [], []
    with torch.no_grad():
        for start in range(0, len(images), 32):
            batch = torch.from_numpy(np.stack([to_network_input(im, spec) for im in images[start:start + 32]]))
            out = model(batch)
            embeddings.append(out.embedding)
            locals_.append(out.local)
    return torch.cat(embeddings), torch.cat(locals_)


def pair_scores(cfg, a, b, mass) -> tuple[np.ndarray, np.ndarray]:
    """Structural and multi-scale scores (N, N) of the features ``a`` (rows) against ``b`` (columns)."""
    import torch

    from edgedml.models.matching import structural_match

    (emb_a, loc_a), (emb_b, loc_b) = a, b
    rows = []
    with torch.no_grad():
        for start in range(0, len(emb_a), 64):
            x, xb = loc_a[start:start + 64, None], emb_a[start:start + 64, None]
            structural = structural_match(x, loc_b[None], cfg.sinkhorn_eps, cfg.sinkhorn_iters, cfg.marginals,
                                          "scaling", x_center=xb if cfg.centers_from_embedding else None,
                                          y_center=emb_b[None] if cfg.centers_from_embedding else None,
                                          mass=mass).score
            rows.append(structural)
    structural = torch.cat(rows)
    return structural.numpy(), (structural + emb_a @ emb_b.T).numpy()


def verification(scores: np.ndarray, labels: np.ndarray) -> dict:
    from edgedml.runtime.assurance.error_rates import equal_error_rate, far_tar, threshold_at_far

    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    genuine, impostor = scores[upper][same], scores[upper][~same]
    eer, _ = equal_error_rate(genuine, impostor)
    return {"eer": float(eer), "tar@far=0.01": float(far_tar(genuine, impostor, threshold_at_far(impostor, 1e-2))[1]),
            "genuine_pairs": int(len(genuine)), "impostor_pairs": int(len(impostor))}


def markdown(report: dict) -> str:
    names = [("full" if m is None else f"m = {m:g}") for m in MASSES]
    lines = ["| score | pairs | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for score, results in (("multi-scale", report["results"]), ("structural only", report["structural_only"])):
        for setting, rows in results.items():
            cells = [f"{rows[n]['eer']:.3f} / {rows[n]['tar@far=0.01']:.3f}" for n in names]
            lines.append(f"| {score} | {setting} | " + " | ".join(cells) + " |")
    lines += ["", "EER / TAR at FAR 1e-2, `faces` preset."]
    clean = report["results"]["clean"]
    for setting, rows in report["results"].items():
        if setting == "clean":
            continue
        best = min((n for n in names[1:]), key=lambda n: rows[n]["eer"])
        lines.append(f"- {setting}: EER full {rows['full']['eer']:.3f} → {rows[best]['eer']:.3f} at {best} "
                     f"(clean pairs at {best}: {clean[best]['eer']:.3f} vs {clean['full']['eer']:.3f} full)")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="faces", help="a preset or checkpoint [default: faces]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from face_verification import TEST, YUNET, face_crops

    if not YUNET.is_file():
        sys.exit(f"{YUNET} not found: this benchmark cuts the faces with YuNet")
    from edgedml.models import load_checkpoint
    from edgedml.runtime.faces.detection import CHIP_OF_BACKBONE
    from edgedml.runtime.inference.image import load_image
    from edgedml.training.datasets import load_splits

    started = time.perf_counter()
    model = load_checkpoint(args.checkpoint).eval()
    chip = CHIP_OF_BACKBONE.get(model.config.backbone, "square")  # the crop the model's bundle would cut
    split = load_splits(face_crops(TEST, chip), test_classes=[c for names in TEST.values() for c in names])
    labels = np.array([s.label for s in split.test])
    photos = [load_image(s.path) for s in split.test]
    rng = np.random.default_rng(args.seed)
    clean = embed(model, photos)
    report = {"checkpoint": args.checkpoint, "images": len(photos), "people": int(len(set(labels))),
              "seed": args.seed, "occluded_fraction": FRACTION, "grey": GREY, "results": {}}
    sets = {"clean": clean}
    for kind in KINDS:
        fractions = rng.uniform(*FRACTION, size=len(photos))
        sides = rng.random(len(photos)) < 0.5
        sets[f"occluded ({kind})"] = embed(model, [occlude(p, kind, f, s) for p, f, s in zip(photos, fractions, sides)])
    report["structural_only"] = {}
    for setting, features in sets.items():
        rows, alone = {}, {}
        for mass in MASSES:
            name = "full" if mass is None else f"m = {mass:g}"
            structural, multiscale = pair_scores(model.config, features, clean, mass)  # row i occluded, column j clean
            rows[name], alone[name] = verification(multiscale, labels), verification(structural, labels)
        report["results"][setting], report["structural_only"][setting] = rows, alone
        print(setting, {k: round(v["eer"], 4) for k, v in rows.items()},
              {k: round(v["eer"], 4) for k, v in alone.items()}, flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = platform.platform()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "occlusion.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "occlusion.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
