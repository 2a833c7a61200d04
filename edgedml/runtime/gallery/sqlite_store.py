"""The embedded gallery store: one SQLite file (WAL) per device, the file is the gallery.

- Enrollment writes the identity and all its templates in one ``BEGIN IMMEDIATE`` transaction: a
  process killed mid-enrollment leaves the file as it was. The tables, and the upgrade of files
  written by an earlier edgedml, are :mod:`.sqlite_schema`.
- 1:N search goes through an in-memory index that follows the file (:mod:`.sqlite_index`): this
  connection's enrollments and removals update it, other processes' commits are reconciled before
  the next search, and a FAISS index is saved beside the file at close.
- A read-only gallery (file or folder not writable, a read-only mount) is opened ``mode=ro`` and
  reads the write-ahead log, where the latest commits (revocations included) may still live:
  through the ``-shm`` index when it can be used, else by reading the log itself. Where SQLite
  cannot read the log consistently (a ``-wal`` without a usable ``-shm`` in a read-only folder)
  the gallery refuses to open: a door never decides on an older snapshot than the last commit
  (:func:`.sqlite_file.open_read_only`). A gallery without a ``-wal`` on a read-only mount (closed
  cleanly: the file holds every commit) is read as it is (``immutable=1``) while it stays so: every
  read is redone through a fresh connection when a log appeared or the file changed meanwhile
  (:func:`_current`).
- Writes (enroll, revoke) refuse a read-only gallery and, before this connection's first write, a
  file that fails ``PRAGMA quick_check``: nothing is written into a damaged file.
- Closing a writable gallery checkpoints the log into the file (``wal_checkpoint(TRUNCATE)``), so
  the file alone holds every commit once the door's processes are closed; a backup while they run
  is :func:`.backup.backup_gallery` (SQLite's online backup).
- Every SQLite error of a store call surfaces as one :class:`GalleryError` line that names the file
  and the fix (:func:`_surfaced`, :func:`.sqlite_file.explain`), never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .sqlite_file import BUSY_SECONDS, explain, file_state, open_read_only, require_sqlite, write_transaction
from .sqlite_index import FileIndex
from .sqlite_schema import open_schema
from .store import GalleryError, Layout, Templates, as_bytes, enrollment_conflict
from .template_index import IndexSettings, TemplateIndex

ROWS = "SELECT t.id, i.name, t.embedding, t.local, t.marginal, t.source FROM templates t " \
       "JOIN identities i ON i.id = t.identity_id"
CHECKPOINT_WAIT_MS = 2000  # how long closing waits for readers to let the log be truncated
log = logging.getLogger(__name__)


def _surfaced(method):
    """Run a store call with every SQLite error turned into one GalleryError line (see :func:`explain`)."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise GalleryError(explain(self.where, exc, getattr(self, "read_only", False))) from exc

    return call


