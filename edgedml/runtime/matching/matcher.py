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
a closed Matcher refuses every call in one line (:class:`~..lifecycle.ClosedError`).

Faces: ``Matcher(bundle, detector="yunet:face_detection_yunet.onnx")`` (or a bundle exported with
``--detector``, whose detector is then the default) detects the faces of every image, embeds the
largest one's crop (:func:`..faces.roi.cut_view`: a square, eye-levelled crop, or dlib's 150×150 face
chip, as the detector settings' ``chip`` says) and draws the explanation on the original
frame with the box and landmarks. An image without a face is a decision, never a match:
``compare`` returns ``is_match=False`` with ``reason="no face found in image b"``; ``embed`` (used
to enroll) raises :class:`~..faces.detection.NoFaceFound`. ``detector="none"`` embeds whole images.
``faces(image)`` returns every face as a :class:`~.face_result.FaceResult` (box, landmarks, detector
score, embedding, aligned crop), largest first, which ``compare`` and the gallery take in place
of an image.

Thread-safe: several camera threads may share one Matcher (closing it while they run is not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...bundle import read_manifest
from ...errors import ConfigError
from ..assurance.thresholds import CalibrationMismatch, calibrated_threshold, check_threshold
from ..faces.detection import DetectorSettings, YuNetDetector
from ..faces.roi import View, cut_view, whole_view
from ..inference.backends import create_backend
from ..inference.chunking import CHUNKED, Limit, run_in_chunks
from ..inference.image import ImageInput, load_image
from ..inference.preprocess import to_network_input
from ..lifecycle import ClosedError
from .comparison import explanation_of, score_pair, side_of
from .explanation import Explanation
from .face_path import choose_detector, embed_every_face, face_key_of, find_faces, no_face_found
from .face_result import FaceResult
from .features import Features
from .results import MatchResult
from .score_checks import SCORE_RANGE_TOL, check_scores


class Matcher:
    """Embeds and compares images with an exported bundle (see the module doc)."""

    _closed = False  # (also for a Matcher assembled without __init__, as tests do)
    _face_key = None

    def __init__(self, bundle: str | Path, backend: str = "auto", threshold: float | None = None,
                 threshold_name: str = "default", precision: str = "fp32",
                 detector: str | YuNetDetector | None = None, detector_settings: DetectorSettings | None = None,
                 providers: list | None = None, threads: int | None = None):
        """``bundle``: a bundle folder, or the name of a shipped one ("objects", "faces";
        :func:`~..shipped.resolve_bundle`). ``detector``: None uses the bundle's (none if it has
        none), "none" turns detection off, "yunet:PATH" loads that file, or pass a detector
        object. ``detector_settings`` replace the bundle's recorded ones (score threshold, minimum
        face size, margin, align, chip). ``providers`` (ONNX Runtime's execution providers in
        order, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` or ``["cuda", "cpu"]``;
        the TensorRT EP only when listed) and ``threads`` (intra-op threads, ≥ 1) choose the
        onnxruntime backend (:func:`~..inference.backends.create_backend`); with ``backend="opencv"`` or
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
            self.detector = choose_detector(self.manifest, detector, detector_settings)
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
        buffers). Idempotent; any later call raises :class:`~..lifecycle.ClosedError`."""
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
            raise no_face_found(image, self.detector)
        return views[0]

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Inputs → network batch (N, 3, S, S) float32 and the RGB images the embedder sees
        (whole images, or the largest face's crop with a detector: :class:`NoFaceFound` if none;
        a :class:`~.face_result.FaceResult`'s own crop)."""
        views = [self._face_view(image) if isinstance(image, FaceResult) else self._main_view(image)
                 for image in images]
        return np.stack([to_network_input(v.pixels, self.spec) for v in views]), [v.pixels for v in views]

    def embed(self, images: ImageInput | FaceResult | Sequence[ImageInput | FaceResult]) -> Features:
        """One image or a list → :class:`Features` (N rows). With a detector, each image's
        largest face; an image without one raises :class:`NoFaceFound` naming it. A
        :class:`~.face_result.FaceResult` gives its own features (not embedded again)."""
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
        return embed_every_face(self, image, limit)

    def faces(self, image: ImageInput, limit: int | None = None) -> list[FaceResult]:
        """Every face the detector finds in ``image``, largest first (the first ``limit`` only),
        each a :class:`~.face_result.FaceResult`: ``bbox``, ``landmarks``, ``score`` (the detector's),
        ``embedding``, ``crop`` (the aligned pixels the embedder saw) and ``view``. An empty list
        when there is none. A matcher without a detector refuses in one line (a whole frame is
        not a face: use :meth:`embed` for whole images)."""
        return find_faces(self, image, limit)

    @property
    def face_key(self) -> tuple[str, str]:
        """(sha256 of this precision's embedder graph, cropping): what a FaceResult must carry to be
        matched here."""
        if self._face_key is None:
            self._face_key = face_key_of(self.manifest, self.precision, self.cropping)
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
        requests are split into chunks (of the inputs :data:`~..inference.chunking.CHUNKED` names), and a
        fixed-size graph's last chunk is padded."""
        self._check_open()
        return run_in_chunks(lambda part: self.backend.run(graph, part), feeds, chunked or CHUNKED[graph],
                             self.backend.limits.get(graph, Limit()))

    def _embed_batch(self, batch: np.ndarray) -> Features:
        out = self._run("embedder", {"images": batch}, ("images",))
        return Features(out["embedding"], out["local"], out.get("attention"), out.get("marginal"))

    def _embed_views(self, views: Sequence[View]) -> Features:
        """The features of ``views`` (N ≥ 1 crops the embedder sees), embedded as one batch."""
        return self._embed_batch(np.stack([to_network_input(v.pixels, self.spec) for v in views]))

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
        """Score two images (or :class:`~.face_result.FaceResult` objects from :meth:`faces`, used as
        they are: no second detection or embedding) → a small :class:`~.results.MatchResult`.
        The picture of why: :meth:`explain`."""
        threshold = self.decision_threshold(threshold)
        return score_pair(self, side_of(self, image_a), side_of(self, image_b), threshold, top_matches)[0]

    def explain(self, image_a: ImageInput, image_b: ImageInput, threshold: float | None = None,
                top_matches: int = 5) -> Explanation:
        """:meth:`compare` with its pictures: an :class:`~.explanation.Explanation` holding the
        result, both frames and the evidence (attention, unmatched shares) in frame pixels;
        ``.render()`` draws it. Takes images (it draws on their frames), not FaceResults."""
        if isinstance(image_a, FaceResult) or isinstance(image_b, FaceResult):
            raise ConfigError("explain draws on the frames, and a FaceResult holds only its crop: pass the images "
                              "(compare takes FaceResults)")
        threshold = self.decision_threshold(threshold)
        side_a, side_b = side_of(self, image_a), side_of(self, image_b)
        result, features = score_pair(self, side_a, side_b, threshold, top_matches)
        return explanation_of(self, side_a, side_b, result, features)

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

    def __repr__(self) -> str:
        if self._closed:
            return f"Matcher({str(self.bundle)!r}, closed)"
        detector = self.detector.describe() if self.detector else "none"
        return (f"Matcher({str(self.bundle)!r}, precision={self.precision!r}, backend={self.backend.describe()!r}, "
                f"threshold={self.threshold}, detector={detector!r})")
