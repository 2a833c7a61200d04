"""`Matcher`: the on-device API. numpy + OpenCV + one inference backend; never torch.

    from edgedml.runtime import Matcher
    matcher = Matcher("bundle/")                 # backend="auto": TensorRT, ONNX Runtime or OpenCV
    matcher = Matcher("bundle/", precision="int8-cpu")   # any graph set the bundle holds
    result = matcher.compare("a.jpg", "b.jpg")   # paths, encoded bytes or numpy arrays (BGR)
    result.score, result.is_match                # multi-scale score, decision at the threshold
    cv2.imwrite("why.png", result.render())      # what made the match

Faces: ``Matcher(bundle, detector="yunet:face_detection_yunet.onnx")`` (or a bundle exported with
``--detector``, whose detector is then the default) detects the faces of every image, embeds the
largest one's crop (:func:`.roi.cut_view`: a square, eye-levelled crop, or dlib's 150×150 face
chip, as the detector settings' ``chip`` says) and draws the explanation on the original
frame with the box and landmarks. An image without a face is a decision, never a match:
``compare`` returns ``is_match=False`` with ``reason="no face found in image b"``; ``embed`` (used
to enroll) raises :class:`~.detection.NoFaceFound`. ``detector="none"`` embeds whole images.

Thread-safe: several camera threads may share one Matcher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..bundle import read_manifest
from ..errors import BundleError, ConfigError
from . import explain
from .agreement import SCORE_TOL
from .backends import create_backend
from .chunking import CHUNKED, Limit, run_in_chunks
from .detection import (
    CHIP_OF_BACKBONE, DetectorSettings, Face, NoFaceFound, YuNetDetector, bundle_detector, load_detector,
)
from .image import ImageInput, load_image
from .preprocess import to_network_input
from .roi import View, cut_view, whole_view
from .structural import flow as region_flow
from .thresholds import CalibrationMismatch, calibrated_threshold, check_threshold


class RegionMatch(NamedTuple):
    """One strong region-to-region correspondence: flow T_ij·s_ij and pixel centres (x, y)."""

    region_a: int
    region_b: int
    flow: float
    point_a: tuple[int, int]
    point_b: tuple[int, int]


@dataclass
class Features:
    """Embedder outputs for N images: embedding (N, E), local (N, R, D), attention (N, P, h, w),
    marginal (N, R) (a rollout bundle's transport marginals)."""

    embedding: np.ndarray
    local: np.ndarray
    attention: np.ndarray | None = None
    marginal: np.ndarray | None = None

    def __getitem__(self, index) -> "Features":
        index = slice(index, index + 1) if isinstance(index, int) or isinstance(index, np.integer) else index
        return Features(self.embedding[index], self.local[index],
                        None if self.attention is None else self.attention[index],
                        None if self.marginal is None else self.marginal[index])

    def __len__(self) -> int:
        return len(self.embedding)

    @classmethod
    def concat(cls, parts: Sequence["Features"]) -> "Features":
        """The rows of several Features, in order (attention and marginal kept when all have them)."""
        def join(name):
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(join("embedding"), join("local"), join("attention"), join("marginal"))


@dataclass
class MatchResult:
    """Why two images match: scores, decision and evidence in each image's own (frame) pixels.

    With a detector and no face in an image: ``score`` is None, ``is_match`` False and
    ``reason`` says which image had none; the maps are zero and ``matches`` empty."""

    score: float | None  # multi-scale: structural + global
    structural: float | None  # Σ T ⊙ s
    global_similarity: float | None  # cosine of the global embeddings
    threshold: float | None
    is_match: bool | None  # None when no threshold is calibrated or given
    evidence_a: np.ndarray  # (H_a, W_a) per-pixel share of the structural score
    evidence_b: np.ndarray  # (H_b, W_b)
    plan: np.ndarray  # (R, R) transport plan, rows: regions of image a
    matches: list[RegionMatch]  # strongest flows first
    attention_a: np.ndarray | None  # (P, H_a, W_a) group / learner attention, or None (DIML)
    attention_b: np.ndarray | None
    image_a: np.ndarray = field(repr=False)  # RGB uint8, the whole frame
    image_b: np.ndarray = field(repr=False)
    outline_a: np.ndarray | None = None  # (4, 2) frame pixels: the corners of what the model sees of image a
    outline_b: np.ndarray | None = None
    face_a: Face | None = None  # the detected face the model saw (with a detector)
    face_b: Face | None = None
    reason: str | None = None  # why there is no score ("no face found in image b")
    unmatched_a: np.ndarray | None = None  # (H_a, W_a) share of each region's mass left unmatched (partial transport)
    unmatched_b: np.ndarray | None = None
    unmatched_regions_a: np.ndarray | None = None  # (R,) those shares per region of image a
    unmatched_regions_b: np.ndarray | None = None
    inputs: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # the network inputs (3, S, S)
    matcher: "Matcher | None" = field(default=None, repr=False, compare=False)

    def faithfulness(self, seed: int = 0) -> dict[str, float]:
        """How faithful this pair's evidence map is: the deletion AUC of the evidence order and of
        a random order (the floor), from g² + 1 extra embeddings each (see
        :mod:`edgedml.runtime.faithfulness`). Lower than random: removing what the evidence
        points at lowers the score faster."""
        from .faithfulness import pair_curves

        if self.inputs is None or self.matcher is None:
            raise ValueError("faithfulness needs a result from Matcher.compare with a score"
                             + (f" ({self.reason})" if self.reason else ""))
        found = pair_curves(self.matcher, *self.inputs, methods=("evidence", "random"), seed=seed)
        return {"evidence_deletion_auc": found["evidence"].deletion_auc,
                "random_deletion_auc": found["random"].deletion_auc,
                "evidence_insertion_auc": found["evidence"].insertion_auc}

    def render(self, height: int = 360) -> np.ndarray:
        """Side-by-side picture (BGR uint8): heatmaps, match lines, faces, score and decision."""
        return explain.side_by_side(self, height)

    def to_dict(self) -> dict:
        """JSON-ready summary (no images or maps)."""
        return {"score": self.score, "structural": self.structural, "global": self.global_similarity,
                "threshold": self.threshold, "is_match": self.is_match, "reason": self.reason,
                "face_a": self.face_a and self.face_a.to_dict(), "face_b": self.face_b and self.face_b.to_dict(),
                "unmatched_a": None if self.unmatched_regions_a is None else self.unmatched_regions_a.round(4).tolist(),
                "unmatched_b": None if self.unmatched_regions_b is None else self.unmatched_regions_b.round(4).tolist(),
                "matches": [{"region_a": m.region_a, "region_b": m.region_b, "flow": m.flow,
                             "point_a": list(m.point_a), "point_b": list(m.point_b)} for m in self.matches]}


class Matcher:
    """Embeds and compares images with an exported bundle (see the module doc)."""

    def __init__(self, bundle: str | Path, backend: str = "auto", threshold: float | None = None,
                 threshold_name: str = "default", precision: str = "fp32",
                 detector: str | YuNetDetector | None = None, detector_settings: DetectorSettings | None = None):
        """``detector``: None uses the bundle's (none if it has none), "none" turns detection
        off, "yunet:PATH" loads that file, or pass a detector object. ``detector_settings``
        replace the bundle's recorded ones (score threshold, minimum face size, margin, align, chip)."""
        self.bundle = Path(bundle)
        self.manifest = read_manifest(self.bundle)  # verifies every checksum
        self.spec = self.manifest.preprocessing
        self.precision = precision
        self.backend = create_backend(self.bundle, self.manifest, backend, precision)
        self.grid = int(round(math.sqrt(self.manifest.regions)))
        if detector is None:
            self.detector = bundle_detector(self.manifest, detector_settings)
        elif isinstance(detector, str):  # another file, cut as the bundle records (or as its network needs)
            self.detector = load_detector(detector, detector_settings or self._recorded_settings())
        else:
            self.detector = detector
        self._check_chip()
        # the calibrated threshold serves only the cropping and graph set it was measured on;
        # otherwise it is not available (``threshold_refused`` says why) and deciding needs one given
        calibrated, self.threshold_refused = calibrated_threshold(self.manifest, threshold_name, self.cropping,
                                                                  precision)
        self.threshold = calibrated if threshold is None else check_threshold(threshold, self.manifest)

    def _recorded_settings(self) -> DetectorSettings | None:
        """The bundle's detector settings, or for a bundle without a detector the chip its
        network needs (None: the defaults)."""
        if self.manifest.detector:
            return DetectorSettings.from_dict(self.manifest.detector.get("settings", {}))
        needed = CHIP_OF_BACKBONE.get(self.manifest.model.get("backbone"))
        return DetectorSettings(chip=needed) if needed else None

    def _check_chip(self) -> None:
        """A network that works only on its own face chip (dlib's) is never given another crop."""
        needed = CHIP_OF_BACKBONE.get(self.manifest.model.get("backbone"))
        if self.detector is not None and needed and self.detector.settings.chip != needed:
            raise ConfigError(f"this bundle's network ({self.manifest.model.get('backbone')}) works only on the "
                              f"{needed} face chip, not {self.detector.settings.chip} crops: leave the detector "
                              f"settings' chip out or set chip={needed!r}")

    @property
    def cropping(self) -> str:
        """How this matcher cuts images: its detector's fingerprint, or "none" (whole images)."""
        return self.detector.fingerprint() if self.detector is not None else "none"

    def decision_threshold(self, threshold: float | None = None) -> float | None:
        """The threshold a decision uses: ``threshold`` (checked), else this matcher's; None when
        the bundle is uncalibrated and none was given. :class:`CalibrationMismatch` when the
        bundle's calibrated threshold was measured another way (cropping or precision)."""
        if threshold is not None:
            return check_threshold(threshold, self.manifest)
        if self.threshold is None and self.threshold_refused:
            raise CalibrationMismatch(self.threshold_refused)
        return self.threshold

    def views(self, image: ImageInput) -> tuple[np.ndarray, list[View]]:
        """An input → its RGB frame and what the embedder is to see of it: the whole frame
        without a detector; with one, a crop per detected face, largest first (maybe none)."""
        rgb = load_image(image)
        if self.detector is None:
            return rgb, [whole_view(rgb)]
        return rgb, [cut_view(rgb, face, self.detector.settings) for face in self.detector.detect(rgb)]

    def _main_view(self, image: ImageInput) -> View:
        """What the embedder sees of ``image``: the whole image, or its largest face's crop."""
        _, views = self.views(image)
        if not views:
            raise NoFaceFound(f"no face found in {_describe(image)} by {self.detector.describe()}: use a photo where "
                              f"the face is visible and at least {self.detector.settings.min_size} px wide")
        return views[0]

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Inputs → network batch (N, 3, S, S) float32 and the RGB images the embedder sees
        (whole images, or the largest face's crop with a detector: :class:`NoFaceFound` if none)."""
        views = [self._main_view(image) for image in images]
        return np.stack([to_network_input(v.pixels, self.spec) for v in views]), [v.pixels for v in views]

    def embed(self, images: ImageInput | Sequence[ImageInput]) -> Features:
        """One image or a list → :class:`Features` (N rows). With a detector, each image's
        largest face; an image without one raises :class:`NoFaceFound` naming it."""
        if isinstance(images, (str, Path, bytes, bytearray, memoryview, np.ndarray)):
            images = [images]
        batch, _ = self.preprocess(list(images))
        return self._embed_batch(batch)

    def embed_faces(self, image: ImageInput, limit: int | None = None) -> tuple[Features, list[View]]:
        """Every face of one frame (largest first; the first ``limit`` only) → their
        :class:`Features` and views; without a detector, the whole frame. No face: zero rows."""
        _, views = self.views(image)
        views = views[:limit]
        if not views:
            return Features(np.zeros((0, self.manifest.matcher.inputs["query_embedding"][1]), np.float32),
                            np.zeros((0, self.manifest.regions, self.manifest.matcher.inputs["query_local"][2]),
                                     np.float32)), []
        return self._embed_batch(np.stack([to_network_input(v.pixels, self.spec) for v in views])), views

    def _run(self, graph: str, feeds: dict[str, np.ndarray], chunked: tuple[str, ...] | None = None
             ) -> dict[str, np.ndarray]:
        """Run a graph within its limit (a TensorRT profile, a fixed export batch): larger
        requests are split into chunks (of the inputs :data:`~.chunking.CHUNKED` names), and a
        fixed-size graph's last chunk is padded."""
        return run_in_chunks(lambda part: self.backend.run(graph, part), feeds, chunked or CHUNKED[graph],
                             self.backend.limits.get(graph, Limit()))

    def _embed_batch(self, batch: np.ndarray) -> Features:
        out = self._run("embedder", {"images": batch}, ("images",))
        return Features(out["embedding"], out["local"], out.get("attention"), out.get("marginal"))

    def match(self, query: Features, candidates: Features) -> dict[str, np.ndarray]:
        """One query against K candidates → structural (K), multiscale (K), plan (K, R, R),
        query_evidence (K, R), candidate_evidence (K, R). Outputs no honest graph produces (a
        score outside its range, inf or NaN) raise :class:`BundleError` (:func:`check_scores`)."""
        if len(query) != 1:
            raise ValueError(f"match takes one query, got {len(query)}; use query[i] to pick one")
        if len(candidates) == 0:
            raise ValueError("match needs at least one candidate")
        feeds = {"query_local": query.local, "query_embedding": query.embedding,
                 "candidate_local": candidates.local, "candidate_embedding": candidates.embedding}
        if "query_marginal" in self.manifest.matcher.inputs:  # a rollout bundle: marginals come with the features
            if query.marginal is None or candidates.marginal is None:
                raise ValueError("this bundle's matcher takes the embedder's region marginals; pass Features "
                                 "with marginal (as embed() returns them)")
            feeds.update(query_marginal=query.marginal, candidate_marginal=candidates.marginal)
        feeds = {name: np.asarray(value, np.float32) for name, value in feeds.items()}  # the graphs take float32
        out = self._run("matcher", feeds)
        check_scores(out, SCORE_RANGE_TOL.get(self.precision, SCORE_RANGE_TOL["fp32"]))  # a broken graph never decides
        return out

    def compare(self, image_a: ImageInput, image_b: ImageInput, threshold: float | None = None,
                top_matches: int = 5) -> MatchResult:
        """Score two images and explain the score on their frames (see :class:`MatchResult`)."""
        threshold = self.decision_threshold(threshold)
        (rgb_a, views_a), (rgb_b, views_b) = self.views(image_a), self.views(image_b)
        if not views_a or not views_b:
            return self._no_face(rgb_a, rgb_b, views_a, views_b, threshold)
        va, vb = views_a[0], views_b[0]
        inputs = np.stack([to_network_input(v.pixels, self.spec) for v in (va, vb)])
        features = self._embed_batch(inputs)
        out = self.match(features[0], features[1])
        plan = out["plan"][0]
        structural, score = float(out["structural"][0]), float(out["multiscale"][0])
        g = self.grid
        flow = region_flow(plan, features.local[0], features.local[1])  # T ⊙ s, (R, R)
        order = np.argsort(-flow, axis=None)[:top_matches]
        matches = [RegionMatch(int(i), int(j), float(flow[i, j]), explain.region_centre(int(i), g, va, self.spec),
                               explain.region_centre(int(j), g, vb, self.spec))
                   for i, j in (divmod(int(k), flow.shape[1]) for k in order) if flow[i, j] > 0]
        attention = features.attention

        def on_frame(region_map, view, rgb):
            return explain.to_image(region_map, view, rgb.shape, self.spec)

        shares = (None, None)
        if "query_unmatched" in out:  # partial transport: what each region sent to the dummy
            left = (out["query_unmatched"][0], out["candidate_unmatched"][0])
            shares = tuple(rest / np.maximum(rest + kept, 1e-12) for rest, kept in zip(left, (plan.sum(1), plan.sum(0))))

        return MatchResult(
            score=score, structural=structural, global_similarity=score - structural, threshold=threshold,
            is_match=None if threshold is None else bool(score >= threshold),
            evidence_a=on_frame(out["query_evidence"][0].reshape(g, g), va, rgb_a),
            evidence_b=on_frame(out["candidate_evidence"][0].reshape(g, g), vb, rgb_b),
            plan=plan, matches=matches,
            attention_a=None if attention is None else np.stack([on_frame(m, va, rgb_a) for m in attention[0]]),
            attention_b=None if attention is None else np.stack([on_frame(m, vb, rgb_b) for m in attention[1]]),
            image_a=rgb_a, image_b=rgb_b, outline_a=explain.seen_outline(va, self.spec),
            outline_b=explain.seen_outline(vb, self.spec), face_a=va.face, face_b=vb.face,
            unmatched_a=None if shares[0] is None else on_frame(shares[0].reshape(g, g), va, rgb_a),
            unmatched_b=None if shares[1] is None else on_frame(shares[1].reshape(g, g), vb, rgb_b),
            unmatched_regions_a=shares[0], unmatched_regions_b=shares[1], inputs=(inputs[0], inputs[1]), matcher=self)

    def _no_face(self, rgb_a, rgb_b, views_a, views_b, threshold) -> MatchResult:
        missing = " and ".join(name for name, views in (("image a", views_a), ("image b", views_b)) if not views)
        r = self.manifest.regions
        return MatchResult(
            score=None, structural=None, global_similarity=None, threshold=threshold, is_match=False,
            evidence_a=np.zeros(rgb_a.shape[:2], np.float32), evidence_b=np.zeros(rgb_b.shape[:2], np.float32),
            plan=np.zeros((r, r), np.float32), matches=[], attention_a=None, attention_b=None,
            image_a=rgb_a, image_b=rgb_b, face_a=views_a[0].face if views_a else None,
            face_b=views_b[0].face if views_b else None, reason=f"no face found in {missing}")

    def __repr__(self) -> str:
        detector = self.detector.describe() if self.detector else "none"
        return (f"Matcher({str(self.bundle)!r}, precision={self.precision!r}, backend={self.backend.describe()!r}, "
                f"threshold={self.threshold}, detector={detector!r})")


# how far past its range a score may lie: float32 rounding, and the fp16 graphs' agreement bound
SCORE_RANGE_TOL = {"fp32": 1e-3, "fp16": SCORE_TOL}


def check_scores(out: dict[str, np.ndarray], tolerance: float = SCORE_RANGE_TOL["fp32"]) -> None:
    """Refuse matcher outputs no honest graph produces, so a tampered or broken graph never
    decides: any inf or NaN, a structural similarity outside [-1, 1] (a transport plan of mass
    ≤ 1 over cosines), a global cosine (multiscale − structural) outside [-1, 1], so a
    multi-scale score outside [-2, 2]. Raises a one-line :class:`BundleError`."""
    for name, value in out.items():
        if not np.isfinite(value).all():
            raise BundleError(f"the matcher graph returned inf or NaN in '{name}': the graph is broken or was "
                              f"tampered with, so nothing is decided; re-export the bundle")
    structural = np.asarray(out["structural"], np.float64)
    multiscale = np.asarray(out["multiscale"], np.float64)
    for what, values, bound in (("structural similarity", structural, 1.0), ("multi-scale score", multiscale, 2.0),
                                ("global cosine", multiscale - structural, 1.0)):
        worst = float(values.flat[np.abs(values).argmax()]) if values.size else 0.0
        if abs(worst) > bound + tolerance:
            raise BundleError(f"the matcher graph returned a {what} of {worst:.4g}, outside [-{bound:g}, {bound:g}]: "
                              f"the graph is broken or was tampered with, so nothing is decided; re-export the bundle")


def _describe(image: ImageInput) -> str:
    """How an error names an input: its path, or its kind."""
    if isinstance(image, (str, Path)):
        return f"image {image}"
    return "the image array" if isinstance(image, np.ndarray) else "the image bytes"
