"""An access-control terminal: enroll people from a folder, verify a claimed identity on a video
stream, and log every decision with a picture of its evidence.

    python samples/access_control.py --model bundle --gallery door.db --enroll staff/ \\
        --claim alice --source 0 --evidence-dir decisions/ --threshold 1.6 \\
        --detector yunet:face_detection_yunet.onnx
    python samples/access_control.py --model bundle --gallery postgresql://door@db.example/access \\
        --door lab-2 --claim alice --source 0

--gallery is a file (this door's own SQLite gallery) or a postgresql:// URL (one store shared by
every door: an enrollment or revocation at one door holds at all of them). While the server cannot
be reached, frames are skipped with the reason and the door resumes when it is back.

--enroll takes a folder with one sub-folder of photos per person (optional once enrolled).
With a detector (--detector, or a bundle exported with --detector) each frame's largest face is
verified, and a frame without a face is denied ("no face found"), never matched.
Each decision is written to the gallery's audit log with its score, threshold, time, face box and
the path of the evidence picture (door_picture: the decision in words, OPEN's MATCH or
DENIED's NO MATCH for the claimed name, the score against the threshold, and the frame with the
detected face against the enrolled photo that matched best; a frame without a face alone).
--annotated writes the stream with the box and the verdict.
"""

import argparse
import sys
import time
from pathlib import Path

import cv2
from camera_app import draw_face, frames, open_source

from edgedml.errors import EdgeDMLError
from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery
from edgedml.runtime.gallery.names import identity_name
from edgedml.runtime.inference.image import image_extensions
from edgedml.runtime.matching.picture import door_picture


def enroll_folder(gallery: Gallery, folder: Path) -> None:
    suffixes = image_extensions()
    enrolled = gallery.identities()
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(str(f) for f in person.iterdir() if f.suffix.lower() in suffixes)
        new = [p for p in photos if p not in gallery.sources(person.name)]  # re-runs add only new photos
        if new:  # a folder's new photos go to the person enrolled from it (add=True), on purpose
            gallery.enroll(person.name, new, add=identity_name(person.name) in enrolled)
            print(f"enrolled {person.name}: {len(new)} new photos ({len(photos) - len(new)} already enrolled)")


def verify_stream(gallery: Gallery, claim: str, source: str, evidence_dir: Path, max_frames=None, every: int = 1,
                  annotated: str | None = None):
    evidence_dir.mkdir(parents=True, exist_ok=True)
    capture = open_source(source)
    counts = {"accepted": 0, "rejected": 0, "no_face": 0, "skipped": 0}
    writer = None
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
        best = best if best and Path(best).is_file() else None  # enrolled at another machine: not here
        if best or decision.reason:  # the explanation, or the frame in which no face was found
            picture = str(evidence_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{number:05d}.jpg")
            if best:  # the door's decision, explained by the frame against the enrolled photo that matched best
                why = gallery.matcher.explain(frame, best, threshold=decision.threshold)
                drawn = door_picture(claim, decision.accepted, decision.threshold, why)
            else:  # nothing was compared: the frame alone, saying why
                drawn = door_picture(claim, decision.accepted, decision.threshold,
                                     frame=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), reason=decision.reason)
            cv2.imwrite(picture, drawn)
        gallery.log_decision("verify", decision, claimed=claim, evidence=picture, details={"frame": number})
        verdict = "OPEN" if decision.accepted else "DENIED"
        if decision.score is None:
            counts["no_face"] += 1
            print(f"frame {number}: {verdict} ({decision.reason})")
        else:
            counts["accepted" if decision.accepted else "rejected"] += 1
            print(f"frame {number}: {verdict} {claim} score {decision.score:.3f}")
        if annotated:
            colour = (0, 200, 0) if decision.accepted else (0, 0, 230)
            if decision.face is not None:
                draw_face(frame, decision.face, colour, f"{verdict} {claim} {decision.score:.2f}")
            else:
                cv2.putText(frame, f"{verdict}: {decision.reason or claim}", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                            colour, 2, cv2.LINE_AA)
            if writer is None:
                writer = cv2.VideoWriter(annotated, cv2.VideoWriter_fourcc(*"MJPG"), 10,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(frame)
    capture.release()
    if writer is not None:
        writer.release()
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int8-cpu"],
                        help="which of the bundle\'s graph sets to run")
    parser.add_argument("--gallery", required=True, help="gallery file, or postgresql:// URL of a fleet gallery")
    parser.add_argument("--door", help="this door's name in the decision log [default: the host name]")
    parser.add_argument("--enroll", type=Path, help="folder of people: one sub-folder of photos each")
    parser.add_argument("--claim", required=True, help="the identity the person claims")
    parser.add_argument("--source", default="0")
    parser.add_argument("--evidence-dir", type=Path, default=Path("decisions"))
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--every", type=int, default=1, help="verify every n-th frame")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--detector", metavar="yunet:PATH|none",
                        help="verify the largest detected face [default: the bundle's detector, if any]")
    parser.add_argument("--annotated", metavar="OUT.avi", help="also write the stream with the face box and verdict")
    args = parser.parse_args(argv)
    try:
        matcher = Matcher(args.model, precision=args.precision, detector=args.detector)
    except EdgeDMLError as exc:
        raise SystemExit(str(exc)) from None
    try:
        gallery = Gallery(args.gallery, matcher, threshold=args.threshold, door=args.door)
    except EdgeDMLError as exc:  # another model, or a server that cannot be reached
        raise SystemExit(str(exc)) from None
    with gallery:
        if args.enroll:
            try:
                enroll_folder(gallery, args.enroll)
            except EdgeDMLError as exc:  # an unreadable photo, or one without a face: nobody half-enrolled
                raise SystemExit(str(exc)) from None
        if gallery.threshold is None:
            raise SystemExit(matcher.threshold_refused  # calibrated on other crops or graphs
                             or "no decision threshold: calibrate the bundle (`edgedml calibrate`) or pass --threshold")
        try:
            enrolled = gallery.identities()  # at any door, for a fleet gallery
        except EdgeDMLError as exc:  # the fleet's server went away after the gallery opened
            raise SystemExit(str(exc)) from None
        if args.claim not in enrolled:
            raise SystemExit(f"{args.claim!r} is not enrolled in {gallery.path}; enroll them first (--enroll)")
        counts = verify_stream(gallery, args.claim, args.source, args.evidence_dir, args.max_frames, args.every,
                               args.annotated)
        print(counts)
    if counts["accepted"] + counts["rejected"] + counts["no_face"] == 0:
        print("no frame could be decided", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
