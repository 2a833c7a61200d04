"""A gallery of enrolled identities for access control: the decisions. Where the identities
live is the store's business (:mod:`.store`): an SQLite file on one device
(:mod:`.sqlite_store`, the embedded default) or a PostgreSQL + pgvector database shared by a
fleet of doors (:mod:`.postgres_store`, ``Gallery("postgresql://…", matcher)``). Same API on both:

- ``enroll(name, images)`` embeds first, then writes the identity and all its templates in one
  transaction: a process killed mid-enrollment leaves the gallery as it was before. The name must
  be new; ``enroll(name, images, add=True)`` adds templates to an enrolled identity (and refuses a
  name that is not enrolled), decided inside that transaction.
- Names pass :func:`.names.identity_name` at every call that takes one: stored in Unicode NFC,
  control, format and invisible characters, stray spaces and names over 256 characters refused.
- ``verify(image, name)`` (1:1): the query against that identity's templates with the batched
  matcher; the best multi-scale score decides.
- ``identify(image, top_k)`` (1:N): the store's nearest templates by global cosine (SQLite: numpy,
  FAISS exact or FAISS IVF by gallery size, :mod:`.template_index`; PostgreSQL: pgvector's HNSW
  index), then the matcher re-ranks the best K templates; identities ranked by their best
  multi-scale score.
- ``remove(name)`` (alias ``revoke``) deletes an identity and its templates (every stored spelling
  of the name, so a gallery enrolled before names were normalised loses its other spellings too).
- With a detector (the matcher's): enrollment photos must show a face (the largest is enrolled);
  ``verify`` and ``identify`` decide on the largest face of the frame, and a frame without a face
  is rejected with ``reason="no face found"`` and no score; ``identify_faces`` decides on every
  face of the frame, largest first.
- ``log_decision`` records a decision with its door, score, threshold, time and evidence picture,
  so every access decision can be explained afterwards; ``decisions()`` reads them back as
  :class:`~.decision_log.LoggedDecision` rows.
- A :class:`~..matching.face_result.FaceResult` (from ``Matcher.faces``) stands in for an image in ``enroll``,
  ``verify`` and ``identify``: its features are used as they are (no second detection), and one
  made by another model or cropping is refused in one line.
- A context manager: ``close()`` (idempotent) closes the store, not the matcher; a closed gallery
  refuses every call in one line (:class:`~..lifecycle.ClosedError`).

The store remembers which embedder made its templates (sha256 of ``embedder.onnx``) and how faces
were cut, and refuses a Matcher that differs: templates from different models are not comparable.
"""

from __future__ import annotations

import socket
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..assurance.thresholds import check_threshold
from ..faces.detection import Face
from ..inference.graphs import graph_files
from ..inference.image import ImageInput
from ..lifecycle import ClosedError
from ..matching.face_result import FaceResult
from ..matching.features import Features
from ..matching.matcher import Matcher
from .decision_log import LoggedDecision
from .names import identity_name
from .store import GalleryError, GalleryUnavailable, Layout, Templates, is_url
from .template_index import IndexSettings, top_by_cosine

__all__ = ["Gallery", "GalleryError", "GalleryUnavailable", "Decision", "Candidate", "IndexSettings",
           "LoggedDecision", "top_by_cosine"]

@dataclass(frozen=True)
class Candidate:
    """One identity of an identification result."""

    name: str
    score: float  # best multi-scale score over the identity's re-ranked templates
    global_similarity: float
    source: str | None = None  # the enrolled image of the best template, when it was a file


@dataclass(frozen=True)
class Decision:
    """A verification or identification decision."""

    accepted: bool
    name: str | None  # the identity verified, or the best identified one
    score: float | None  # None when there was nothing to score (no face found)
    threshold: float
    candidates: tuple[Candidate, ...] = ()
    reason: str | None = None  # why a decision was made without a score ("no face found")
    face: Face | None = None  # the face decided on, in frame pixels (with a detector)

    def to_dict(self) -> dict:
        """JSON-ready: the decision, its candidates and the face box."""
        return {"accepted": self.accepted, "name": self.name, "score": self.score, "threshold": self.threshold,
                "reason": self.reason, "face": self.face and self.face.to_dict(),
                "candidates": [c.__dict__ for c in self.candidates]}


