"""A gallery file's backup: one consistent file, whatever its write-ahead log holds.

In WAL mode the latest commits (revocations included) may live in ``door.db-wal`` until a
checkpoint, so copying ``door.db`` alone can bring back someone already revoked.
:func:`backup_gallery` copies through SQLite's online backup API in one read transaction: the
copy holds every commit up to its start, even while doors hold the gallery open. It never writes
to the source (opened ``mode=ro``), writes a temporary file beside the target, switches it to a
self-contained rollback journal, checks it with ``PRAGMA integrity_check`` and only then renames
it into place. An existing target is replaced only with ``overwrite`` and only when it is itself
an edgedml gallery (an earlier backup); a user's other file is never replaced.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from .sqlite_file import SQLITE_MAGIC, explain, file_state, open_read_only
from .sqlite_schema import GALLERY_TABLES, tables_of
from .store import GalleryError, is_url


@dataclass(frozen=True)
class Backup:
    """What a backup holds: its file, identities, templates and decisions."""

    path: Path
    identities: int
    templates: int
    decisions: int


def backup_gallery(source: str | Path, target: str | Path, overwrite: bool = False) -> Backup:
    """Copy the gallery file ``source`` into ``target`` as one consistent file (see the module doc)."""
    if is_url(source):
        raise GalleryError("a fleet gallery (postgresql://…) lives in PostgreSQL: back it up with PostgreSQL's tools "
                           "(pg_dump --format=custom, or your server's snapshots); `edgedml gallery backup` copies "
                           "gallery files")
    source, target = Path(source), Path(target)
    _require_source(source)
    _require_target(source, target, overwrite)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _copy(source, partial)
        found = _check(partial, target)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        _put(partial, target, overwrite)
        _sync_folder(target.parent)
    except sqlite3.Error as exc:
        raise GalleryError(explain(str(source), exc, read_only=True)) from exc
    except OSError as exc:
        raise GalleryError(f"the backup of {source} could not be written to {target} ({exc.strerror or exc}); "
                           f"nothing was replaced: check the folder's space and permissions") from exc
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, *found)


def _require_source(source: Path) -> None:
    if not source.is_file():
        raise GalleryError(f"{source} is not a file; pass a gallery file")
    with open(source, "rb") as handle:
        if handle.read(16) != SQLITE_MAGIC:
            raise GalleryError(f"{source} is not an SQLite file, so not a gallery; nothing was copied: pass a "
                               f"gallery file")


def _require_target(source: Path, target: Path, overwrite: bool) -> None:
    if not target.parent.is_dir():
        raise GalleryError(f"the folder {target.parent} does not exist; create it (or mount the backup disk) first")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise GalleryError(f"{target} exists and is not a plain file; pass a new file path for the backup")
    if not target.exists():
        return
    if target.samefile(source):
        raise GalleryError(f"{target} is the gallery itself; pass another path for the backup")
    if not overwrite:
        raise GalleryError(f"{target} exists; pass a new path, or --overwrite (overwrite=True) to replace an earlier "
                           f"backup (replaced only once the new one is complete and checked)")
    if not _is_gallery(target):
        raise GalleryError(f"{target} exists and is not an edgedml gallery: --overwrite replaces only an earlier "
                           f"backup, never another file; pass a new path")


def _is_gallery(path: Path) -> bool:
    with open(path, "rb") as handle:
        if handle.read(16) != SQLITE_MAGIC:
            return False
    try:
        with _read_only(path) as db:
            return GALLERY_TABLES <= tables_of(db)
    except sqlite3.Error:
        return False


def _read_only(path: Path) -> _Closing:
    """A connection that never writes ``path`` and reads its write-ahead log (:func:`.sqlite_file.open_read_only`)."""
    return _Closing(*open_read_only(path))


class _Closing:
    """``with``: the connection, closed at the end (sqlite3's own ``with`` only commits)."""

    def __init__(self, db: sqlite3.Connection, frozen: tuple | None = None):
        self.db, self.frozen = db, frozen

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()


def _copy(source: Path, partial: Path) -> None:
    reading = _read_only(source)
    with reading as db:
        tables = tables_of(db)
        if not GALLERY_TABLES <= tables:
            raise GalleryError(f"{source} is an SQLite database but not an edgedml gallery (it has the tables "
                               f"{sorted(tables)[:5]}); nothing was copied")
        copy = sqlite3.connect(str(partial), isolation_level=None)
        try:
            db.backup(copy)  # all pages in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # self-contained: no -wal to carry along
        finally:
            copy.close()
    if reading.frozen is not None and file_state(source) != reading.frozen:  # read without its log
        raise GalleryError(f"{source} changed while it was copied (its folder is read-only here, so SQLite could "
                           f"not coordinate the copy with the writer); nothing was written: retry")


def _check(partial: Path, target: Path) -> tuple[int, int, int]:
    """(identities, templates, decisions) of the copy, once ``PRAGMA integrity_check`` passed."""
    with _Closing(sqlite3.connect(f"{partial.resolve().as_uri()}?mode=ro", uri=True)) as db:
        try:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check(3)")]
        except sqlite3.DatabaseError as exc:  # a page too broken to check (a zeroed b-tree root)
            problems = [" ".join(str(exc).split())]
        if problems != ["ok"]:
            raise GalleryError(f"the backup failed its integrity check ({'; '.join(problems)[:200]}); {target} was "
                               f"not written: check the gallery (it may be damaged) and the backup disk")
        tables = tables_of(db)
        return tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] if table in tables else 0
                     for table in ("identities", "templates", "decisions"))


def _put(partial: Path, target: Path, overwrite: bool) -> None:
    """Rename the checked copy into place; without ``overwrite``, never over a file that appeared
    meanwhile (a hard link fails if the name exists; file systems without links are checked first)."""
    if overwrite:
        os.replace(partial, target)
        return
    try:
        os.link(partial, target)
    except FileExistsError:
        raise GalleryError(f"{target} appeared during the backup; nothing was replaced: pass a new path") from None
    except OSError:  # no hard links here (FAT, some network file systems)
        if target.exists():
            raise GalleryError(f"{target} appeared during the backup; nothing was replaced: pass a new path") from None
        os.replace(partial, target)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
