"""An access-control terminal: enroll people from a folder, verify a claimed identity on a video
stream, and log every decision with a picture of its evidence.

    python samples/access_control.py --model bundle --gallery door.db --enroll staff/ \\
        --claim alice --source 0 --evidence-dir decisions/ --threshold 1.6

--enroll takes a folder with one sub-folder of photos per person (optional once enrolled).
Each decision is written to the gallery's audit log with its score, threshold, time and the path
of the side-by-side evidence picture (the frame against the enrolled photo that matched best).
"""

import argparse
import sys
import time
from pathlib import Path

import cv2

from edgedml.errors import EdgeDMLError
from edgedml.runtime import Matcher
from edgedml.runtime.gallery import Gallery
from edgedml.runtime.image import image_extensions

from camera_app import frames, open_source


def enroll_folder(gallery: Gallery, folder: Path) -> None:
    suffixes = image_extensions()
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(str(f) for f in person.iterdir() if f.suffix.lower() in suffixes)
        new = [p for p in photos if p not in gallery.sources(person.name)]  # re-runs add only new photos
        if new:
            gallery.enroll(person.name, new)
            print(f"enrolled {person.name}: {len(new)} new photos ({len(photos) - len(new)} already enrolled)")


def verify_stream(gallery: Gallery, claim: str, source: str, evidence_dir: Path, max_frames=None, every: int = 1):
    evidence_dir.mkdir(parents=True, exist_ok=True)
    capture = open_source(source)
    counts = {"accepted": 0, "rejected": 0, "skipped": 0}
    for number, frame in enumerate(frames(capture, max_frames)):
        if frame is None or number % every:
            counts["skipped"] += frame is None
            continue
        try:
            decision = gallery.verify(frame, claim)
        except EdgeDMLError as exc:
            counts["skipped"] += 1
            print(f"frame {number}: skipped ({exc})")
            continue
        picture = None
        best = decision.candidates[0].source if decision.candidates else None
        if best:
            picture = str(evidence_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{number:05d}.jpg")
            cv2.imwrite(picture, gallery.matcher.compare(frame, best, threshold=decision.threshold).render())
        gallery.log_decision("verify", decision, claimed=claim, evidence=picture, details={"frame": number})
        counts["accepted" if decision.accepted else "rejected"] += 1
        print(f"frame {number}: {'OPEN' if decision.accepted else 'DENIED'} {claim} score {decision.score:.3f}")
    capture.release()
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int8-cpu"],
                        help="which of the bundle\'s graph sets to run")
    parser.add_argument("--gallery", required=True)
    parser.add_argument("--enroll", type=Path, help="folder of people: one sub-folder of photos each")
    parser.add_argument("--claim", required=True, help="the identity the person claims")
    parser.add_argument("--source", default="0")
    parser.add_argument("--evidence-dir", type=Path, default=Path("decisions"))
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--every", type=int, default=1, help="verify every n-th frame")
    parser.add_argument("--max-frames", type=int)
    args = parser.parse_args(argv)
    with Gallery(args.gallery, Matcher(args.model, precision=args.precision), threshold=args.threshold) as gallery:
        if args.enroll:
            enroll_folder(gallery, args.enroll)
        if gallery.threshold is None:
            raise SystemExit("no decision threshold: calibrate the bundle (`edgedml calibrate`) or pass --threshold")
        if args.claim not in gallery.identities():
            raise SystemExit(f"{args.claim!r} is not enrolled in {args.gallery}; enroll them first (--enroll)")
        counts = verify_stream(gallery, args.claim, args.source, args.evidence_dir, args.max_frames, args.every)
        print(counts)
    if counts["accepted"] + counts["rejected"] == 0:
        print("no frame could be decided", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
