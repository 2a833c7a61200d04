"""The fleet gallery store: one PostgreSQL database with pgvector, shared by every door.

``Gallery("postgresql://user@host/db", matcher, door="lab-2")``. Tables live in the schema
``edgedml`` (created on first use, under an advisory lock, so doors may start together):

- ``identities (id, name UNIQUE, created)``;
- ``templates (id, identity_id → identities ON DELETE CASCADE, embedding vector(E), local bytea,
  marginal bytea, source, created)`` with an HNSW index on ``embedding`` (``vector_ip_ops``:
  embeddings are L2-normalised, so inner product is cosine) and the local features (R×D float32)
  the matcher re-ranks with;
- ``decisions (id, time, door, kind, claimed, decided, score, threshold, accepted, evidence,
  details jsonb)``: every door's audit log in one place, each row naming its door;
- ``meta``: the embedder's sha256 and the face cropping the templates were made with.

Nothing is cached on the door: ``verify`` reads the claimed identity's templates and ``identify``
asks the server for the nearest templates (``ORDER BY embedding <#> q LIMIT k``, the HNSW
index with ``hnsw.ef_search`` 400) at every call, so an enrollment or a revocation at one door
holds at every door from its commit on. Enrollment is one transaction.

When the server cannot be reached, each call raises :class:`~.store.GalleryUnavailable`
(one line, the fix included) and nothing is decided; the next call reconnects, so a door resumes
by itself when the server is back.

Messages name the gallery by its URL without secrets (:mod:`.url`), and the driver's own
messages are scrubbed of them; a URL that does not parse is refused before it reaches the driver.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from .store import GalleryError, GalleryUnavailable, Layout, Templates, as_bytes, enrollment_conflict
from .url import parse_gallery_url, scrub

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS edgedml;
CREATE TABLE IF NOT EXISTS edgedml.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS edgedml.identities (
    id bigserial PRIMARY KEY, name text UNIQUE NOT NULL, created double precision NOT NULL);
CREATE TABLE IF NOT EXISTS edgedml.templates (
    id bigserial PRIMARY KEY,
    identity_id bigint NOT NULL REFERENCES edgedml.identities(id) ON DELETE CASCADE,
    embedding vector({dim}) NOT NULL, local bytea NOT NULL, marginal bytea, source text,
    created double precision NOT NULL);
CREATE INDEX IF NOT EXISTS templates_identity ON edgedml.templates (identity_id);
CREATE INDEX IF NOT EXISTS templates_embedding ON edgedml.templates USING hnsw (embedding vector_ip_ops);
CREATE TABLE IF NOT EXISTS edgedml.decisions (
    id bigserial PRIMARY KEY, time double precision NOT NULL, door text, kind text NOT NULL,
    claimed text, decided text, score double precision, threshold double precision, accepted boolean,
    evidence text, details jsonb);
CREATE INDEX IF NOT EXISTS decisions_door ON edgedml.decisions (door, id)
"""
ROWS = ("SELECT t.id, i.name, t.embedding::text, t.local, t.marginal, t.source FROM edgedml.templates t "
        "JOIN edgedml.identities i ON i.id = t.identity_id")
NEAREST = """
WITH near AS (
    SELECT id, identity_id, embedding, local, marginal, source, embedding <#> %(q)s::vector AS distance
    FROM edgedml.templates ORDER BY embedding <#> %(q)s::vector LIMIT %(k)s)
SELECT near.id, i.name, near.embedding::text, near.local, near.marginal, near.source
FROM near JOIN edgedml.identities i ON i.id = near.identity_id ORDER BY near.distance, near.id
"""
DECISION_COLUMNS = "id, time, kind, claimed, decided, score, threshold, accepted::int, evidence, details::text, door"
SCHEMA_LOCK = 0x6564676564  # pg_advisory_xact_lock key: one door creates the schema
EF_SEARCH = 400  # HNSW candidate list, at least k: recall@1 0.992 at 100k (200: 0.982), benchmarks/gallery_scale.py
CONNECT_SECONDS = 5
STATEMENT_SECONDS = 30
log = logging.getLogger(__name__)


def vector_text(embedding: np.ndarray) -> str:
    """pgvector's text form of a float32 vector, exact (each value printed with float64 digits)."""
    return "[" + ",".join(repr(float(v)) for v in np.asarray(embedding, np.float32).ravel()) + "]"


def parse_vector(text: str) -> np.ndarray:
    return np.array(text[1:-1].split(","), np.float32)


