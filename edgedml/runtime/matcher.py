"""`Matcher`: the on-device API. numpy + OpenCV + one inference backend; never torch.

    from edgedml.runtime import Matcher
    matcher = Matcher("bundle/")                 # backend="auto": TensorRT, ONNX Runtime or OpenCV
    matcher = Matcher("bundle/", precision="int8-cpu")   # any graph set the bundle holds
    result = matcher.compare("a.jpg", "b.jpg")   # paths, encoded bytes or numpy arrays (BGR)
    result.score, result.is_match                # multi-scale score, decision at the threshold
    cv2.imwrite("why.png", result.render())      # what made the match

Thread-safe: several camera threads may share one Matcher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..bundle import read_manifest
from . import explain
from .backends import create_backend
from .chunking import Limit, run_in_chunks
from .image import ImageInput, load_image
from .preprocess import crop_box, to_network_input
from .structural import flow as region_flow
from .thresholds import check_threshold


class RegionMatch(NamedTuple):
    """One strong region-to-region correspondence: flow T_ij·s_ij and pixel centres (x, y)."""

    region_a: int
    region_b: int
    flow: float
    point_a: tuple[int, int]
    point_b: tuple[int, int]


@dataclass
class Features:
    """Embedder outputs for N images: embedding (N, E), local (N, R, D), attention (N, P, h, w)."""

    embedding: np.ndarray
    local: np.ndarray
    attention: np.ndarray | None = None

    def __getitem__(self, index) -> "Features":
        index = slice(index, index + 1) if isinstance(index, int) else index
        return Features(self.embedding[index], self.local[index],
                        None if self.attention is None else self.attention[index])

    def __len__(self) -> int:
        return len(self.embedding)


@dataclass
class MatchResult:
    """Why two images match: scores, decision and evidence in each image's own pixels."""

    score: float  # multi-scale: structural + global
    structural: float  # Σ T ⊙ s
    global_similarity: float  # cosine of the global embeddings
    threshold: float | None
    is_match: bool | None  # None when no threshold is calibrated or given
    evidence_a: np.ndarray  # (H_a, W_a) per-pixel share of the structural score
    evidence_b: np.ndarray  # (H_b, W_b)
    plan: np.ndarray  # (R, R) transport plan, rows: regions of image a
    matches: list[RegionMatch]  # strongest flows first
    attention_a: np.ndarray | None  # (P, H_a, W_a) group / learner attention, or None (DIML)
    attention_b: np.ndarray | None
    image_a: np.ndarray = field(repr=False)  # RGB uint8
    image_b: np.ndarray = field(repr=False)
    crop_a: tuple[int, int, int, int] | None = None  # (top, left, height, width) the model sees of image a
    crop_b: tuple[int, int, int, int] | None = None

    def render(self, height: int = 360) -> np.ndarray:
        """Side-by-side picture (BGR uint8): heatmaps, match lines, score and decision."""
        return explain.side_by_side(self, height)

    def to_dict(self) -> dict:
        """JSON-ready summary (no images or maps)."""
        return {"score": self.score, "structural": self.structural, "global": self.global_similarity,
                "threshold": self.threshold, "is_match": self.is_match,
                "matches": [{"region_a": m.region_a, "region_b": m.region_b, "flow": m.flow,
                             "point_a": list(m.point_a), "point_b": list(m.point_b)} for m in self.matches]}


