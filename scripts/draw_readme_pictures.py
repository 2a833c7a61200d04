"""Draw the pictures the README shows, into docs/images/ (small PNGs), from real images:

- why_match.png, why_no_match.png, why_no_face.png: `edgedml compare --explain` on ORL faces
  (s21's photos 1 and 2; s21 against s22; s21 against a daisy) with the faces bundle;
- why_objects.png: the objects bundle on the two daisies of samples/images (uncalibrated: no
  decision, exit 5, unless it ships a threshold);
- door_evidence.png: a door (the access-control sample's picture, ``door_picture``) with
  s21 enrolled from photos 2–6, verifying photo 1 of s21 who claims to be s21;
- calibration_roc.png, calibration_scores.png: a copy of the faces bundle calibrated on the face
  set (default: the one the bundle records it was calibrated on).

    python scripts/draw_readme_pictures.py [--faces faces] [--objects objects] \\
        [--orl /work/shared/data/orl_faces] [--calibration-data DIR] [--out docs/images]

Bundles are shipped names or folders; a faces bundle needs a detector and a threshold (pass
--threshold if it is uncalibrated). Each PNG is written with its palette reduced to at most 256
colours so that it stays small (the size of each is printed).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def save(picture: np.ndarray, path: Path) -> None:
    """BGR uint8 → a PNG of at most 256 colours (octree, no dithering: flat areas stay flat)."""
    from PIL import Image

    image = Image.fromarray(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB))
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{path}  {picture.shape[1]}×{picture.shape[0]}  {path.stat().st_size / 1024:.0f} KB")


def main(argv=None) -> int:
    from edgedml.runtime import Matcher
    from edgedml.runtime.assurance.calibration import calibrate
    from edgedml.runtime.gallery.gallery import Gallery
    from edgedml.runtime.matching.picture import door_picture
    from edgedml.runtime.shipped import resolve_bundle

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", default="faces", help="faces bundle (a detector, a threshold)")
    parser.add_argument("--objects", default="objects", help="objects bundle ('' to skip its picture)")
    parser.add_argument("--threshold", type=float, help="for a faces bundle without a calibrated threshold")
    parser.add_argument("--orl", type=Path, default=Path("/work/shared/data/orl_faces"))
    parser.add_argument("--calibration-data", type=Path,
                        help="face set to calibrate a copy on [default: the one the faces bundle records]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--height", type=int, default=300, help="height of each image in the pictures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    faces = resolve_bundle(args.faces)
    s21, s22 = args.orl / "s21", args.orl / "s22"
    daisy = ROOT / "samples" / "images" / "daisy_1.jpg"

    with Matcher(faces, threshold=args.threshold) as matcher:
        for name, a, b in (("why_match", s21 / "1.pgm", s21 / "2.pgm"), ("why_no_match", s21 / "1.pgm", s22 / "1.pgm"),
                           ("why_no_face", s21 / "1.pgm", daisy)):
            why = matcher.explain(a, b)
            save(why.render(args.height), args.out / f"{name}.png")
        with tempfile.TemporaryDirectory() as scratch, \
                Gallery(Path(scratch) / "door.db", matcher, threshold=args.threshold) as door:
            door.enroll("s21", [str(s21 / f"{k}.pgm") for k in range(2, 7)])
            frame = cv2.imread(str(s21 / "1.pgm"))
            decision = door.verify(frame, "s21")
            why = matcher.explain(frame, decision.candidates[0].source, threshold=decision.threshold)
            save(door_picture("s21", decision.accepted, decision.threshold, why, height=args.height),
                 args.out / "door_evidence.png")
        recorded = (matcher.manifest.calibration or {}).get("data")
    if args.objects:
        with Matcher(resolve_bundle(args.objects)) as objects:
            why = objects.explain(daisy, daisy.with_name("daisy_2.jpg"))
            save(why.render(args.height), args.out / "why_objects.png")
    data = args.calibration_data or (Path(recorded) if recorded else None)
    if data is None or not data.is_dir():
        print(f"no calibration pictures: pass --calibration-data (the bundle records {recorded!r})")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "faces"
        shutil.copytree(faces, copy)
        calibrate(copy, data, force=True)
        for name in ("calibration_roc.png", "calibration_scores.png"):
            save(cv2.imread(str(copy / name)), args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
