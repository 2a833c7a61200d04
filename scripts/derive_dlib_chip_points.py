"""Where YuNet's five landmarks land in dlib's 150×150 face chip, derived from real photos.

dlib's face descriptor was trained on its own chip: ``dlib.get_face_chip(img, shape, 150, 0.25)``,
a similarity transform of its 5-point landmarks (eye corners, nose base) onto a mean face. YuNet
finds other points (eye centres, nose tip, mouth corners). For every photo where dlib's HOG
detector + 5-point predictor and YuNet each find exactly one face, this maps YuNet's points into
dlib's chip with dlib's own chip transform and takes the median of each point; the result is
written to ``edgedml/runtime/faces/dlib_chip.py`` (the template :func:`edgedml.runtime.faces.roi.dlib_chip_view`
warps onto, with no dlib at run time).

    python scripts/derive_dlib_chip_points.py                 # people no evaluation uses (default)
    python scripts/derive_dlib_chip_points.py --people all    # every photo
    python scripts/derive_dlib_chip_points.py --dry-run       # print only

By default the template is derived on ORL s01–s20 and yalefaces subjects 01–08, so that the
check (``benchmarks/dlib_chip_alignment.py``, on ORL s21–s40 and yalefaces 09–15) measures
people the template never saw. dlib is an oracle here only: nothing in ``edgedml/`` imports it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
OUT = ROOT / "edgedml" / "runtime" / "faces" / "dlib_chip.py"
CHIP_SIZE, CHIP_PADDING = 150, 0.25
PEOPLE = {
    "train": {"orl_faces": [f"s{i:02d}" for i in range(1, 21)], "yalefaces": [f"subject{i:02d}" for i in range(1, 9)]},
    "test": {"orl_faces": [f"s{i:02d}" for i in range(21, 41)], "yalefaces": [f"subject{i:02d}" for i in range(9, 16)]},
}
PEOPLE["all"] = {k: PEOPLE["train"][k] + PEOPLE["test"][k] for k in PEOPLE["train"]}
POINT_NAMES = ("right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner")


def photos(people: dict) -> list[tuple[str, Path]]:
    """(person, path) of every photo of the named people, sorted."""
    out = []
    for dataset, folders in people.items():
        for folder in folders:
            for path in sorted((DATA / dataset / folder).iterdir()):
                if path.suffix.lower() in (".pgm", ".png", ".jpg", ".gif"):
                    out.append((f"{dataset}/{folder}", path))
    return out


def dlib_tools():
    """(HOG detector, 5-point predictor) of dlib, the oracle."""
    import dlib

    from edgedml.models.dlib_files import dlib_model_file

    landmarks = dlib_model_file("shape_predictor_5_face_landmarks.dat")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmarks))


def dlib_chip_transform(details) -> np.ndarray:
    """(2, 3) affine map frame → chip of a ``dlib.chip_details``, as dlib's ``get_mapping_to_chip``
    builds it: the rect's corners rotated by ``angle`` about its centre go to the chip's corners
    (0, 0), (cols−1, 0), (cols−1, rows−1). Pixel centres are integers, as in cv2.warpAffine."""
    import cv2

    r = details.rect
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    cos, sin = np.cos(details.angle), np.sin(details.angle)
    rotate = np.array([[cos, -sin], [sin, cos]])
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
    src = (corners - centre) @ rotate.T + centre
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], np.float64)
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


def analyse(path: Path, detector, hog, predictor) -> dict | None:
    """For one photo where both find exactly one face: {"rgb", "face" (YuNet), "shape" (dlib's
    5 points), "to_chip" (2, 3), "points" (5, 2): YuNet's landmarks in dlib's chip}; else None
    with the reason in ``miss``."""
    import dlib

    from edgedml.runtime.inference.image import load_image

    rgb = load_image(path)
    boxes = hog(rgb, 1)  # one upsampling, as face_recognition does
    faces = detector.detect(rgb)
    if len(boxes) != 1 or len(faces) != 1:
        return {"miss": f"dlib {len(boxes)} faces, YuNet {len(faces)}"}
    shape = predictor(rgb, boxes[0])
    to_chip = dlib_chip_transform(dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING))
    landmarks = np.array(faces[0].landmarks, np.float64)
    points = landmarks @ to_chip[:, :2].T + to_chip[:, 2]
    return {"rgb": rgb, "face": faces[0], "shape": shape, "to_chip": to_chip, "points": points}


def derive(people: str) -> dict:
    """The template: per point the median position in dlib's chip, and the spread around it."""
    from edgedml.runtime.faces.detection import YuNetDetector

    detector = YuNetDetector(YUNET)
    hog, predictor = dlib_tools()
    points, misses, names = [], [], []
    for person, path in photos(PEOPLE[people]):
        found = analyse(path, detector, hog, predictor)
        if "miss" in found:
            misses.append(f"{path.relative_to(DATA)}: {found['miss']}")
        else:
            points.append(found["points"])
            names.append(person)
    points = np.stack(points)  # (N, 5, 2)
    template = np.median(points, axis=0)
    distance = np.linalg.norm(points - template, axis=2)  # (N, 5)
    return {"template": template, "median_distance": np.median(distance, 0), "p90_distance":
            np.percentile(distance, 90, 0), "mad": np.median(np.abs(points - template), 0), "photos": len(points),
            "people": len(set(names)), "misses": misses}


