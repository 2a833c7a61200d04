"""Face detection before the embedder: YuNet through ``cv2.FaceDetectorYN`` (numpy + OpenCV).

A door's camera sees a corridor with a face in it; the embedder must see the face. The detector
finds faces and their five landmarks; :mod:`.roi` cuts the crop the embedder sees
(:func:`.roi.cut_view`: a square, eye-levelled crop, or dlib's 150×150 face chip). OpenCV 5 no
longer ships Haar cascades, so YuNet (OpenCV model zoo, MIT licence) is the detector to build on.
Users bring the model file; nothing is downloaded.

    detector = load_detector("yunet:face_detection_yunet.onnx")     # or "none"
    faces = detector.detect(rgb)                                    # largest first

Settings (:class:`DetectorSettings`) are recorded in a bundle's manifest when ``edgedml export
--detector`` copies the model file into the bundle, so a device runs what was validated.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError, EdgeDMLError, build_dataclass

KINDS = ("yunet",)
CHIPS = ("square", "dlib")  # how a face is cut: DetectorSettings.chip
CHIP_OF_BACKBONE = {"dlib_resnet": "dlib"}  # networks that work only on the crop they were trained on
DETECTOR_FOLDER = "detector"  # inside a bundle


class DetectorError(EdgeDMLError):
    """The detector file is missing, is not a YuNet model, or the detector spec is malformed."""


class NoFaceFound(EdgeDMLError):
    """The detector found no face in an image that had to have one (enrollment, embedding)."""


@dataclass(frozen=True)
class DetectorSettings:
    """How faces are found and cut out.

    - ``score_threshold``: YuNet's face score needed to keep a detection;
    - ``min_size``: smaller faces (box width in frame pixels) are ignored: too few pixels to
      recognise, and a common false detection;
    - ``margin``: the crop is a square of side (1 + 2·margin)·max(box width, height) around the
      box centre (the embedder's own centre crop then applies, as for any image); negative
      values cut inside the box;
    - ``align``: rotate the crop so that the eyes lie on a horizontal line;
    - ``detect_side``: frames whose longer side is larger are downscaled for detection only
      (crops are cut from the full frame); YuNet's cost grows with the pixels it sees;
    - ``chip``: the crop itself: "square" (the square of ``margin``, levelled with ``align``) or
      "dlib" (dlib's 150×150 face chip, a similarity warp of the five landmarks onto their place
      in the crop dlib's face network was trained on; ``margin`` and ``align`` do not apply).
      Manifests written before this setting hold square crops.
    """

    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    min_size: int = 32
    margin: float = 0.05
    align: bool = True
    detect_side: int = 640
    chip: str = "square"

    def __post_init__(self):
        if not 0 < self.score_threshold < 1 or not 0 < self.nms_threshold < 1:
            raise ConfigError(f"detector score and NMS thresholds must lie in (0, 1), got "
                              f"{self.score_threshold} and {self.nms_threshold}")
        if self.min_size < 1 or self.detect_side < 64:
            raise ConfigError(f"detector min_size must be ≥ 1 pixel and detect_side ≥ 64, got {self.min_size} "
                              f"and {self.detect_side}")
        if not -0.25 <= self.margin <= 2:
            raise ConfigError("detector margin must lie in [-0.25, 2] (a fraction of the face size), "
                              f"got {self.margin}")
        if self.chip not in CHIPS:
            raise ConfigError(f"unknown face chip {self.chip!r}; choose one of {', '.join(CHIPS)} (square: a square, "
                              f"eye-levelled crop; dlib: dlib's 150×150 face chip)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorSettings:
        return build_dataclass(cls, data, "detector settings")


@dataclass(frozen=True)
class Face:
    """One detected face in frame pixels: box (x, y, width, height), five landmarks (x, y) in
    YuNet's order (right eye, left eye, nose tip, right and left mouth corners; the person's
    right eye is on the image's left) and the detector's score."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def eye_angle(self) -> float:
        """Angle (radians) of the line from the image-left eye to the image-right eye; 0 when level."""
        (rx, ry), (lx, ly) = self.landmarks[0], self.landmarks[1]
        return float(np.arctan2(ly - ry, lx - rx))

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "landmarks": [[round(x, 1), round(y, 1)] for x, y in
                                                                       self.landmarks], "score": round(self.score, 4)}


class YuNetDetector:
    """``cv2.FaceDetectorYN`` on a YuNet ONNX file. Thread-safe (the OpenCV object keeps an
    input size, so calls are serialised)."""

    kind = "yunet"

    def __init__(self, path: str | Path, settings: DetectorSettings | None = None):
        import cv2

        self.path = Path(path)
        self.settings = settings or DetectorSettings()
        if not self.path.is_file():
            raise DetectorError(f"detector file {self.path} does not exist; pass the YuNet ONNX file "
                                f"(face_detection_yunet_*.onnx from the OpenCV model zoo)")
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns on every create
        try:
            self._net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), self.settings.score_threshold,
                                                  self.settings.nms_threshold, 5000)
            self._net.detect(np.zeros((320, 320, 3), np.uint8))  # a model with other outputs fails here
        except cv2.error as exc:
            found = re.search(r"error: \(-?\d+:[^)]*\) (.*?)(?: in function|$)", str(exc), re.S)
            first = (found.group(1) if found else str(exc)).strip().splitlines()[0][:160]
            raise DetectorError(f"{self.path} is not a YuNet face detector OpenCV can load ({first}); pass "
                                f"face_detection_yunet_*.onnx from the OpenCV model zoo") from exc
        finally:
            cv2.utils.logging.setLogLevel(level)
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """RGB uint8 (H, W, 3) → the faces at least ``min_size`` wide, largest first."""
        import cv2

        height, width = rgb.shape[:2]
        scale = min(1.0, self.settings.detect_side / max(height, width))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if scale < 1:
            bgr = cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                             interpolation=cv2.INTER_AREA)
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._net.detect(bgr)
        faces = []
        for row in (() if rows is None else rows):
            values = [float(v) / scale for v in row[:14]]
            face = Face(tuple(values[:4]), tuple((values[i], values[i + 1]) for i in range(4, 14, 2)), float(row[14]))
            if face.box[2] >= self.settings.min_size:
                faces.append(face)
        return sorted(faces, key=lambda f: -f.area)

    def fingerprint(self) -> str:
        """What decides the crops a template was made from: the model file and how it is cut
        (a gallery or a calibration refuses templates and scores cut another way). Square crops
        keep the form they had before the dlib chip existed, so that galleries and calibrations
        made then still serve. The dlib chip is ``:chip=dlib`` instead of margin and align, which
        do not change it."""
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        if self.settings.chip != "square":
            return f"yunet:{digest}:chip={self.settings.chip}"
        return f"yunet:{digest}:margin={self.settings.margin:g}:align={int(self.settings.align)}"

    def describe(self) -> str:
        s = self.settings
        chip = ", dlib's 150×150 chip" if s.chip == "dlib" else ""
        return f"yunet {self.path.name} (score ≥ {s.score_threshold:g}, faces ≥ {s.min_size} px{chip})"


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """``"yunet:PATH"`` → ("yunet", PATH); ``"none"`` → ("none", None)."""
    if spec == "none":
        return "none", None
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS or not path:
        raise DetectorError(f"detector {spec!r} is not understood; use yunet:PATH (a YuNet ONNX file) or none")
    return kind, Path(path)


