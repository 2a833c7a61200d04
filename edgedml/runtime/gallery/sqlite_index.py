"""The search index of a gallery file: a :class:`~.template_index.TemplateIndex` that follows it.

The index lives in memory and holds exactly the file's templates: the store's own enrollments and
removals update it directly (:meth:`FileIndex.added`, :meth:`FileIndex.removed`); another
process's commits (``PRAGMA data_version`` changes) are reconciled by template ids before the next
search (:meth:`FileIndex.synced`), which ids never reused (``AUTOINCREMENT``) make exact. FAISS
indexes are saved next to the file (``door.db.index`` and ``door.db.index.json``, stamped with the
gallery's id and embedder) when the gallery is closed, and loaded and reconciled at the next open,
so a restart does not retrain an IVF index; a missing, torn or foreign index file is rebuilt from
the templates.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np

from .template_index import IndexSettings, TemplateIndex

log = logging.getLogger(__name__)


class FileIndex:
    """``FileIndex(path, settings)``: the search index of the gallery file ``path``, built with
    ``settings`` at the first search."""

    def __init__(self, path: Path, settings: IndexSettings):
        self.path, self.settings = path, settings
        self.file = path.with_name(path.name + ".index")
        self.index: TemplateIndex | None = None
        self.version: int | None = None  # the connection's PRAGMA data_version the index last matched
        self.changed = False  # differs from the saved index file

    def new_connection(self) -> None:
        """data_version belongs to a connection: the next search reconciles anew."""
        self.version = None

    def added(self, ids: np.ndarray, embedding: np.ndarray) -> None:
        """This connection committed templates ``ids`` with their global ``embedding`` (N, E)."""
        if self.index is not None:
            self.index.add(ids, embedding)
            self.changed = True

    def removed(self, ids: np.ndarray) -> None:
        """This connection committed the removal of templates ``ids``."""
        if self.index is not None:
            self.index.remove(ids)
            self.changed = True

    def synced(self, db: sqlite3.Connection, stamp: dict, embedding_size: int) -> TemplateIndex:
        """The index, made to hold exactly the file's templates (see the module doc); one read
        transaction, so ids and embeddings come from the same snapshot."""
        db.execute("BEGIN")
        try:
            self._reconcile(db, stamp, embedding_size)
        finally:
            db.execute("COMMIT")
        return self.index

    def _reconcile(self, db: sqlite3.Connection, stamp: dict, embedding_size: int) -> None:
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if self.index is not None and version == self.version and not self.index.needs_rebuild():
            return
        ids = np.array([row[0] for row in db.execute("SELECT id FROM templates ORDER BY id")], np.int64)
        if self.index is None:
            self.index = TemplateIndex.load(self.file, stamp, self.settings)
            if self.index is not None and self.index.dim != embedding_size:
                self.index = None
        if self.index is None or self.index.settings.kind_for(len(ids)) != self.index.kind:
            self.index = TemplateIndex.build(ids, embeddings(db, ids, embedding_size), self.settings)
            self.changed = True
        else:
            have = self.index.ids()
            gone, new = np.setdiff1d(have, ids), np.setdiff1d(ids, have)
            self.index.remove(gone)
            if len(new):
                self.index.add(new, embeddings(db, new, embedding_size))
            self.changed |= bool(len(gone) or len(new))
            if self.index.needs_rebuild():  # an IVF index trained on a much smaller gallery
                self.index = TemplateIndex.build(ids, embeddings(db, ids, embedding_size), self.settings)
        self.version = version

    def save(self, stamp: dict) -> None:
        """Save a changed FAISS index beside the file (a full disk costs a rebuild at the next open,
        nothing else); the exact numpy index is rebuilt at each open instead."""
        if self.index is None or not self.changed or self.index.kind == "numpy":
            return
        try:
            self.index.save(self.file, stamp)
        except OSError as exc:
            log.warning("edgedml: the search index of %s was not saved (%s)", self.path, exc)


def embeddings(db: sqlite3.Connection, ids: np.ndarray, size: int) -> np.ndarray:
    """The global embeddings (N, ``size``) of the templates ``ids`` (ascending), in one range scan."""
    if len(ids) == 0:
        return np.zeros((0, size), np.float32)
    chunks = []
    lo, hi = int(ids.min()), int(ids.max())
    wanted = set(ids.tolist()) if len(ids) < hi - lo + 1 else None
    for tid, blob in db.execute("SELECT id, embedding FROM templates WHERE id BETWEEN ? AND ? ORDER BY id",
                                (lo, hi)):
        if wanted is None or tid in wanted:
            chunks.append(blob)
    return np.frombuffer(b"".join(chunks), np.float32).reshape(-1, size)
