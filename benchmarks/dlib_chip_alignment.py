"""dlib's face descriptor on chips warped from YuNet's landmarks against dlib's own chips.

dlib's descriptor was trained on ``dlib.get_face_chip`` (HOG detector, 5-point landmarks, padding
0.25). edgedml finds faces with YuNet and warps them onto the template of
``edgedml/runtime/faces/dlib_chip.py`` (:func:`edgedml.runtime.faces.roi.dlib_chip_view`, no dlib). On the
photos of people the template was not derived from (ORL s21–s40, yalefaces 09–15) where both
detectors find one face, this measures dlib's descriptor (dlib-bin, the oracle) of both chips of
each photo: their cosine, and the EER of each pipeline on all pairs of those photos (Euclidean
distance between descriptors, as face_recognition compares them; threshold 0.6 also reported).
A third row, the square eye-levelled crop a detector bundle cuts today (``face_view``, default
DetectorSettings) resized to 150 px, shows what the template is worth.

    python scripts/derive_dlib_chip_points.py           # the template (ORL s01–s20, yale 01–08)
    python benchmarks/dlib_chip_alignment.py            # → benchmarks/results/dlib_chip_alignment.{json,md}

ORL (AT&T Laboratories Cambridge) and Yale Faces (Yale University) are research-use sets.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
RESULTS = ROOT / "benchmarks" / "results"
FARS = (1e-2, 1e-3)
FACE_RECOGNITION_THRESHOLD = 0.6  # face_recognition's default tolerance (Euclidean)


def verification(descriptors: np.ndarray, labels: np.ndarray) -> dict:
    """EER, TAR at FAR and the 0.6-threshold error rates of all pairs, scored by −Euclidean distance."""
    from edgedml.runtime.assurance.error_rates import equal_error_rate, far_tar, threshold_at_far

    distance = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=2)
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    genuine, impostor = -distance[upper][same], -distance[upper][~same]
    eer, at = equal_error_rate(genuine, impostor)
    masked = distance + np.diag(np.full(len(labels), np.inf))
    row = {"eer": eer, "eer_distance": -at, "genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()),
           "recall@1": float((labels[masked.argmin(1)] == labels).mean())}
    for far in FARS:
        row[f"tar@far={far:g}"] = far_tar(genuine, impostor, threshold_at_far(impostor, far))[1]
    far, tar = far_tar(genuine, impostor, -FACE_RECOGNITION_THRESHOLD)
    row["far@0.6"], row["frr@0.6"] = far, 1 - tar
    return row


def main() -> int:
    import cv2
    import dlib
    from derive_dlib_chip_points import CHIP_PADDING, CHIP_SIZE, PEOPLE, YUNET, analyse, dlib_tools, photos

    from edgedml.models.dlib_files import dlib_model_file
    from edgedml.runtime.faces.detection import DetectorSettings, YuNetDetector
    from edgedml.runtime.faces.roi import dlib_chip_view, face_view

    cv2.setNumThreads(1)
    detector = YuNetDetector(YUNET)
    hog, predictor = dlib_tools()
    net = dlib.face_recognition_model_v1(str(dlib_model_file()))
    settings = DetectorSettings()
    rows = {"dlib (HOG + 5-point chip)": [], "YuNet + dlib chip template (edgedml)": [],
            "YuNet square crop (face_view) resized to 150": []}
    labels, misses, offsets, seconds = [], [], [], []
    for person, path in photos(PEOPLE["test"]):
        found = analyse(path, detector, hog, predictor)
        if "miss" in found:
            misses.append(f"{path.relative_to(path.parents[2])}: {found['miss']}")
            continue
        rgb, face = found["rgb"], found["face"]
        own = dlib.get_face_chip(rgb, found["shape"], size=CHIP_SIZE, padding=CHIP_PADDING)
        view = dlib_chip_view(rgb, face)
        square = face_view(rgb, face, settings.margin, settings.align).pixels
        square = cv2.resize(square, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_AREA)
        start = time.perf_counter()
        for name, chip in zip(rows, (own, view.pixels, square)):
            rows[name].append(np.array(net.compute_face_descriptor(np.ascontiguousarray(chip))))
        seconds.append((time.perf_counter() - start) / 3)
        # where dlib's chip corners and centre land in the YuNet chip (chip pixels)
        probe = np.array([[0, 0], [149, 0], [149, 149], [0, 149], [74.5, 74.5]])
        in_frame = cv2.invertAffineTransform(found["to_chip"])
        frame = probe @ in_frame[:, :2].T + in_frame[:, 2]
        forward = cv2.invertAffineTransform(view.to_frame)
        offsets.append(np.linalg.norm(frame @ forward[:, :2].T + forward[:, 2] - probe, axis=1).mean())
        labels.append(person)
    labels = np.array(labels)
    descriptors = {name: np.stack(d) for name, d in rows.items()}
    unit = {name: d / np.linalg.norm(d, axis=1, keepdims=True) for name, d in descriptors.items()}
    own_name = next(iter(rows))
    report = {"photos": int(len(labels)), "people": int(len(set(labels))), "left_out": misses,
              "sets": {k: f"{v[0]}–{v[-1]}" for k, v in PEOPLE["test"].items()},
              "descriptor_ms_median": round(1000 * float(np.median(seconds)), 1),
              "chip_offset_px": {"median": float(np.median(offsets)), "p95": float(np.percentile(offsets, 95))},
              "pipelines": {}}
    for name in rows:
        entry = verification(descriptors[name], labels)
        if name != own_name:
            cosine = (unit[name] * unit[own_name]).sum(1)
            euclid = np.linalg.norm(descriptors[name] - descriptors[own_name], axis=1)
            entry["cosine_to_dlib_chip"] = {"mean": float(cosine.mean()), "min": float(cosine.min()),
                                            "p5": float(np.percentile(cosine, 5))}
            entry["distance_to_dlib_chip"] = {"median": float(np.median(euclid)), "max": float(euclid.max())}
        report["pipelines"][name] = entry
    ours = report["pipelines"]["YuNet + dlib chip template (edgedml)"]["eer"]
    theirs = report["pipelines"][own_name]["eer"]
    report["eer_ratio_yunet_to_dlib"] = ours / theirs if theirs > 0 else (0.0 if ours == 0 else float("inf"))
    report["target"] = "YuNet's EER within 1.2× of dlib's own"
    report["meets_target"] = bool(ours <= 1.2 * theirs)
    report["machine"] = {"python": platform.python_version(), "dlib": dlib.__version__, "cv2": cv2.__version__,
                         "processor": platform.processor() or platform.machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dlib_chip_alignment.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "dlib_chip_alignment.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    lines = ["Produced by `python benchmarks/dlib_chip_alignment.py` (template: `python "
             "scripts/derive_dlib_chip_points.py`, ORL s01–s20 and yalefaces 01–08).", "",
             f"dlib's descriptor on {report['photos']} photos of {report['people']} people "
             f"({', '.join(f'{k} {v}' for k, v in report['sets'].items())}) where dlib's HOG detector and YuNet "
             f"each find one face ({len(report['left_out'])} left out). Euclidean distance between descriptors.", "",
             "| chip | EER | TAR @ FAR 1e-2 | TAR @ FAR 1e-3 | FAR / FRR at 0.6 | Recall@1 | "
             "cosine to dlib's chip: mean / min / 5th pct |",
             "|---|---|---|---|---|---|---|"]
    for name, m in report["pipelines"].items():
        c = m.get("cosine_to_dlib_chip")
        cos = f"{c['mean']:.4f} / {c['min']:.4f} / {c['p5']:.4f}" if c else "—"
        lines.append(f"| {name} | {m['eer']:.4f} | {m['tar@far=0.01']:.3f} | {m['tar@far=0.001']:.3f} | "
                     f"{m['far@0.6']:.4f} / {m['frr@0.6']:.4f} | {m['recall@1']:.3f} | {cos} |")
    first = next(iter(report["pipelines"].values()))
    lines += ["", f"{first['genuine_pairs']} genuine and {first['impostor_pairs']} impostor pairs. YuNet's EER / "
              f"dlib's: {report['eer_ratio_yunet_to_dlib']:.2f} (target ≤ 1.2: "
              f"{'met' if report['meets_target'] else 'NOT met'}). dlib's chip corners and centre land "
              f"{report['chip_offset_px']['median']:.1f} px (median; 95th percentile "
              f"{report['chip_offset_px']['p95']:.1f}) from where they are in the YuNet chip. dlib's descriptor: "
              f"{report['descriptor_ms_median']} ms per chip (median). One genuine pair is "
              f"{1 / first['genuine_pairs']:.4f} of the genuine pairs: EERs this low differ by a pair or two.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
