"""The gallery file as SQLite sees it: recognising it, opening it read-only, naming its errors.

A gallery is one SQLite file in WAL mode, with its write-ahead log (``door.db-wal``) and the log's
shared-memory index (``door.db-shm``) beside it (:func:`wal_files`). :func:`require_sqlite`
refuses a folder or a file that is not SQLite (by its 16-byte magic). :func:`open_read_only` opens
a file that must not be written and never reads an older snapshot than its last commit; a file
read without its log is watched with :func:`file_state`. :func:`explain` turns an SQLite error
into one line that names the file and the fix, and :func:`write_transaction` is one writer's
``BEGIN IMMEDIATE`` transaction. The store (:mod:`.sqlite_store`) and the backup
(:mod:`.backup`) open files through these.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .store import GalleryError

BUSY_SECONDS = 30.0  # how long a writer waits for another process's transaction
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_CANTOPEN = 14  # SQLite's primary result code for a file (or its -shm) that cannot be opened


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


def open_read_only(path: Path) -> tuple[sqlite3.Connection, tuple | None]:
    """A connection that never writes ``path`` and never reads an older snapshot than its last
    commit, and the file's state when it is read without its log (else None).

    ``mode=ro`` reads the WAL (never ``immutable=1`` while a log holds anything: it ignores the log,
    revocations included). SQLite cannot open a WAL-mode file read-only when it can neither use nor
    make a -shm (a read-only folder or mount); then a file without a log (closed cleanly: the file
    holds every commit) is read immutable, to be watched with :func:`file_state` (a read is redone
    when the file changed meanwhile), and one with a log is refused (see :func:`explain`)."""
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


def require_sqlite(path: Path) -> None:
    """Refuse a file that exists, is not empty and is not an SQLite database."""
    if path.is_dir():
        raise GalleryError(f"{path} is a folder; a gallery is one file: pass a path such as {path / 'door.db'}")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            if handle.read(16) != SQLITE_MAGIC:
                raise GalleryError(f"{path} is not an SQLite file, so not a gallery; nothing was changed. Pass a "
                                   f"gallery file, or a new path to create one")


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One writer's transaction (``BEGIN IMMEDIATE``: other writers wait for it, up to the busy
    timeout), committed when the block ends and rolled back when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite rolls back by itself on some errors (disk full, I/O)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
