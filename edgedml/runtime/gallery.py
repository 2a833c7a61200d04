"""A gallery of enrolled identities for access control, in SQLite (the file is the gallery).

- ``enroll(name, images)`` embeds first, then writes the identity and all its templates in one
  transaction: a process killed mid-enrollment leaves the gallery as it was before.
- ``verify(image, name)`` (1:1): the query against that identity's templates with the batched
  matcher; the best multi-scale score decides.
- ``identify(image, top_k)`` (1:N): global cosine over every enrolled template (numpy, or FAISS
  when installed and the gallery holds 10,000 templates or more), then the matcher re-ranks the best K templates; identities ranked by their
  best multi-scale score.
- With a detector (the matcher's): enrollment photos must show a face (the largest is enrolled);
  ``verify`` and ``identify`` decide on the largest face of the frame, and a frame without a face
  is rejected with ``reason="no face found"`` and no score; ``identify_faces`` decides on every
  face of the frame, largest first.
- ``log_decision`` records a decision with its score, threshold, time and evidence picture, so
  every access decision can be explained afterwards.

The gallery remembers which embedder made its templates (sha256 of ``embedder.onnx``) and refuses
a Matcher with another one: templates from different models are not comparable.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EdgeDMLError
from .backends import graph_files
from .detection import Face
from .image import ImageInput
from .matcher import Features, Matcher
from .thresholds import check_threshold

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY, identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL, local BLOB NOT NULL, source TEXT, created REAL NOT NULL, marginal BLOB);
CREATE INDEX IF NOT EXISTS templates_identity ON templates(identity_id);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, claimed TEXT, decided TEXT,
    score REAL, threshold REAL, accepted INTEGER, evidence TEXT, details TEXT);
"""


class GalleryError(EdgeDMLError):
    """The gallery cannot do what was asked (unknown identity, another model, no threshold)."""


BUSY_SECONDS = 30.0  # how long a writer waits for another process's transaction
SQLITE_MAGIC = b"SQLite format 3\x00"
log = logging.getLogger("edgedml")


