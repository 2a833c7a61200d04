"""The embedded gallery store: one SQLite file (WAL) per device, the file is the gallery.

- Enrollment writes the identity and all its templates in one ``BEGIN IMMEDIATE`` transaction: a
  process killed mid-enrollment leaves the file as it was.
- Template ids are ``AUTOINCREMENT``: never reused, so an id names one template forever and the
  search index can be reconciled with the file by ids alone.
- The search index (:class:`~.template_index.TemplateIndex`) lives in memory and follows the
  file: this connection's enrollments and removals update it directly; another process's commits
  (``PRAGMA data_version`` changes) are reconciled by template ids before the next search. FAISS
  indexes are saved next to the file (``door.db.index`` and ``door.db.index.json``, stamped with
  the gallery's id and embedder) when the gallery is closed, and loaded and reconciled at the next
  open, so a restart does not retrain an IVF index; a missing, torn or foreign index file is
  rebuilt from the templates.
- A read-only gallery (file or folder not writable, a read-only mount) is opened ``mode=ro`` and
  reads the write-ahead log, where the latest commits (revocations included) may still live:
  through the ``-shm`` index when it can be used, else by reading the log itself. Where SQLite
  cannot read the log consistently (a ``-wal`` without a usable ``-shm`` in a read-only folder)
  the gallery refuses to open: a door never decides on an older snapshot than the last commit.
  A gallery without a ``-wal`` on a read-only mount (closed cleanly: the file holds every commit)
  is read as it is (``immutable=1``) while it stays so: every read is redone through a fresh
  connection when a log appeared or the file changed meanwhile (:func:`_current`).
- Writes (enroll, revoke) refuse a read-only gallery and, before this connection's first write, a
  file that fails ``PRAGMA quick_check``: nothing is written into a damaged file.
- Closing a writable gallery checkpoints the log into the file (``wal_checkpoint(TRUNCATE)``), so
  the file alone holds every commit once the door's processes are closed; a backup while they run
  is :func:`.gallery_backup.backup_gallery` (SQLite's online backup).
- Every SQLite error of a store call surfaces as one :class:`GalleryError` line that names the file
  and the fix (:func:`_surfaced`), never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .store import GalleryError, Layout, Templates, as_bytes, enrollment_conflict
from .template_index import IndexSettings, TemplateIndex

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL, local BLOB NOT NULL, source TEXT, created REAL NOT NULL, marginal BLOB);
CREATE INDEX IF NOT EXISTS templates_identity ON templates(identity_id);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, claimed TEXT, decided TEXT,
    score REAL, threshold REAL, accepted INTEGER, evidence TEXT, details TEXT, door TEXT);
"""
TEMPLATE_COLUMNS = "id, identity_id, embedding, local, source, created, marginal"
BUSY_SECONDS = 30.0  # how long a writer waits for another process's transaction
SQLITE_MAGIC = b"SQLite format 3\x00"
ROWS = "SELECT t.id, i.name, t.embedding, t.local, t.marginal, t.source FROM templates t " \
       "JOIN identities i ON i.id = t.identity_id"
SQLITE_CANTOPEN = 14  # SQLite's primary result code for a file (or its -shm) that cannot be opened
CHECKPOINT_WAIT_MS = 2000  # how long closing waits for readers to let the log be truncated
log = logging.getLogger(__name__)


def wal_files(path: Path) -> tuple[Path, Path]:
    """The write-ahead log and its shared-memory index beside a gallery file."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def explain(where: str, exc: sqlite3.Error, read_only: bool = False) -> str:
    """One line for an SQLite error of the gallery ``where``: what happened and the fix."""
    said = " ".join(str(exc).split()) or type(exc).__name__
    text = said.lower()
    if "readonly" in text or "read-only" in text:
        return (f"{where} is read-only here ({said}): enroll and revoke need write access to the file and its "
                f"folder (SQLite writes {Path(where).name}-wal and -shm beside it); nothing was changed")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return (f"{where} is damaged ({said}); nothing was changed and no decision was made: restore it from a "
                f"backup (`edgedml gallery backup` makes one) or enroll into a new gallery")
    if "locked" in text or "busy" in text:
        return (f"{where} is locked by another process ({said}) for longer than {BUSY_SECONDS:.0f} s; nothing was "
                f"changed: retry when its transaction is over")
    if "full" in text:
        return f"{where}: the disk is full ({said}); nothing was changed: free some space and retry"
    if "unable to open" in text:
        wal, shm = wal_files(Path(where))
        if read_only and wal.exists() and wal.stat().st_size > 0:
            return (f"{where} is read-only and its write-ahead log {wal.name} cannot be read consistently (no "
                    f"usable {shm.name} beside it, and none can be made): deciding on the file alone could accept "
                    f"someone already revoked, so no decision was made. Make the folder writable, or put {wal.name} "
                    f"and {shm.name} back beside the file, or run `edgedml gallery backup` on a writable copy")
        return (f"{where} cannot be opened ({said}): check that the file and its folder exist and can be read "
                f"(and written, to enroll or revoke)")
    return f"{where}: SQLite error ({said}); nothing was changed"


def _surfaced(method):
    """Run a store call with every SQLite error turned into one GalleryError line (see :func:`explain`)."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise GalleryError(explain(self.where, exc, getattr(self, "read_only", False))) from exc

    return call


