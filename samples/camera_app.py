"""Identify what a camera sees against a gallery, frame by frame, with the result drawn on.

    python samples/camera_app.py --model bundle --gallery people.db --source 0
    python samples/camera_app.py --model bundle --gallery people.db --source clip.mp4 --headless out.avi
    # Jetson CSI camera through GStreamer:
    python samples/camera_app.py --model bundle --gallery people.db --source \\
      "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! \\
       video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink"

    # faces: detect, align and identify every face of the frame, each box drawn with its name
    python samples/camera_app.py --model bundle --gallery people.db --detector yunet:face_detection_yunet.onnx

--source takes a camera index, a video file, an RTSP/HTTP URL or a GStreamer pipeline (any string
with "!"). Without a detector the whole frame is the query; with one (--detector, or a bundle
exported with --detector) every face is identified and boxed. A frame that cannot be read or
matched is counted and skipped; the loop goes on.
"""

import argparse
import sys
import time
from pathlib import Path

import cv2

from edgedml.errors import EdgeDMLError
from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery


def open_source(source: str) -> cv2.VideoCapture:
    if not source.isdigit() and "!" not in source and "://" not in source and not Path(source).exists():
        raise SystemExit(f"video source {source!r} does not exist (camera index, file, URL or GStreamer pipeline)")
    if source.isdigit():
        capture = cv2.VideoCapture(int(source))
    elif "!" in source:
        capture = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    else:
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise SystemExit(f"cannot open video source {source!r} (camera index, file, URL or GStreamer pipeline)")
    return capture


def frames(capture: cv2.VideoCapture, max_frames: int | None = None):
    """Frames until the source ends; a failed read yields None once and the loop continues."""
    count, failures = 0, 0
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok:
            failures += 1
            if failures > 3 or capture.get(cv2.CAP_PROP_POS_FRAMES) >= capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
                return
            yield None
            continue
        failures = 0
        count += 1
        yield frame


def label(decision) -> str:
    if decision.score is None:
        return decision.reason
    if decision.accepted:
        return f"{decision.name} {decision.score:.3f}"
    return f"unknown ({decision.name} {decision.score:.3f})"


def colour_of(decision) -> tuple[int, int, int]:
    return (0, 200, 0) if decision.accepted else (0, 0, 230)


def draw_face(frame, face, colour, text: str | None = None) -> None:
    """The detected box, its five landmarks and a label above it, on a BGR frame."""
    x, y, w, h = (int(round(v)) for v in face.box)
    cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
    for px, py in face.landmarks:
        cv2.circle(frame, (int(round(px)), int(round(py))), 2, colour, -1, cv2.LINE_AA)
    if text:
        cv2.putText(frame, text, (x, max(14, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2, cv2.LINE_AA)


def annotate(frame, gallery: Gallery, fps: float):
    """Identify one frame (every face, with a detector) and draw the result; a bad frame gets an
    error banner instead."""
    try:
        if gallery.matcher.detector is None:
            decision = gallery.identify(frame, top_k=1)
            text, colour = label(decision), colour_of(decision)
        else:
            decisions = gallery.identify_faces(frame, top_k=1)
            for decision in decisions:
                draw_face(frame, decision.face, colour_of(decision), label(decision))
            text = ", ".join(label(d) for d in decisions) if decisions else "no face"
            colour = colour_of(decisions[0]) if decisions else (200, 200, 200)
        error = None
    except EdgeDMLError as exc:
        text, colour, error = f"frame skipped: {exc}"[:70], (0, 165, 255), str(exc)
    cv2.rectangle(frame, (0, 0), (frame.shape[1], 54), (0, 0, 0), -1)
    cv2.putText(frame, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2, cv2.LINE_AA)
    cv2.putText(frame, f"{fps:.1f} FPS", (10, 46), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return frame, error


def run(source, gallery: Gallery, headless: str | None = None, max_frames: int | None = None) -> dict:
    capture = open_source(source)
    writer, shown, skipped, started = None, 0, 0, time.perf_counter()
    fps = 0.0
    for frame in frames(capture, max_frames):
        tick = time.perf_counter()
        if frame is None or frame.size == 0:
            skipped += 1
            continue
        frame, error = annotate(frame, gallery, fps)
        skipped += error is not None
        elapsed = max(time.perf_counter() - tick, 1e-6)
        fps = 0.9 * fps + 0.1 / elapsed if shown else 1 / elapsed
        shown += 1
        if headless:
            if writer is None:
                writer = cv2.VideoWriter(headless, cv2.VideoWriter_fourcc(*"MJPG"), 10,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(frame)
        else:
            cv2.imshow("edgedml", frame)
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                break
    capture.release()
    if writer is not None:
        writer.release()
    return {"frames": shown, "skipped": skipped, "seconds": round(time.perf_counter() - started, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="bundle folder from `edgedml export`")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int8-cpu"],
                        help="which of the bundle\'s graph sets to run")
    parser.add_argument("--gallery", required=True, help="gallery file made with `edgedml enroll`")
    parser.add_argument("--source", default="0")
    parser.add_argument("--threshold", type=float, help="decision threshold [default: the bundle's calibrated one]")
    parser.add_argument("--detector", metavar="yunet:PATH|none",
                        help="detect and identify faces [default: the bundle's detector, if any]")
    parser.add_argument("--headless", metavar="OUT.avi", help="write an annotated video instead of showing a window")
    parser.add_argument("--max-frames", type=int)
    args = parser.parse_args(argv)
    try:
        matcher = Matcher(args.model, precision=args.precision, detector=args.detector)
    except EdgeDMLError as exc:
        raise SystemExit(str(exc)) from None
    with Gallery(args.gallery, matcher, threshold=args.threshold) as gallery:
        if gallery.threshold is None:  # every frame would be skipped
            raise SystemExit(matcher.threshold_refused  # calibrated on other crops or graphs
                             or "no decision threshold: calibrate the bundle (`edgedml calibrate`) or pass --threshold")
        result = run(args.source, gallery, args.headless, args.max_frames)
        print(result)
    if result["frames"] == 0 or result["skipped"] >= result["frames"]:
        print("no frame could be identified", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