def _current(method):
    """A read call of a gallery opened without its log (immutable): redone through a fresh
    connection when a log appeared beside the file or the file changed during the call, so no
    answer comes from an older snapshot than the file's last commit."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        for _ in range(3):
            result = method(self, *args, **kwargs)
            if self._frozen is None or self._frozen == file_state(self.path):
                return result
            with self._lock:
                self.db.close()
                self._connect()
        raise GalleryError(f"{self.path} kept changing while this read-only door read it; no decision was made: "
                           f"retry, or make the gallery's folder writable so SQLite can coordinate the readers")

    return call


class SQLiteStore:
    """``SQLiteStore(path, layout)``: open (and on first use create) the gallery file. With
    ``layout`` None, an existing gallery is opened as its meta records it (to revoke, list and
    read decisions; never created, never searched)."""

    def __init__(self, path: str | Path, layout: Layout | None, read_only: bool | None = None,
                 index: IndexSettings = IndexSettings()):
        self.path = Path(path)
        self.where = str(self.path)
        self.layout = layout
        self._recorded = layout is None  # opened as the gallery records it: write no meta of its own
        self._lock = threading.RLock()
        self._search = FileIndex(self.path, index)
        require_sqlite(self.path)
        if self._recorded and not self.path.is_file():
            raise GalleryError(f"{self.path} does not exist; nothing was changed. Pass an existing gallery file")
        if read_only is None:  # a door on a read-only mount still decides; it cannot log
            read_only = self.path.exists() and not (os.access(self.path, os.W_OK)
                                                    and os.access(self.path.parent, os.W_OK))
        self.read_only = read_only
        self._checked = False  # PRAGMA quick_check passed on this connection (before its first write)
        self._connect()

    @_surfaced
    def _connect(self) -> None:
        self._search.new_connection()
        # _frozen: the file's state when it is read without its log (immutable), else None
        if self.read_only:
            self.db, self._frozen = open_read_only(self.path)
        else:
            self.db, self._frozen = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                                    timeout=BUSY_SECONDS), None
        try:
            self.layout, self._stamp = open_schema(self.db, self.path, self.layout, writable=not self.read_only,
                                                   record=not self._recorded)
        except BaseException:
            self.db.close()
            raise

    def refuse_writes(self, what: str) -> None:
        if self.read_only:
            raise GalleryError(f"{self.path} is read-only (the file or its folder cannot be written, or "
                               f"read_only=True): cannot {what}; nothing was changed. Run it where the gallery is "
                               f"writable")

    def _check_intact(self, what: str) -> None:
        """Refuse to write into a file that fails ``PRAGMA quick_check`` (once per connection, inside
        its first write's transaction)."""
        if self._checked:
            return
        try:
            problems = [row[0] for row in self.db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as exc:  # a page too broken to check (a zeroed b-tree root)
            problems = [" ".join(str(exc).split())]
        if problems != ["ok"]:
            raise GalleryError(f"{self.path} is damaged (quick_check: {'; '.join(problems)[:200]}): cannot {what}; "
                               f"nothing was changed. Restore it from a backup (`edgedml gallery backup` makes one) "
                               f"or enroll into a new gallery")
        self._checked = True

    # --- identities and templates ----------------------------------------------------------

    @_surfaced
    def enroll(self, name: str, embedding: np.ndarray, local: np.ndarray, marginal: np.ndarray | None,
               sources: Sequence[str | None], add: bool = False) -> int:
        now = time.time()
        self.refuse_writes(f"enroll {name!r}")
        with self._lock:
            ids = []
            with write_transaction(self.db):  # BEGIN IMMEDIATE: the name's check and its insert are one write
                self._check_intact(f"enroll {name!r}")
                found = self.db.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()
                problem = enrollment_conflict(name, self.where, exists=found is not None, add=add)
                if problem:
                    raise GalleryError(problem)
                identity = found[0] if found else self.db.execute(
                    "INSERT INTO identities (name, created) VALUES (?, ?)", (name, now)).lastrowid
                for i in range(len(embedding)):
                    ids.append(self._insert_template(identity, embedding[i], local[i],
                                                     None if marginal is None else marginal[i], sources[i], now))
            self._search.added(np.array(ids, np.int64), embedding)
        return len(ids)

    def _insert_template(self, identity: int, embedding, local, marginal, source, now) -> int:
        cursor = self.db.execute("INSERT INTO templates (identity_id, embedding, local, marginal, source, created) "
                                 "VALUES (?,?,?,?,?,?)",
                                 (identity, as_bytes(embedding), as_bytes(local), as_bytes(marginal), source, now))
        return int(cursor.lastrowid)

    @_surfaced
    def remove(self, name: str) -> bool:
        self.refuse_writes(f"revoke {name!r}")
        with self._lock:
            with write_transaction(self.db):
                self._check_intact(f"revoke {name!r}")
                ids = [row[0] for row in self.db.execute(
                    "SELECT t.id FROM templates t JOIN identities i ON i.id = t.identity_id WHERE i.name=?", (name,))]
                deleted = self.db.execute("DELETE FROM identities WHERE name=?", (name,)).rowcount
            self._search.removed(np.array(ids, np.int64))
        return bool(deleted)

    @_surfaced
    @_current
    def identities(self) -> dict[str, int]:
        with self._lock:
            rows = self.db.execute("SELECT i.name, COUNT(t.id) FROM identities i LEFT JOIN templates t "
                                   "ON t.identity_id = i.id GROUP BY i.id ORDER BY i.name").fetchall()
        return dict(rows)

    @_surfaced
    @_current
    def sources(self, name: str) -> set[str]:
        with self._lock:
            rows = self.db.execute("SELECT t.source FROM templates t JOIN identities i ON i.id = t.identity_id "
                                   "WHERE i.name=? AND t.source IS NOT NULL", (name,)).fetchall()
        return {row[0] for row in rows}

    @_surfaced
    @_current
    def templates_of(self, name: str) -> Templates | None:
        with self._lock:
            rows = self.db.execute(f"{ROWS} WHERE i.name=? ORDER BY t.id", (name,)).fetchall()
        return Templates.from_rows(rows, self.layout) if rows else None

    # --- search -----------------------------------------------------------------------------

    @_surfaced
    @_current
    def nearest(self, query: np.ndarray, k: int) -> Templates:
        """The k templates nearest ``query`` (E,) by global cosine, best first."""
        with self._lock:
            ids = self._synced_index().search(query, k)
            rows = self._fetch(ids)
        found = {row[0]: row for row in rows}  # another process may have removed some meanwhile
        return Templates.from_rows([found[i] for i in ids.tolist() if i in found], self.layout)

    def _fetch(self, ids: np.ndarray) -> list[tuple]:
        ids = ids.tolist()
        rows = []
        for start in range(0, len(ids), 500):  # below SQLite's bound on parameters
            part = ids[start:start + 500]
            rows += self.db.execute(f"{ROWS} WHERE t.id IN ({','.join('?' * len(part))})", part).fetchall()
        return rows

    @_surfaced
    @_current
    def index_kind(self) -> str:
        with self._lock:
            return self._synced_index().kind

    def _synced_index(self) -> TemplateIndex:
        return self._search.synced(self.db, self._stamp, self.layout.embedding_size)

    # --- audit ------------------------------------------------------------------------------

    def log(self, row: dict) -> int | None:
        if self.read_only:
            log.warning("edgedml: %s is read-only: the %s decision was not logged", self.path, row["kind"])
            return None
        try:
            with self._lock:
                cursor = self.db.execute(
                    f"INSERT INTO decisions ({', '.join(row)}) VALUES ({','.join('?' * len(row))})",
                    [json.dumps(v) if isinstance(v, dict) else v for v in row.values()])
        except sqlite3.Error as exc:  # read-only, locked past the timeout, disk full
            log.warning("edgedml: the %s decision was not logged in %s (%s)", row["kind"], self.path, exc)
            return None
        return int(cursor.lastrowid)

    @_surfaced
    @_current
    def decisions(self, limit: int, door: str | None = None) -> list[dict]:
        with self._lock:
            cursor = self.db.execute(f"SELECT * FROM decisions {'WHERE door = ? ' if door else ''}ORDER BY id DESC "
                                     f"LIMIT ?", (door, limit) if door else (limit,))
            columns = [c[0] for c in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]

    @_surfaced
    def close(self) -> None:
        with self._lock:
            if not self.read_only:
                self._search.save(self._stamp)
                self._checkpoint()
            self.db.close()

    def _checkpoint(self) -> None:
        """Copy the log's commits into the file and empty the log, so the file alone is the gallery
        (best effort: readers of an older snapshot may keep part of the log; a close never fails for it)."""
        try:
            if self.db.in_transaction:
                return
            self.db.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            busy, pages, done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy or pages != done:
                log.info("edgedml: %s: %s of %s log pages copied into the file at close (others are reading)",
                         self.path, done, pages)
        except sqlite3.Error as exc:
            log.warning("edgedml: the write-ahead log of %s was not checkpointed at close (%s)", self.path, exc)