def open_read_only(path: Path) -> tuple[sqlite3.Connection, tuple | None]:
    """A connection that never writes ``path`` and never reads an older snapshot than its last
    commit, and the file's state when it is read without its log (else None).

    ``mode=ro`` reads the WAL (never ``immutable=1`` while a log holds anything: it ignores the log,
    revocations included). SQLite cannot open a WAL-mode file read-only when it can neither use nor
    make a -shm (a read-only folder or mount); then a file without a log (closed cleanly: the file
    holds every commit) is read immutable, to be watched with :func:`file_state` (see
    :func:`_current`), and one with a log is refused (see :func:`explain`)."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, isolation_level=None,
                         timeout=BUSY_SECONDS)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file, its log and -shm
        return db, None
    except sqlite3.OperationalError as exc:
        db.close()
        if getattr(exc, "sqlite_errorcode", SQLITE_CANTOPEN) & 0xFF != SQLITE_CANTOPEN:
            raise  # locked, damaged: never read the file alone then
        state = file_state(path) if path.is_file() else None
        if state is None:  # no file, or a log that cannot be read consistently
            raise
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False,
                           isolation_level=None), state


def file_state(path: Path) -> tuple | None:
    """The file's identity and last change, or None when a write-ahead log holding anything lies
    beside it (an empty one, as a checkpoint at close leaves it, holds no commit)."""
    wal = wal_files(path)[0]
    if wal.exists() and wal.stat().st_size > 0:
        return None
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


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


def _require_sqlite(path: Path) -> None:
    """Refuse a file that exists, is not empty and is not an SQLite database."""
    if path.is_dir():
        raise GalleryError(f"{path} is a folder; a gallery is one file: pass a path such as {path / 'door.db'}")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            if handle.read(16) != SQLITE_MAGIC:
                raise GalleryError(f"{path} is not an SQLite file, so not a gallery; nothing was changed. Pass a "
                                   f"gallery file, or a new path to create one")


class SQLiteStore:
    """``SQLiteStore(path, layout)``: open (and on first use create) the gallery file. With
    ``layout`` None, an existing gallery is opened as its meta records it (to revoke, list and
    read decisions; never created, never searched)."""

    def __init__(self, path: str | Path, layout: Layout | None, read_only: bool | None = None,
                 index: IndexSettings = IndexSettings()):
        self.path = Path(path)
        self.where = str(self.path)
        self.layout, self.index_settings = layout, index
        self._recorded = layout is None  # opened as the gallery records it: write no meta of its own
        self._lock = threading.RLock()
        self._index: TemplateIndex | None = None
        self._version: int | None = None
        self._index_changed = False
        _require_sqlite(self.path)
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
        self._version = None  # data_version belongs to a connection: the search index reconciles anew
        # _frozen: the file's state when it is read without its log (immutable), else None
        if self.read_only:
            self.db, self._frozen = open_read_only(self.path)
        else:
            self.db, self._frozen = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                                    timeout=BUSY_SECONDS), None
        try:
            self._open()
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        """Check (and on first use create or upgrade) the schema, then the embedder and cropping."""
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables - {"sqlite_sequence"} and not {"meta", "identities", "templates"} <= tables:
            raise GalleryError(f"{self.path} is an SQLite database but not an edgedml gallery (it has the tables "
                               f"{sorted(tables)[:5]}); nothing was changed. Pass a gallery file or a new path")
        if self.layout is None:
            self.layout = self._recorded_layout(tables)
        if not self.read_only:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            # one writer creates the schema: several processes opening a new gallery at once wait
            # for each other (busy timeout) instead of failing with "database is locked"
            with self._transaction():
                for statement in SCHEMA.split(";"):  # executescript would COMMIT the transaction
                    if statement.strip():
                        self.db.execute(statement)
                self._upgrade()
                if not self._recorded:  # a new gallery records what made its templates
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('embedder_sha256', ?)",
                                    (self.layout.embedder,))
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('gallery_id', ?)", (uuid.uuid4().hex,))
                    # a gallery from before detectors (templates, no row) holds whole-image templates
                    empty = self.db.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 0
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('detector', ?)",
                                    (self.layout.cropping if empty else "none",))
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        problem = self.layout.mismatch(str(self.path), meta.get("embedder_sha256", "?"), meta.get("detector"))
        if problem:
            raise GalleryError(problem)
        self._stamp = {"gallery_id": meta.get("gallery_id"), "embedder": self.layout.embedder}

    def _recorded_layout(self, tables: set[str]) -> Layout:
        """The layout the gallery's meta records, for a store opened without one (sizes unknown: 0)."""
        if "meta" not in tables:
            raise GalleryError(f"{self.path} holds no edgedml gallery yet; nothing was changed. Enroll into it to "
                               f"create one, or pass the gallery file")
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        return Layout(0, (0, 0), meta.get("embedder_sha256", "?"), meta.get("detector") or "none")

    def _upgrade(self) -> None:
        """Bring a gallery written by an earlier edgedml to this schema (inside the schema transaction)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(templates)")}
        if "marginal" not in columns:  # from before rollout bundles
            self.db.execute("ALTER TABLE templates ADD COLUMN marginal BLOB")
        if "door" not in {row[1] for row in self.db.execute("PRAGMA table_info(decisions)")}:
            self.db.execute("ALTER TABLE decisions ADD COLUMN door TEXT")
        sql = self.db.execute("SELECT sql FROM sqlite_master WHERE name='templates'").fetchone()[0]
        if "AUTOINCREMENT" not in sql.upper():  # ids could be reused: copy into the new table
            self.db.execute("ALTER TABLE templates RENAME TO templates_before")
            self.db.execute(SCHEMA.split(";")[2])
            self.db.execute(f"INSERT INTO templates ({TEMPLATE_COLUMNS}) "
                            f"SELECT {TEMPLATE_COLUMNS} FROM templates_before")
            self.db.execute("DROP TABLE templates_before")
            self.db.execute(SCHEMA.split(";")[3])

    def _transaction(self):
        store = self

        class Transaction:
            def __enter__(self):
                store.db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, value, traceback):
                if not kind:
                    store.db.execute("COMMIT")
                elif store.db.in_transaction:  # SQLite rolls back by itself on some errors (disk full, I/O)
                    store.db.execute("ROLLBACK")

        return Transaction()

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
            with self._transaction():  # BEGIN IMMEDIATE: the name's check and its insert are one write
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
            if self._index is not None:
                self._index.add(np.array(ids, np.int64), embedding)
                self._index_changed = True
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
            with self._transaction():
                self._check_intact(f"revoke {name!r}")
                ids = [row[0] for row in self.db.execute(
                    "SELECT t.id FROM templates t JOIN identities i ON i.id = t.identity_id WHERE i.name=?", (name,))]
                deleted = self.db.execute("DELETE FROM identities WHERE name=?", (name,)).rowcount
            if self._index is not None:
                self._index.remove(np.array(ids, np.int64))
                self._index_changed = True
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
            self._sync_index()
            ids = self._index.search(query, k)
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
            self._sync_index()
            return self._index.kind

    def _sync_index(self) -> None:
        """Make the search index hold exactly the file's templates (see the module doc); one read
        transaction, so ids and embeddings come from the same snapshot."""
        self.db.execute("BEGIN")
        try:
            self._reconcile()
        finally:
            self.db.execute("COMMIT")

    def _reconcile(self) -> None:
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if self._index is not None and version == self._version and not self._index.needs_rebuild():
            return
        ids = np.array([row[0] for row in self.db.execute("SELECT id FROM templates ORDER BY id")], np.int64)
        if self._index is None:
            self._index = TemplateIndex.load(self._index_file(), self._stamp, self.index_settings)
            if self._index is not None and self._index.dim != self.layout.embedding_size:
                self._index = None
        if self._index is None or self._index.settings.kind_for(len(ids)) != self._index.kind:
            self._index = TemplateIndex.build(ids, self._embeddings(ids), self.index_settings)
            self._index_changed = True
        else:
            have = self._index.ids()
            gone, new = np.setdiff1d(have, ids), np.setdiff1d(ids, have)
            self._index.remove(gone)
            if len(new):
                self._index.add(new, self._embeddings(new))
            self._index_changed |= bool(len(gone) or len(new))
            if self._index.needs_rebuild():  # an IVF index trained on a much smaller gallery
                self._index = TemplateIndex.build(ids, self._embeddings(ids), self.index_settings)
        self._version = version

    def _embeddings(self, ids: np.ndarray) -> np.ndarray:
        e = self.layout.embedding_size
        if len(ids) == 0:
            return np.zeros((0, e), np.float32)
        chunks = []
        lo, hi = int(ids.min()), int(ids.max())
        wanted = set(ids.tolist()) if len(ids) < hi - lo + 1 else None
        for tid, blob in self.db.execute("SELECT id, embedding FROM templates WHERE id BETWEEN ? AND ? ORDER BY id",
                                         (lo, hi)):
            if wanted is None or tid in wanted:
                chunks.append(blob)
        return np.frombuffer(b"".join(chunks), np.float32).reshape(-1, e)

    def _index_file(self) -> Path:
        return self.path.with_name(self.path.name + ".index")

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
            if (self._index is not None and self._index_changed and self._index.kind != "numpy"
                    and not self.read_only):
                try:
                    self._index.save(self._index_file(), self._stamp)
                except OSError as exc:  # a full disk costs a rebuild at the next open, nothing else
                    log.warning("edgedml: the search index of %s was not saved (%s)", self.path, exc)
            if not self.read_only:
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