class Matcher:
    """Embeds and compares images with an exported bundle (see the module doc)."""

    def __init__(self, bundle: str | Path, backend: str = "auto", threshold: float | None = None,
                 threshold_name: str = "default", precision: str = "fp32"):
        self.bundle = Path(bundle)
        self.manifest = read_manifest(self.bundle)  # verifies every checksum
        self.spec = self.manifest.preprocessing
        self.precision = precision
        self.backend = create_backend(self.bundle, self.manifest, backend, precision)
        calibrated = self.manifest.thresholds.get(threshold_name)
        self.threshold = threshold if threshold is not None else (calibrated["threshold"] if calibrated else None)
        if self.threshold is not None:
            self.threshold = check_threshold(self.threshold, self.manifest)
        self.grid = int(round(math.sqrt(self.manifest.regions)))

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Inputs → network batch (N, 3, S, S) float32 and the decoded RGB images."""
        rgbs = [load_image(image) for image in images]
        return np.stack([to_network_input(rgb, self.spec) for rgb in rgbs]), rgbs

    def embed(self, images: ImageInput | Sequence[ImageInput]) -> Features:
        """One image or a list → :class:`Features` (N rows)."""
        if isinstance(images, (str, Path, bytes, bytearray, memoryview, np.ndarray)):
            images = [images]
        batch, _ = self.preprocess(list(images))
        return self._embed_batch(batch)

    def _run(self, graph: str, feeds: dict[str, np.ndarray], chunked: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Run a graph within its limit (a TensorRT profile, a fixed export batch): larger
        requests are split into chunks, and a fixed-size graph's last chunk is padded."""
        return run_in_chunks(lambda part: self.backend.run(graph, part), feeds, chunked,
                             self.backend.limits.get(graph, Limit()))

    def _embed_batch(self, batch: np.ndarray) -> Features:
        out = self._run("embedder", {"images": batch}, ("images",))
        return Features(out["embedding"], out["local"], out.get("attention"))

    def match(self, query: Features, candidates: Features) -> dict[str, np.ndarray]:
        """One query against K candidates → structural (K), multiscale (K), plan (K, R, R),
        query_evidence (K, R), candidate_evidence (K, R)."""
        if len(query) != 1:
            raise ValueError(f"match takes one query, got {len(query)}; use query[i] to pick one")
        if len(candidates) == 0:
            raise ValueError("match needs at least one candidate")
        return self._run("matcher", {
            "query_local": query.local, "query_embedding": query.embedding,
            "candidate_local": candidates.local, "candidate_embedding": candidates.embedding},
            ("candidate_local", "candidate_embedding"))

    def compare(self, image_a: ImageInput, image_b: ImageInput, threshold: float | None = None,
                top_matches: int = 5) -> MatchResult:
        """Score two images and explain the score (see :class:`MatchResult`)."""
        batch, (rgb_a, rgb_b) = self.preprocess([image_a, image_b])
        features = self._embed_batch(batch)
        out = self.match(features[0], features[1])
        plan = out["plan"][0]
        structural, score = float(out["structural"][0]), float(out["multiscale"][0])
        threshold = self.threshold if threshold is None else check_threshold(threshold, self.manifest)
        (ha, wa), (hb, wb) = rgb_a.shape[:2], rgb_b.shape[:2]
        g = self.grid
        flow = region_flow(plan, features.local[0], features.local[1])  # T ⊙ s, (R, R)
        order = np.argsort(-flow, axis=None)[:top_matches]
        matches = [RegionMatch(int(i), int(j), float(flow[i, j]),
                               explain.region_centre(int(i), g, ha, wa, self.spec),
                               explain.region_centre(int(j), g, hb, wb, self.spec))
                   for i, j in (divmod(int(k), flow.shape[1]) for k in order) if flow[i, j] > 0]
        attention = features.attention
        return MatchResult(
            score=score, structural=structural, global_similarity=score - structural, threshold=threshold,
            is_match=None if threshold is None else bool(score >= threshold),
            evidence_a=explain.to_image(out["query_evidence"][0].reshape(g, g), ha, wa, self.spec),
            evidence_b=explain.to_image(out["candidate_evidence"][0].reshape(g, g), hb, wb, self.spec),
            plan=plan, matches=matches,
            attention_a=None if attention is None else np.stack(
                [explain.to_image(m, ha, wa, self.spec) for m in attention[0]]),
            attention_b=None if attention is None else np.stack(
                [explain.to_image(m, hb, wb, self.spec) for m in attention[1]]),
            image_a=rgb_a, image_b=rgb_b, crop_a=crop_box(ha, wa, self.spec), crop_b=crop_box(hb, wb, self.spec))

    def __repr__(self) -> str:
        return (f"Matcher({str(self.bundle)!r}, precision={self.precision!r}, backend={self.backend.describe()!r}, "
                f"threshold={self.threshold})")