def module_text(result: dict, people: str) -> str:
    def rows(a) -> str:
        return "\n".join(f"    ({x:.2f}, {y:.2f}),  # {n}" for (x, y), n in zip(a, POINT_NAMES))

    sets = ", ".join(f"{k} {v[0]}–{v[-1]}" for k, v in PEOPLE[people].items())
    spread = ", ".join(f"{d:.2f}" for d in result["median_distance"])
    p90 = ", ".join(f"{d:.2f}" for d in result["p90_distance"])
    return f'''"""YuNet's five landmarks in dlib's 150×150 face chip (padding 0.25): the template
:func:`edgedml.runtime.faces.roi.dlib_chip_view` warps a face onto, so that dlib's face descriptor sees
the crop it was trained on with no dlib at run time.

GENERATED; do not edit. Produced by

    python scripts/derive_dlib_chip_points.py --people {people}

on {result["photos"]} photos of {result["people"]} people ({sets}) where dlib's HOG detector +
5-point predictor and YuNet each found one face: per point, the median of YuNet's landmark mapped
into the chip by dlib's own chip transform (``get_face_chip_details``). Pixel coordinates, (x, y),
pixel centres at integers (as cv2.warpAffine). Spread around the median (chip pixels): median
distance {spread}; 90th percentile {p90}.
"""

import numpy as np

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25

# (5, 2) in YuNet's order (the person's right eye first: the image's left).
YUNET_POINTS_IN_DLIB_CHIP = np.array([
{rows(result["template"])}
])

# (5,) median distance (chip pixels) of a photo's point to the template's.
YUNET_POINTS_SPREAD = np.array([{spread}])
'''


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", choices=sorted(PEOPLE), default="train",
                        help="whose photos to derive from (default: train, people the check never uses)")
    parser.add_argument("--dry-run", action="store_true", help="print the template, write nothing")
    args = parser.parse_args(argv)
    result = derive(args.people)
    print(f"{result['photos']} photos of {result['people']} people; {len(result['misses'])} left out "
          f"(not one face for each detector)")
    for name, (x, y), d, p in zip(POINT_NAMES, result["template"], result["median_distance"], result["p90_distance"]):
        print(f"  {name:20s} ({x:7.2f}, {y:7.2f})  median distance {d:.2f} px, 90th percentile {p:.2f} px")
    if not args.dry_run:
        OUT.write_text(module_text(result, args.people))
        print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