class PostgresStore:
    """``PostgresStore(url, layout)``: connect, create the schema on first use, check the layout.
    With ``layout`` None, an existing gallery is opened as its meta records it (never created)."""

    def __init__(self, url: str, layout: Layout | None, read_only: bool | None = None, ef_search: int = EF_SEARCH):
        parsed = parse_gallery_url(url)  # before the driver sees it: libpq would echo a malformed one
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise GalleryError("a postgresql:// gallery needs psycopg: pip install 'edgedml[fleet]'") from exc
        self.url, self.where, self._secrets = url, parsed.shown, parsed.secrets
        self.layout, self.read_only, self.ef_search = layout, bool(read_only), ef_search
        self._lock = threading.RLock()
        self._connection = None
        with self._session("opening the gallery") as db:
            if not self.read_only and self.layout is not None:
                self._create(db)
            self._check(db)

    # --- connection -------------------------------------------------------------------------

    @contextmanager
    def _session(self, doing: str):
        """The connection (re-opened when lost); a lost server becomes GalleryUnavailable and any
        other database error a GalleryError, each one line."""
        import psycopg

        with self._lock:
            try:
                if self._connection is None or self._connection.closed:
                    # a door must not hang on a server that stopped answering: bounded connects and
                    # statements, and TCP keepalives that notice a silently dropped link in ~10 s
                    self._connection = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=CONNECT_SECONDS, application_name="edgedml",
                        keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
                    self._connection.execute("SELECT set_config('statement_timeout', %s, false)",
                                             (str(STATEMENT_SECONDS * 1000),))
                yield self._connection
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop()
                # from None: the driver's exception may quote the URL, secrets included
                raise GalleryUnavailable(
                    f"the gallery server {self.where} cannot be reached while {doing} ({self._reason(exc)}); "
                    f"nothing was decided. Check that PostgreSQL is running and reachable; the next call "
                    f"reconnects") from None
            except psycopg.Error as exc:
                raise GalleryError(f"{self.where}: {doing} failed ({self._reason(exc)})") from None

    def _reason(self, exc: Exception) -> str:
        """The driver's message, first line, without the URL's secrets."""
        text = str(exc).strip()
        return scrub(text.splitlines()[0], self._secrets) if text else type(exc).__name__

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - the connection is already broken; closing is best effort
                pass
        self._connection = None

    # --- schema -----------------------------------------------------------------------------

    def _create(self, db) -> None:
        import psycopg

        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            try:
                with db.transaction():
                    db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise GalleryError(
                    f"{self.where} has no pgvector extension ({self._reason(exc)}): install pgvector "
                    f"on the server and run CREATE EXTENSION vector as a superuser, or use a server that has it"
                ) from None
            if self._stored_dim(db) is None:
                for statement in SCHEMA.format(dim=self.layout.embedding_size).split(";"):
                    db.execute(statement)
            empty = db.execute("SELECT NOT EXISTS (SELECT 1 FROM edgedml.templates)").fetchone()[0]
            for key, value in (("embedder_sha256", self.layout.embedder),
                               ("detector", self.layout.cropping if empty else "none"),
                               ("local_shape", json.dumps(list(self.layout.local_shape)))):
                db.execute("INSERT INTO edgedml.meta VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, value))

    @staticmethod
    def _stored_dim(db) -> int | None:
        row = db.execute("SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass('edgedml.templates') "
                         "AND a.attname = 'embedding'").fetchone()
        return None if row is None else int(row[0])

    def _check(self, db) -> None:
        dim = self._stored_dim(db)
        if dim is None:
            raise GalleryError(f"{self.where} holds no edgedml gallery (no edgedml.templates table); open it "
                               f"with a Matcher and without read_only once to create one")
        meta = dict(db.execute("SELECT key, value FROM edgedml.meta").fetchall())
        if self.layout is None:  # opened to revoke or list: the layout the gallery records
            shape = json.loads(meta.get("local_shape", "[0, 0]"))
            self.layout = Layout(dim, (int(shape[0]), int(shape[1])), meta.get("embedder_sha256", "?"),
                                 meta.get("detector") or "none")
        if dim != self.layout.embedding_size:
            raise GalleryError(f"{self.where} stores embeddings of size {dim} and this matcher's have "
                               f"{self.layout.embedding_size}: it was enrolled with another model. Use the bundle it "
                               f"was made with, or another database")
        problem = self.layout.mismatch(self.where, meta.get("embedder_sha256", "?"), meta.get("detector"))
        if problem:
            raise GalleryError(problem)

    # --- identities and templates ----------------------------------------------------------

    def enroll(self, name: str, embedding: np.ndarray, local: np.ndarray, marginal: np.ndarray | None,
               sources: Sequence[str | None], add: bool = False) -> int:
        """One transaction: ``name`` is created (``add`` False: it must be new) or extended
        (``add`` True: it must exist), then its templates are inserted."""
        self.refuse_writes("enroll")
        now = time.time()
        rows = [(vector_text(embedding[i]), as_bytes(local[i]), None if marginal is None else as_bytes(marginal[i]),
                 sources[i], now) for i in range(len(embedding))]
        with self._session(f"enrolling {name!r} (rolled back unless the server had committed it)") as db:
            with db.transaction():
                # the unique index decides between doors enrolling one new name at once: the second
                # waits for the first's commit, then finds the name taken
                created = db.execute("INSERT INTO edgedml.identities (name, created) VALUES (%s, %s) "
                                     "ON CONFLICT (name) DO NOTHING RETURNING id", (name, now)).fetchone()
                found = created or db.execute("SELECT id FROM edgedml.identities WHERE name = %s FOR KEY SHARE",
                                              (name,)).fetchone()  # held against a revocation until commit
                if found is None and not add:  # taken, then revoked by another door before this read
                    raise GalleryError(f"{name!r} was revoked at another door while it was being enrolled here; "
                                       f"nothing was written: enroll again")
                problem = enrollment_conflict(name, self.where, exists=created is None and found is not None, add=add)
                if problem:
                    raise GalleryError(problem)  # rolls the transaction back
                identity = found[0]
                with db.cursor() as cursor:
                    cursor.executemany("INSERT INTO edgedml.templates (identity_id, embedding, local, marginal, "
                                       "source, created) VALUES (%s, %s::vector, %s, %s, %s, %s)",
                                       [(identity, *row) for row in rows])
        return len(rows)

    def remove(self, name: str) -> bool:
        self.refuse_writes("revoke")
        with self._session(f"revoking {name!r}") as db:
            return db.execute("DELETE FROM edgedml.identities WHERE name = %s", (name,)).rowcount > 0

    def identities(self) -> dict[str, int]:
        with self._session("listing identities") as db:
            rows = db.execute("SELECT i.name, COUNT(t.id) FROM edgedml.identities i LEFT JOIN edgedml.templates t "
                              "ON t.identity_id = i.id GROUP BY i.id ORDER BY i.name").fetchall()
        return {name: int(count) for name, count in rows}

    def sources(self, name: str) -> set[str]:
        with self._session("reading sources") as db:
            rows = db.execute("SELECT t.source FROM edgedml.templates t JOIN edgedml.identities i "
                              "ON i.id = t.identity_id WHERE i.name = %s AND t.source IS NOT NULL", (name,)).fetchall()
        return {row[0] for row in rows}

    def templates_of(self, name: str) -> Templates | None:
        with self._session(f"reading {name!r}'s templates") as db:
            rows = db.execute(f"{ROWS} WHERE i.name = %s ORDER BY t.id", (name,)).fetchall()
        return Templates.from_rows(rows, self.layout, parse_vector) if rows else None

    def nearest(self, query: np.ndarray, k: int) -> Templates:
        """The k templates nearest ``query`` (E,) by the HNSW index, best first."""
        with self._session("searching the templates") as db:
            with db.transaction():
                db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(k, self.ef_search)),))
                rows = db.execute(NEAREST, {"q": vector_text(query), "k": k}).fetchall()
        return Templates.from_rows(rows, self.layout, parse_vector)

    def index_kind(self) -> str:
        return "pgvector-hnsw"

    def refuse_writes(self, doing: str) -> None:
        if self.read_only:
            raise GalleryError(f"{self.where} was opened read-only; open it without read_only to {doing}")

    # --- audit ------------------------------------------------------------------------------

    def log(self, row: dict) -> int | None:
        if self.read_only:
            log.warning("edgedml: %s is read-only: the %s decision was not logged", self.where, row["kind"])
            return None
        values = dict(row, accepted=bool(row["accepted"]), details=json.dumps(row.get("details") or {}))
        columns = ", ".join(values)
        marks = ", ".join("%s::jsonb" if key == "details" else "%s" for key in values)
        try:
            with self._session(f"logging a {row['kind']} decision") as db:
                return int(db.execute(f"INSERT INTO edgedml.decisions ({columns}) VALUES ({marks}) RETURNING id",
                                      list(values.values())).fetchone()[0])
        except GalleryError as exc:  # the door keeps deciding; the lost row is reported
            log.warning("edgedml: the %s decision was not logged (%s)", row["kind"], exc)
            return None

    def decisions(self, limit: int, door: str | None = None) -> list[dict]:
        with self._session("reading the decisions") as db:
            cursor = db.execute(f"SELECT {DECISION_COLUMNS} FROM edgedml.decisions "
                                f"{'WHERE door = %s ' if door else ''}ORDER BY id DESC LIMIT %s",
                                (door, limit) if door else (limit,))
            columns = [c.name.replace("accepted::int", "accepted") for c in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._drop()
