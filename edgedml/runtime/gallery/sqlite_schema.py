"""The gallery file's tables, their creation on first use, and the upgrade of older files.

``meta`` records what made the templates (the embedder's sha256, the face cropping) and the
gallery's id, which stamps its saved search index; ``identities`` and ``templates`` hold the
enrolled people, template ids ``AUTOINCREMENT`` (never reused, so an id names one template
forever); ``decisions`` is the door's audit log. :func:`open_schema` checks the tables of a file
being opened, creates them in a writable one (one writer at a time, so several processes opening a
new gallery at once wait for each other instead of failing with "database is locked"), brings a
file written by an earlier edgedml to this schema (:func:`upgrade`) and refuses a matcher whose
embedder or face cropping differs from the one the templates were made with. A file whose tables
(:func:`tables_of`) include :data:`GALLERY_TABLES` is a gallery (the backup checks so too).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from .sqlite_file import write_transaction
from .store import GalleryError, Layout

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
GALLERY_TABLES = {"meta", "identities", "templates"}


def open_schema(db: sqlite3.Connection, path: Path, layout: Layout | None, writable: bool,
                record: bool) -> tuple[Layout, dict]:
    """Check (and, ``writable``, on first use create or upgrade) the tables of the gallery at
    ``path``, then the embedder and cropping its templates were made with. With ``record``, a new
    gallery's meta records what made its templates. Returns the layout (the one the meta records
    when ``layout`` is None) and the stamp of the gallery's saved search index."""
    tables = tables_of(db)
    if tables - {"sqlite_sequence"} and not GALLERY_TABLES <= tables:
        raise GalleryError(f"{path} is an SQLite database but not an edgedml gallery (it has the tables "
                           f"{sorted(tables)[:5]}); nothing was changed. Pass a gallery file or a new path")
    if layout is None:
        layout = recorded_layout(db, path, tables)
    if writable:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        with write_transaction(db):
            create(db, layout if record else None)
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    problem = layout.mismatch(str(path), meta.get("embedder_sha256", "?"), meta.get("detector"))
    if problem:
        raise GalleryError(problem)
    return layout, {"gallery_id": meta.get("gallery_id"), "embedder": layout.embedder}


def tables_of(db: sqlite3.Connection) -> set[str]:
    """The names of the database's tables (SQLite's own ``sqlite_sequence`` included)."""
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def recorded_layout(db: sqlite3.Connection, path: Path, tables: set[str]) -> Layout:
    """The layout the gallery's meta records, for a store opened without one (sizes unknown: 0)."""
    if "meta" not in tables:
        raise GalleryError(f"{path} holds no edgedml gallery yet; nothing was changed. Enroll into it to "
                           f"create one, or pass the gallery file")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    return Layout(0, (0, 0), meta.get("embedder_sha256", "?"), meta.get("detector") or "none")


def create(db: sqlite3.Connection, layout: Layout | None) -> None:
    """Create the tables that are missing and upgrade the others (inside the caller's transaction:
    executescript would commit it); with ``layout``, record in a new gallery's meta what made its
    templates."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    upgrade(db)
    if layout is not None:
        db.execute("INSERT OR IGNORE INTO meta VALUES ('embedder_sha256', ?)", (layout.embedder,))
        db.execute("INSERT OR IGNORE INTO meta VALUES ('gallery_id', ?)", (uuid.uuid4().hex,))
        # a gallery from before detectors (templates, no row) holds whole-image templates
        empty = db.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 0
        db.execute("INSERT OR IGNORE INTO meta VALUES ('detector', ?)", (layout.cropping if empty else "none",))


def upgrade(db: sqlite3.Connection) -> None:
    """Bring a gallery written by an earlier edgedml to this schema (inside the schema transaction)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(templates)")}
    if "marginal" not in columns:  # from before rollout bundles
        db.execute("ALTER TABLE templates ADD COLUMN marginal BLOB")
    if "door" not in {row[1] for row in db.execute("PRAGMA table_info(decisions)")}:
        db.execute("ALTER TABLE decisions ADD COLUMN door TEXT")
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name='templates'").fetchone()[0]
    if "AUTOINCREMENT" not in sql.upper():  # ids could be reused: copy into the new table
        db.execute("ALTER TABLE templates RENAME TO templates_before")
        db.execute(SCHEMA.split(";")[2])
        db.execute(f"INSERT INTO templates ({TEMPLATE_COLUMNS}) SELECT {TEMPLATE_COLUMNS} FROM templates_before")
        db.execute("DROP TABLE templates_before")
        db.execute(SCHEMA.split(";")[3])