def _require_sqlite(path: Path) -> None:
    """Refuse a file that exists, is not empty and is not an SQLite database."""
    if path.is_dir():
        raise GalleryError(f"{path} is a folder; a gallery is one file: pass a path such as {path / 'door.db'}")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            if handle.read(16) != SQLITE_MAGIC:
                raise GalleryError(f"{path} is not an SQLite file, so not a gallery; nothing was changed. Pass a "
                                   f"gallery file, or a new path to create one")


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
    """``Gallery(path, matcher)``; ``threshold`` defaults to the matcher's (calibrated) one."""

    def __init__(self, path: str | Path, matcher: Matcher, threshold: float | None = None,
                 read_only: bool | None = None):
        self.path = Path(path)
        self.matcher = matcher
        self.threshold = matcher.threshold if threshold is None else check_threshold(threshold, matcher.manifest)
        self._lock = threading.Lock()
        self._cache: tuple | None = None
        self._index = None
        self._sources: list[str | None] = []
        self._marginal: np.ndarray | None = None
        _require_sqlite(self.path)
        if read_only is None:  # a door on a read-only mount still decides; it cannot log
            read_only = self.path.exists() and not (os.access(self.path, os.W_OK)
                                                    and os.access(self.path.parent, os.W_OK))
        self.read_only = read_only
        try:
            if read_only:
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                           check_same_thread=False, isolation_level=None)
            else:
                self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                           timeout=BUSY_SECONDS)
            self._open(matcher)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path} cannot be opened as a gallery ({exc}); pass an edgedml gallery "
                               f"file, or a new path to create one") from exc

    def _open(self, matcher: Matcher) -> None:
        """Check (and on first use create) the schema and the embedder fingerprint."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and not {"meta", "identities", "templates"} <= tables:
            raise GalleryError(f"{self.path} is an SQLite database but not an edgedml gallery (it has the tables "
                               f"{sorted(tables)[:5]}); nothing was changed. Pass a gallery file or a new path")
        # templates are only comparable when made by the same embedder graph (precision included)
        embedder_file = graph_files(matcher.manifest, matcher.precision)["embedder"]
        fingerprint = matcher.manifest.files[embedder_file].sha256
        cropping = matcher.detector.fingerprint() if matcher.detector is not None else "none"
        if not self.read_only:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # one writer creates the schema: several processes opening a new gallery at once wait
            # for each other (busy timeout) instead of failing with "database is locked"
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):  # executescript would COMMIT the transaction
                    if statement.strip():
                        self._db.execute(statement)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(templates)")}
                if "marginal" not in columns:  # a gallery from before rollout bundles
                    self._db.execute("ALTER TABLE templates ADD COLUMN marginal BLOB")
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('embedder_sha256', ?)", (fingerprint,))
                # a gallery from before detectors (templates, no row) holds whole-image templates
                empty = self._db.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 0
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('detector', ?)", (cropping if empty else "none",))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        row = self._db.execute("SELECT value FROM meta WHERE key='embedder_sha256'").fetchone()
        if row is None or row[0] != fingerprint:
            raise GalleryError(f"{self.path} was enrolled with another model (embedder sha256 "
                               f"{(row or ['?'])[0][:12]}…); use the bundle it was made with, or enroll into a new "
                               f"gallery file")
        # and only when cut from the frames the same way: whole images, or one detector's face crops
        row = self._db.execute("SELECT value FROM meta WHERE key='detector'").fetchone()
        enrolled = row[0] if row else "none"
        if enrolled != cropping:
            raise GalleryError(f"{self.path} was enrolled with detector {enrolled.split(':')[0]!r} ({enrolled}) and this "
                               f"matcher uses {cropping.split(':')[0]!r} ({cropping}): templates and queries would be cut "
                               f"differently. Use the same detector and settings (Matcher(..., detector=...), "
                               f"--detector), or enroll into a new gallery file")

    # --- enrollment -------------------------------------------------------------------------

    def enroll(self, name: str, images: Sequence[ImageInput], sources: Sequence[str] | None = None) -> int:
        """Add ``name`` with one template per image (all or nothing); returns the template count.
        Enrolling an existing name adds templates to it."""
        if not name or not name.strip():
            raise GalleryError("an identity needs a non-empty name")
        if not images:
            raise GalleryError(f"enrolling {name!r} needs at least one image")
        features = self.matcher.embed(list(images))  # before the transaction: slow, may fail
        sources = list(sources) if sources is not None else [str(i) if isinstance(i, (str, Path)) else None
                                                              for i in images]
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT OR IGNORE INTO identities (name, created) VALUES (?, ?)", (name, now))
                identity = self._db.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()[0]
                for i in range(len(features)):
                    marginal = None if features.marginal is None else features.marginal[i]
                    self._insert_template(identity, features.embedding[i], features.local[i], marginal, sources[i], now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._cache = None
        return len(features)

    def _insert_template(self, identity: int, embedding: np.ndarray, local: np.ndarray, marginal, source,
                         now) -> None:
        self._db.execute("INSERT INTO templates (identity_id, embedding, local, marginal, source, created) "
                         "VALUES (?,?,?,?,?,?)",
                         (identity, np.ascontiguousarray(embedding, np.float32).tobytes(),
                          np.ascontiguousarray(local, np.float32).tobytes(),
                          None if marginal is None else np.ascontiguousarray(marginal, np.float32).tobytes(),
                          source, now))

    def remove(self, name: str) -> bool:
        """Delete an identity and its templates; False if it was not enrolled."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM identities WHERE name=?", (name,)).rowcount
            self._cache = None
        return bool(deleted)

    def sources(self, name: str) -> set[str]:
        """The image paths ``name``'s templates were enrolled from (those given as files)."""
        rows = self._db.execute("SELECT t.source FROM templates t JOIN identities i ON i.id = t.identity_id "
                                "WHERE i.name=? AND t.source IS NOT NULL", (name,)).fetchall()
        return {row[0] for row in rows}

    def identities(self) -> dict[str, int]:
        """{name: number of templates}, sorted by name."""
        rows = self._db.execute("SELECT i.name, COUNT(t.id) FROM identities i LEFT JOIN templates t "
                                "ON t.identity_id = i.id GROUP BY i.id ORDER BY i.name").fetchall()
        return dict(rows)

    # --- matching ---------------------------------------------------------------------------

    def _templates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(embeddings (N, E), local (N, R, D), identity index per template (N,), names), cached
        until the gallery changes (with a FAISS index for large galleries)."""
        with self._lock:
            if self._cache is None:
                rows = self._db.execute("SELECT t.identity_id, i.name, t.embedding, t.local, t.source, t.marginal "
                                        "FROM templates t JOIN identities i ON i.id = t.identity_id "
                                        "ORDER BY t.id").fetchall()
                io = self.matcher.manifest.matcher.inputs
                r, d, e = io["query_local"][1], io["query_local"][2], io["query_embedding"][1]
                names = sorted({row[1] for row in rows})
                index = {n: i for i, n in enumerate(names)}
                emb = np.frombuffer(b"".join(row[2] for row in rows), np.float32).reshape(-1, e)
                local = np.frombuffer(b"".join(row[3] for row in rows), np.float32).reshape(-1, r, d)
                owner = np.array([index[row[1]] for row in rows], np.int64)
                self._sources = [row[4] for row in rows]
                self._marginal = (np.frombuffer(b"".join(row[5] for row in rows), np.float32).reshape(-1, r)
                                  if rows and all(row[5] is not None for row in rows) else None)
                self._cache = (emb, local, owner, names)
                self._index = faiss_index(emb)
            return self._cache

    def _candidates(self, rows: np.ndarray) -> Features:
        """The templates at ``rows`` as matcher candidates (with their marginals, when stored)."""
        emb, local, _, _ = self._templates()
        return Features(emb[rows], local[rows], None, None if self._marginal is None else self._marginal[rows])

    def _require_threshold(self, threshold: float | None) -> float:
        threshold = self.threshold if threshold is None else check_threshold(threshold, self.matcher.manifest)
        if threshold is None:
            raise GalleryError("no decision threshold: calibrate the bundle (`edgedml calibrate`) or pass one")
        return threshold

    def _query(self, image: ImageInput | Features) -> tuple[Features | None, Face | None]:
        """The features to decide on (the largest face's, with a detector) and that face;
        (None, None) when the detector finds no face."""
        if isinstance(image, Features):
            return image, None
        if self.matcher.detector is None:
            return self.matcher.embed(image), None
        features, views = self.matcher.embed_faces(image, limit=1)  # the largest face decides
        return (features[0], views[0].face) if views else (None, None)

    def verify(self, image: ImageInput | Features, name: str, threshold: float | None = None) -> Decision:
        """1:1: is ``image`` the enrolled ``name``? (Rejected with a reason when no face is found.)"""
        threshold = self._require_threshold(threshold)
        emb, local, owner, names = self._templates()
        if name not in names:
            raise GalleryError(f"{name!r} is not enrolled in {self.path}; enrolled: {len(names)} identities")
        rows = np.flatnonzero(owner == names.index(name))
        query, face = self._query(image)
        if query is None:
            return self.no_face(threshold, name)
        out = self.matcher.match(query, self._candidates(rows))
        best = int(np.argmax(out["multiscale"]))
        score = float(out["multiscale"][best])
        candidate = Candidate(name, score, score - float(out["structural"][best]), self._sources[rows[best]])
        return Decision(score >= threshold, name, score, threshold, (candidate,), face=face)

    def identify(self, image: ImageInput | Features, top_k: int = 5, rerank: int | None = None,
                 threshold: float | None = None) -> Decision:
        """1:N: the enrolled identities most like ``image`` (its largest face, with a detector),
        best first; accepted when the best scores at least the threshold. No face: rejected with
        ``reason="no face found"``."""
        threshold = self._identify_checks(top_k, threshold)
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
        threshold = self._identify_checks(top_k, threshold)
        features, views = self.matcher.embed_faces(image)
        return [self._identify(features[i], views[i].face, top_k, rerank, threshold) for i in range(len(views))]

    def _identify_checks(self, top_k, threshold) -> float:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a whole number ≥ 1, got {top_k!r}")
        threshold = self._require_threshold(threshold)
        if len(self._templates()[0]) == 0:
            raise GalleryError(f"{self.path} has no enrolled identities; enroll some first")
        return threshold

    def _identify(self, query: Features, face: Face | None, top_k: int, rerank: int | None,
                  threshold: float) -> Decision:
        emb, local, owner, names = self._templates()
        k = min(rerank or self.matcher.manifest.rerank_k, len(emb))
        top = top_by_cosine(query.embedding[0], emb, k, self._index)
        out = self.matcher.match(query, self._candidates(top))
        best: dict[int, Candidate] = {}
        for j, t in enumerate(top):
            score = float(out["multiscale"][j])
            who = int(owner[t])
            if who not in best or score > best[who].score:
                best[who] = Candidate(names[who], score, score - float(out["structural"][j]), self._sources[t])
        ranked = tuple(sorted(best.values(), key=lambda c: -c.score)[:top_k])
        return Decision(ranked[0].score >= threshold, ranked[0].name, ranked[0].score, threshold, ranked, face=face)

    # --- audit ------------------------------------------------------------------------------

    def log_decision(self, kind: str, decision: Decision, claimed: str | None = None,
                     evidence: str | None = None, details: dict | None = None) -> int | None:
        """Record a decision (kind: "verify" or "identify") with the path of its evidence picture;
        returns its row id. A gallery that cannot be written (read-only file or folder, full disk)
        does not stop the door: the entry is not recorded, a one-line warning says so on the
        "edgedml" logger, and None is returned."""
        if self.read_only:
            log.warning("edgedml: %s is read-only: the %s decision was not logged", self.path, kind)
            return None
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT INTO decisions (time, kind, claimed, decided, score, threshold, accepted, evidence, "
                    "details) VALUES (?,?,?,?,?,?,?,?,?)",
                    (time.time(), kind, claimed, decision.name, decision.score, decision.threshold,
                     int(decision.accepted), evidence, json.dumps(_details(decision, details))))
        except sqlite3.DatabaseError as exc:  # read-only, locked past the timeout, disk full
            log.warning("edgedml: the %s decision was not logged in %s (%s)", kind, self.path, exc)
            return None
        return int(cursor.lastrowid)

    def decisions(self, limit: int = 100) -> list[dict]:
        """The latest logged decisions, newest first."""
        cursor = self._db.execute("SELECT * FROM decisions ORDER BY id DESC LIMIT ?", (limit,))
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Gallery":
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


FAISS_MIN_TEMPLATES = 10_000  # below this a numpy matrix product is as fast as an index


def faiss_index(embeddings: np.ndarray):
    """An exact inner-product FAISS index of ``embeddings`` (N, E), or None without FAISS or for
    small galleries."""
    if len(embeddings) < FAISS_MIN_TEMPLATES:
        return None
    try:
        import faiss
    except ImportError:
        return None
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, np.float32))
    return index


def top_by_cosine(query: np.ndarray, embeddings: np.ndarray, k: int, index=None) -> np.ndarray:
    """Indices of the k rows of ``embeddings`` (N, E) most similar to ``query`` (E,), best first;
    through ``index`` (from :func:`faiss_index`) when given."""
    k = min(k, len(embeddings))
    if index is not None:
        return index.search(np.ascontiguousarray(query[None], np.float32), k)[1][0]
    scores = embeddings @ query
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]
