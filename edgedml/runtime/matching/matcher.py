"""`Matcher`: the on-device API. numpy + OpenCV + one inference backend; never torch.

    from edgedml.runtime import Matcher
    with Matcher("bundle/") as matcher:          # backend="auto": TensorRT, ONNX Runtime or OpenCV
        result = matcher.compare("a.jpg", "b.jpg")   # paths, encoded bytes or numpy arrays (BGR)
        result.score, result.is_match            # multi-scale score, decision at the threshold
        why = matcher.explain("a.jpg", "b.jpg")  # the same comparison with its pictures
        cv2.imwrite("why.png", why.render())     # what made the match
    Matcher("bundle/", precision="int8-cpu")     # any graph set the bundle holds
    Matcher("bundle/", providers=["cuda", "cpu"], threads=4)   # ONNX Runtime's providers and threads

:class:`~.results.MatchResult` is small (scores, decision, region evidence, no pixels, no
reference to the matcher); :class:`~.explanation.Explanation` adds the frames and the maps in
frame pixels. ``close()`` (or the ``with`` block) releases the backend's sessions or GPU buffers;
a closed Matcher refuses every call in one line (:class:`~.lifecycle.ClosedError`).

Faces: ``Matcher(bundle, detector="yunet:face_detection_yunet.onnx")`` (or a bundle exported with
``--detector``, whose detector is then the default) detects the faces of every image, embeds the
largest one's crop (:func:`.roi.cut_view`: a square, eye-levelled crop, or dlib's 150×150 face
chip, as the detector settings' ``chip`` says) and draws the explanation on the original
frame with the box and landmarks. An image without a face is a decision, never a match:
``compare`` returns ``is_match=False`` with ``reason="no face found in image b"``; ``embed`` (used
to enroll) raises :class:`~.detection.NoFaceFound`. ``detector="none"`` embeds whole images.
``faces(image)`` returns every face as a :class:`~.faces.FaceResult` (box, landmarks, detector
score, embedding, aligned crop), largest first, which ``compare`` and the gallery take in place
of an image.

Thread-safe: several camera threads may share one Matcher (closing it while they run is not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...bundle import read_manifest
from ...errors import BundleError, ConfigError
from ..assurance.thresholds import CalibrationMismatch, calibrated_threshold, check_threshold
from ..faces.detection import (
    CHIP_OF_BACKBONE,
    DetectorSettings,
    NoFaceFound,
    YuNetDetector,
    bundle_detector,
    load_detector,
)
from ..faces.roi import View, cut_view, whole_view
from ..inference.agreement import SCORE_TOL
from ..inference.backends import create_backend
from ..inference.chunking import CHUNKED, Limit, run_in_chunks
from ..inference.graphs import graph_files
from ..inference.image import ImageInput, load_image
from ..inference.preprocess import to_network_input
from ..lifecycle import ClosedError
from . import explain
from .explanation import Explanation
from .face_result import FaceResult
from .features import Features
from .results import MatchResult, RegionMatch
from .structural import flow as region_flow


class Matcher:
    """Embeds and compares images with an exported bundle (see the module doc)."""

    _closed = False  # (also for a Matcher assembled without __init__, as tests do)
    _face_key = None

    def __init__(self, bundle: str | Path, backend: str = "auto", threshold: float | None = None,
                 threshold_name: str = "default", precision: str = "fp32",
                 detector: str | YuNetDetector | None = None, detector_settings: DetectorSettings | None = None,
                 providers: list | None = None, threads: int | None = None):
        """``bundle``: a bundle folder, or the name of a shipped one ("objects", "faces";
        :func:`~.shipped.resolve_bundle`). ``detector``: None uses the bundle's (none if it has
        none), "none" turns detection off, "yunet:PATH" loads that file, or pass a detector
        object. ``detector_settings`` replace the bundle's recorded ones (score threshold, minimum
        face size, margin, align, chip). ``providers`` (ONNX Runtime's execution providers in
        order, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` or ``["cuda", "cpu"]``;
        the TensorRT EP only when listed) and ``threads`` (intra-op threads, ≥ 1) choose the
        onnxruntime backend (:func:`~.backends.create_backend`); with ``backend="opencv"`` or
        ``"tensorrt"`` they are refused."""
        from ..shipped import resolve_bundle

        self._closed = False
        self.bundle = resolve_bundle(bundle)
        self.manifest = read_manifest(self.bundle)  # verifies every checksum
        self.spec = self.manifest.preprocessing
        self.precision = precision
        self.backend = create_backend(self.bundle, self.manifest, backend, precision, providers, threads)
        try:
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
        except BaseException:
            self.close()
            raise

    # --- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the backend (ONNX Runtime sessions, OpenCV nets, TensorRT engines and GPU
        buffers). Idempotent; any later call raises :class:`~.lifecycle.ClosedError`."""
        if self._closed:
            return
        self._closed = True
        backend = getattr(self, "backend", None)
        if backend is not None and hasattr(backend, "close"):
            backend.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Matcher:
        self._check_open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"this Matcher of {self.bundle} is closed; open a new one "
                              f"(Matcher({str(self.bundle)!r}))")

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
        self._check_open()
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
        (whole images, or the largest face's crop with a detector: :class:`NoFaceFound` if none;
        a :class:`~.faces.FaceResult`'s own crop)."""
        views = [self._face_view(image) if isinstance(image, FaceResult) else self._main_view(image)
                 for image in images]
        return np.stack([to_network_input(v.pixels, self.spec) for v in views]), [v.pixels for v in views]

    def embed(self, images: ImageInput | FaceResult | Sequence[ImageInput | FaceResult]) -> Features:
        """One image or a list → :class:`Features` (N rows). With a detector, each image's
        largest face; an image without one raises :class:`NoFaceFound` naming it. A
        :class:`~.faces.FaceResult` gives its own features (not embedded again)."""
        if isinstance(images, (str, Path, bytes, bytearray, memoryview, np.ndarray, FaceResult)):
            images = [images]
        images = list(images)
        faces = {i: self._face_features(item) for i, item in enumerate(images) if isinstance(item, FaceResult)}
        rest = [item for i, item in enumerate(images) if i not in faces]
        embedded = self._embed_batch(self.preprocess(rest)[0]) if rest else None
        if not faces:
            return embedded
        if embedded is None and len(faces) == 1:
            return faces[0]
        order, k = [], 0
        for i in range(len(images)):
            if i in faces:
                order.append(faces[i])
            else:
                order.append(embedded[k])
                k += 1
        return Features.concat(order)

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

    def faces(self, image: ImageInput, limit: int | None = None) -> list[FaceResult]:
        """Every face the detector finds in ``image``, largest first (the first ``limit`` only),
        each a :class:`~.faces.FaceResult`: ``bbox``, ``landmarks``, ``score`` (the detector's),
        ``embedding``, ``crop`` (the aligned pixels the embedder saw) and ``view``. An empty list
        when there is none. A matcher without a detector refuses in one line (a whole frame is
        not a face: use :meth:`embed` for whole images)."""
        self._check_open()
        if self.detector is None:
            raise ConfigError(f"this Matcher has no face detector (the bundle {self.bundle} was exported without "
                              f"--detector, or detector='none'), so it finds no faces: pass "
                              f"detector='yunet:PATH', or use embed()/compare() on whole images")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"limit must be a whole number ≥ 1 or None, got {limit!r}")
        rgb, views = self.views(image)
        views = views[:limit]
        if not views:
            return []
        features = self._embed_batch(np.stack([to_network_input(v.pixels, self.spec) for v in views]))
        embedder, cropping = self.face_key
        return [FaceResult(v.face, v, features[i], tuple(rgb.shape[:2]), embedder, cropping)
                for i, v in enumerate(views)]

    @property
    def face_key(self) -> tuple[str, str]:
        """(sha256 of this precision's embedder graph, cropping): what a FaceResult must carry to be
        matched here."""
        if self._face_key is None:
            file = graph_files(self.manifest, self.precision)["embedder"]
            entry = self.manifest.files.get(file)
            self._face_key = (entry.sha256 if entry else file, self.cropping)
        return self._face_key

    def _face_features(self, face: FaceResult) -> Features:
        """A FaceResult's features, refused in one line when another model or cropping made them."""
        self._check_open()
        why = face.mismatch(*self.face_key)
        if why:
            raise ConfigError(why)
        return face.features

    def _face_view(self, face: FaceResult) -> View:
        self._face_features(face)
        return face.view

    def _run(self, graph: str, feeds: dict[str, np.ndarray], chunked: tuple[str, ...] | None = None
             ) -> dict[str, np.ndarray]:
        """Run a graph within its limit (a TensorRT profile, a fixed export batch): larger
        requests are split into chunks (of the inputs :data:`~.chunking.CHUNKED` names), and a
        fixed-size graph's last chunk is padded."""
        self._check_open()
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

    def compare(self, image_a: ImageInput | FaceResult, image_b: ImageInput | FaceResult,
                threshold: float | None = None, top_matches: int = 5) -> MatchResult:
        """Score two images (or :class:`~.faces.FaceResult` objects from :meth:`faces`, used as
        they are: no second detection or embedding) → a small :class:`~.results.MatchResult`.
        The picture of why: :meth:`explain`."""
        threshold = self.decision_threshold(threshold)
        return self._score(self._side(image_a), self._side(image_b), threshold, top_matches)[0]

    def explain(self, image_a: ImageInput, image_b: ImageInput, threshold: float | None = None,
                top_matches: int = 5) -> Explanation:
        """:meth:`compare` with its pictures: an :class:`~.explanation.Explanation` holding the
        result, both frames and the evidence (attention, unmatched shares) in frame pixels;
        ``.render()`` draws it. Takes images (it draws on their frames), not FaceResults."""
        if isinstance(image_a, FaceResult) or isinstance(image_b, FaceResult):
            raise ConfigError("explain draws on the frames, and a FaceResult holds only its crop: pass the images "
                              "(compare takes FaceResults)")
        threshold = self.decision_threshold(threshold)
        side_a, side_b = self._side(image_a), self._side(image_b)
        result, features, out = self._score(side_a, side_b, threshold, top_matches)
        rgb_a, rgb_b = side_a.frame, side_b.frame
        if result.score is None:
            return Explanation(result, rgb_a, rgb_b, np.zeros(rgb_a.shape[:2], np.float32),
                               np.zeros(rgb_b.shape[:2], np.float32))
        g, va, vb = self.grid, side_a.view, side_b.view

        def on_frame(region_map, view, rgb):
            return explain.to_image(region_map, view, rgb.shape, self.spec)

        attention = features.attention
        shares = (result.unmatched_regions_a, result.unmatched_regions_b)
        return Explanation(
            result, rgb_a, rgb_b,
            evidence_a=on_frame(result.evidence_regions_a.reshape(g, g), va, rgb_a),
            evidence_b=on_frame(result.evidence_regions_b.reshape(g, g), vb, rgb_b),
            attention_a=None if attention is None else np.stack([on_frame(m, va, rgb_a) for m in attention[0]]),
            attention_b=None if attention is None else np.stack([on_frame(m, vb, rgb_b) for m in attention[1]]),
            unmatched_a=None if shares[0] is None else on_frame(shares[0].reshape(g, g), va, rgb_a),
            unmatched_b=None if shares[1] is None else on_frame(shares[1].reshape(g, g), vb, rgb_b),
            inputs=(to_network_input(va.pixels, self.spec), to_network_input(vb.pixels, self.spec)))

    def faithfulness(self, explanation: Explanation, seed: int = 0) -> dict[str, float]:
        """How faithful an explanation's evidence map is: the deletion AUC of the evidence order and
        of a random order (the floor), from g² + 1 extra embeddings each (see
        :mod:`edgedml.runtime.assurance.faithfulness`). Lower than random: removing what the evidence
        points at lowers the score faster."""
        from ..assurance.faithfulness import pair_curves

        if not isinstance(explanation, Explanation) or explanation.inputs is None:
            reason = getattr(explanation, "reason", None)
            raise ConfigError("faithfulness needs an Explanation with a score, from Matcher.explain"
                              + (f" ({reason})" if reason else ""))
        found = pair_curves(self, *explanation.inputs, methods=("evidence", "random"), seed=seed)
        return {"evidence_deletion_auc": found["evidence"].deletion_auc,
                "random_deletion_auc": found["random"].deletion_auc,
                "evidence_insertion_auc": found["evidence"].insertion_auc}

    def _side(self, image: ImageInput | FaceResult) -> _Side:
        """One input of a comparison: its frame (None for a FaceResult), the frame's shape, the view
        the embedder sees (None: no face) and its features when already embedded."""
        if isinstance(image, FaceResult):
            return _Side(None, tuple(image.frame_shape), image.view, self._face_features(image))
        rgb, views = self.views(image)
        return _Side(rgb, tuple(rgb.shape[:2]), views[0] if views else None, None)

    def _score(self, side_a: _Side, side_b: _Side, threshold: float | None, top_matches: int
               ) -> tuple[MatchResult, Features | None, dict | None]:
        """The comparison of two sides → the result, the two rows of features and the matcher's outputs."""
        if side_a.view is None or side_b.view is None:
            missing = " and ".join(name for name, side in (("image a", side_a), ("image b", side_b))
                                   if side.view is None)
            return MatchResult(score=None, structural=None, global_similarity=None, threshold=threshold,
                               is_match=False, reason=f"no face found in {missing}",
                               face_a=side_a.view.face if side_a.view else None,
                               face_b=side_b.view.face if side_b.view else None,
                               frame_shape_a=side_a.shape, frame_shape_b=side_b.shape), None, None
        va, vb = side_a.view, side_b.view
        pending = [side.view for side in (side_a, side_b) if side.features is None]
        embedded = self._embed_batch(np.stack([to_network_input(v.pixels, self.spec) for v in pending])) \
            if pending else None
        rows, k = [], 0
        for side in (side_a, side_b):
            if side.features is None:
                rows.append(embedded[k])
                k += 1
            else:
                rows.append(side.features)
        features = Features.concat(rows)
        out = self.match(features[0], features[1])
        plan = out["plan"][0]
        structural, score = float(out["structural"][0]), float(out["multiscale"][0])
        g = self.grid
        flow = region_flow(plan, features.local[0], features.local[1])  # T ⊙ s, (R, R)
        order = np.argsort(-flow, axis=None)[:top_matches]
        matches = tuple(RegionMatch(int(i), int(j), float(flow[i, j]), explain.region_centre(int(i), g, va, self.spec),
                                    explain.region_centre(int(j), g, vb, self.spec))
                        for i, j in (divmod(int(k), flow.shape[1]) for k in order) if flow[i, j] > 0)
        shares = (None, None)
        if "query_unmatched" in out:  # partial transport: what each region sent to the dummy
            left = (out["query_unmatched"][0], out["candidate_unmatched"][0])
            shares = tuple(rest / np.maximum(rest + kept, 1e-12)
                           for rest, kept in zip(left, (plan.sum(1), plan.sum(0))))
        result = MatchResult(
            score=score, structural=structural, global_similarity=score - structural, threshold=threshold,
            is_match=None if threshold is None else bool(score >= threshold), matches=matches, plan=plan,
            evidence_regions_a=out["query_evidence"][0], evidence_regions_b=out["candidate_evidence"][0],
            unmatched_regions_a=shares[0], unmatched_regions_b=shares[1], face_a=va.face, face_b=vb.face,
            outline_a=explain.seen_outline(va, self.spec), outline_b=explain.seen_outline(vb, self.spec),
            frame_shape_a=side_a.shape, frame_shape_b=side_b.shape)
        return result, features, out

    def __repr__(self) -> str:
        if self._closed:
            return f"Matcher({str(self.bundle)!r}, closed)"
        detector = self.detector.describe() if self.detector else "none"
        return (f"Matcher({str(self.bundle)!r}, precision={self.precision!r}, backend={self.backend.describe()!r}, "
                f"threshold={self.threshold}, detector={detector!r})")


class _Side(NamedTuple):
    """One input of a comparison (:meth:`Matcher._side`)."""

    frame: np.ndarray | None  # RGB, None for a FaceResult
    shape: tuple[int, int]  # (H, W) of the frame
    view: View | None  # what the embedder sees; None: no face found
    features: Features | None  # already embedded (a FaceResult), else None


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