def load_detector(spec: str, settings: DetectorSettings | None = None) -> YuNetDetector | None:
    """A detector from ``"yunet:PATH"``, or None for ``"none"``."""
    kind, path = parse_spec(spec)
    return None if kind == "none" else YuNetDetector(path, settings)


def bundle_detector(manifest, settings: DetectorSettings | None = None) -> YuNetDetector | None:
    """The detector a bundle carries (``manifest.detector``), or None. Its file is opened through
    ``manifest.path``: inside the bundle, with the checksum verified with the rest of it."""
    entry = manifest.detector
    if not entry:
        return None
    if entry.get("kind") not in KINDS or manifest.root is None:
        raise DetectorError(f"the bundle's detector {entry.get('kind')!r} is not one this edgedml runs "
                            f"({', '.join(KINDS)}); re-export the bundle or pass detector='none'")
    stored = DetectorSettings.from_dict(entry.get("settings", {}))
    return YuNetDetector(manifest.path(entry.get("file"), "detector"), settings or stored)


def install(detector: YuNetDetector, bundle_dir: str | Path) -> dict:
    """Copy a loaded detector's file (loading proved it runs) into ``bundle_dir`` and return the
    manifest entry with its settings. The bundle's manifest checksums the copy."""
    folder = Path(bundle_dir) / DETECTOR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / detector.path.name
    shutil.copyfile(detector.path, target)
    return {"kind": detector.kind, "file": f"{DETECTOR_FOLDER}/{target.name}", "source": detector.path.name,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "settings": detector.settings.to_dict()}