class Gallery:
    """``Gallery(location, matcher)``: ``location`` is a file path (SQLite, one device) or a
    ``postgresql://`` URL (a fleet of doors sharing one store); ``threshold`` defaults to the
    matcher's (calibrated) one. Without a matcher (``Gallery(location)``, an existing gallery) it
    can revoke, list identities and read decisions, whatever model enrolled them; enrolling and
    deciding need the matcher; ``door`` names this door in the decision log (default: the host
    name); ``index`` sets when a file gallery's search uses FAISS (:class:`IndexSettings`)."""

    def __init__(self, location: str | Path, matcher: Matcher | None = None, threshold: float | None = None,
                 read_only: bool | None = None, door: str | None = None, index: IndexSettings = IndexSettings()):
        self._store = None
        self.matcher = matcher
        if matcher is None and threshold is not None:
            raise GalleryError("a threshold decides with a Matcher: pass Gallery(location, matcher, threshold=...)")
        self.threshold = (None if matcher is None else matcher.threshold if threshold is None
                          else check_threshold(threshold, matcher.manifest))
        self.door = door or socket.gethostname()
        layout = None if matcher is None else matcher_layout(matcher)  # None: the one the gallery records
        if is_url(location):
            from .postgres_store import PostgresStore

            self._store = PostgresStore(location, layout, read_only)
        else:
            from .sqlite_store import SQLiteStore

            self._store = SQLiteStore(location, layout, read_only, index)
        self.path = self.store.where  # for messages: the file, or the URL without its password
        self.read_only = self.store.read_only

    @property
    def store(self):
        """The store (SQLite or PostgreSQL); :class:`~..lifecycle.ClosedError` once closed."""
        if self._store is None:
            raise ClosedError(f"the gallery {getattr(self, 'path', '')} is closed; open it again with Gallery(...)")
        return self._store

    # --- enrollment -------------------------------------------------------------------------

    def enroll(self, name: str, images: Sequence[ImageInput | FaceResult], sources: Sequence[str | None] | None = None,
               add: bool = False) -> int:
        """Enroll ``name`` (which must be new) with one template per image, all or nothing; with
        ``add=True``, add the templates to the enrolled ``name`` instead (refused when it is not
        enrolled). ``sources``: what each image was (default: the path of each image given as a
        file). Returns the number of templates written."""
        name = identity_name(name)
        if not isinstance(add, bool):
            raise GalleryError(f"add must be True or False, got {add!r}")
        if isinstance(images, (str, bytes, Path, FaceResult)) or (isinstance(images, np.ndarray) and images.ndim < 4):
            raise GalleryError(f"enrolling {name!r} needs a list of images; got one image: pass [image]")
        images = list(images)
        if not images:
            raise GalleryError(f"enrolling {name!r} needs at least one image")
        if sources is not None:
            sources = list(sources) if isinstance(sources, (list, tuple)) else None
            if sources is None or len(sources) != len(images):
                raise GalleryError(f"enrolling {name!r}: give one source per image ({len(images)} images, "
                                   f"{'no list of' if sources is None else len(sources)} sources), or none")
            if not all(s is None or isinstance(s, str) for s in sources):
                raise GalleryError(f"enrolling {name!r}: each source is a string or None")
        self.store.refuse_writes(f"enroll {name!r}")  # a read-only gallery: say so before the slow embedding
        features = self._embedder(f"enroll {name!r}").embed(images)  # before the transaction: slow, may fail
        sources = sources if sources is not None else [str(i) if isinstance(i, (str, Path)) else None for i in images]
        return self.store.enroll(name, features.embedding, features.local, features.marginal, sources, add=add)

    def remove(self, name: str) -> bool:
        """Delete (revoke) an identity and its templates; False if it was not enrolled. Removes
        every stored spelling of the name (a gallery enrolled before names were NFC may hold
        "Zoë" twice)."""
        name = identity_name(name)
        removed = self.store.remove(name)
        for stored in self.store.identities():
            if stored != name and unicodedata.normalize("NFC", stored) == name:
                removed = self.store.remove(stored) or removed
        return removed

    revoke = remove

    def sources(self, name: str) -> set[str]:
        """The image paths ``name``'s templates were enrolled from (those given as files)."""
        return self.store.sources(identity_name(name))

    def identities(self) -> dict[str, int]:
        """{name: number of templates}, sorted by name."""
        return self.store.identities()

    # --- matching ---------------------------------------------------------------------------

    @staticmethod
    def _candidates(templates: Templates) -> Features:
        """Templates as matcher candidates (with their marginals, when stored)."""
        return Features(templates.embedding, templates.local, None, templates.marginal)

    def _embedder(self, what: str) -> Matcher:
        """The matcher, or a one-line refusal for a gallery opened without one."""
        if self.matcher is None:
            raise GalleryError(f"cannot {what}: {self.path} was opened without a Matcher (it can revoke, list "
                               f"identities and read decisions); open it with Gallery(location, Matcher(bundle))")
        return self.matcher

    def _require_threshold(self, threshold: float | None) -> float:
        self._embedder("decide")
        threshold = self.threshold if threshold is None else check_threshold(threshold, self.matcher.manifest)
        if threshold is None:  # the bundle's calibrated one, when measured on another cropping, is not available
            raise GalleryError(self.matcher.threshold_refused
                               or "no decision threshold: calibrate the bundle (`edgedml calibrate`) or pass one")
        return threshold

    def _query(self, image: ImageInput | Features | FaceResult) -> tuple[Features | None, Face | None]:
        """The features to decide on (the largest face's, with a detector; a FaceResult's own)
        and that face; (None, None) when the detector finds no face."""
        if isinstance(image, FaceResult):
            why = image.mismatch(self.store.layout.embedder, self.store.layout.cropping)
            if why:
                raise GalleryError(why.replace("the Matcher that decides", "this gallery's Matcher"))
            return image.features, image.detection
        if isinstance(image, Features):
            layout = self.store.layout
            want = ((1, layout.embedding_size), (1, *layout.local_shape))
            have = (np.shape(image.embedding), np.shape(image.local))
            if have != want:
                raise GalleryError(f"the query features have shapes embedding {have[0]} and local {have[1]}; this "
                                   f"gallery's are {want[0]} and {want[1]}: pass one image's features from "
                                   f"Matcher.embed of this gallery's bundle (features[i] for the i-th image)")
            return image, None
        if self.matcher.detector is None:
            return self.matcher.embed(image), None
        features, views = self.matcher.embed_faces(image, limit=1)  # the largest face decides
        return (features[0], views[0].face) if views else (None, None)

    def verify(self, image: ImageInput | Features | FaceResult, name: str, threshold: float | None = None) -> Decision:
        """1:1: is ``image`` the enrolled ``name``? (Rejected with a reason when no face is found.)"""
        name = identity_name(name)
        threshold = self._require_threshold(threshold)
        templates = self.store.templates_of(name)
        if templates is None:
            raise GalleryError(f"{name!r} is not enrolled in {self.path}; enroll them first, or check the name")
        query, face = self._query(image)
        if query is None:
            return self.no_face(threshold, name)
        out = self.matcher.match(query, self._candidates(templates))
        best = int(np.argmax(out["multiscale"]))
        score = float(out["multiscale"][best])
        candidate = Candidate(name, score, score - float(out["structural"][best]), templates.sources[best])
        return Decision(score >= threshold, name, score, threshold, (candidate,), face=face)

    def identify(self, image: ImageInput | Features | FaceResult, top_k: int = 5, rerank: int | None = None,
                 threshold: float | None = None) -> Decision:
        """1:N: the enrolled identities most like ``image`` (its largest face, with a detector),
        best first; accepted when the best scores at least the threshold. No face: rejected with
        ``reason="no face found"``."""
        threshold = self._identify_checks(top_k, rerank, threshold)
        query, face = self._query(image)
        if query is None:
            return self.no_face(threshold)
        return self._identify(query, face, top_k, rerank, threshold)

    def no_face(self, threshold: float | None = None, name: str | None = None) -> Decision:
        """The decision on a frame without a face: rejected, no score, ``reason="no face found"``."""
        return Decision(False, name, None, self._require_threshold(threshold), (), reason="no face found")

    def identify_faces(self, image: ImageInput, top_k: int = 5, rerank: int | None = None,
                       threshold: float | None = None) -> list[Decision]:
        """1:N for every face the matcher's detector finds in the frame, largest first (an empty
        list when there is none); without a detector, one decision on the whole frame."""
        threshold = self._identify_checks(top_k, rerank, threshold)
        features, views = self.matcher.embed_faces(image)
        return [self._identify(features[i], views[i].face, top_k, rerank, threshold) for i in range(len(views))]

    def _identify_checks(self, top_k, rerank, threshold) -> float:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a whole number ≥ 1, got {top_k!r}")
        if rerank is not None and (isinstance(rerank, bool) or not isinstance(rerank, int) or rerank < 1):
            raise GalleryError(f"rerank (templates the matcher re-ranks) must be a whole number ≥ 1, or None for "
                               f"the bundle's {self.matcher.manifest.rerank_k}, got {rerank!r}")
        return self._require_threshold(threshold)

    def _identify(self, query: Features, face: Face | None, top_k: int, rerank: int | None,
                  threshold: float) -> Decision:
        k = rerank or self.matcher.manifest.rerank_k
        nearest = self.store.nearest(query.embedding[0], k)
        if len(nearest) == 0:
            raise GalleryError(f"{self.path} has no enrolled identities; enroll some first")
        out = self.matcher.match(query, self._candidates(nearest))
        best: dict[str, Candidate] = {}
        for j, who in enumerate(nearest.names):
            score = float(out["multiscale"][j])
            if who not in best or score > best[who].score:
                best[who] = Candidate(who, score, score - float(out["structural"][j]), nearest.sources[j])
        ranked = tuple(sorted(best.values(), key=lambda c: -c.score)[:top_k])
        return Decision(ranked[0].score >= threshold, ranked[0].name, ranked[0].score, threshold, ranked, face=face)

    # --- audit ------------------------------------------------------------------------------

    def log_decision(self, kind: str, decision: Decision, claimed: str | None = None,
                     evidence: str | None = None, details: dict | None = None) -> int | None:
        """Record a decision (kind: "verify" or "identify") with this door's name and the path of
        its evidence picture; returns its row id. A gallery that cannot be written (read-only
        file or folder, full disk, server gone) does not stop the door: the entry is not recorded,
        a one-line warning says so on the "edgedml" logger, and None is returned."""
        return self.store.log({"time": time.time(), "door": self.door, "kind": kind, "claimed": claimed,
                               "decided": decision.name, "score": decision.score, "threshold": decision.threshold,
                               "accepted": int(decision.accepted), "evidence": evidence,
                               "details": _details(decision, details)})

    def decisions(self, limit: int = 100, door: str | None = None) -> list[LoggedDecision]:
        """The latest logged decisions, newest first: every door's, or ``door``'s only."""
        return [LoggedDecision.from_row(row) for row in self.store.decisions(limit, door)]

    def close(self) -> None:
        """Close the store (idempotent); the matcher stays open (close it yourself, or use both
        in one ``with``)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    @property
    def closed(self) -> bool:
        return self._store is None

    def __enter__(self) -> Gallery:
        self.store  # noqa: B018 - a closed gallery refuses the with block
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _details(decision: Decision, details: dict | None) -> dict:
    """The audit row's details: the caller's, plus the face box and the reason when there is one."""
    out = dict(details or {})
    if decision.face is not None:
        out["face"] = decision.face.to_dict()
    if decision.reason:
        out["reason"] = decision.reason
    return out


def matcher_layout(matcher: Matcher) -> Layout:
    """The templates ``matcher`` makes: sizes, embedder fingerprint and face cropping."""
    io = matcher.manifest.matcher.inputs
    embedder_file = graph_files(matcher.manifest, matcher.precision)["embedder"]
    return Layout(int(io["query_embedding"][1]), (int(io["query_local"][1]), int(io["query_local"][2])),
                  matcher.manifest.files[embedder_file].sha256,
                  matcher.detector.fingerprint() if matcher.detector is not None else "none")
