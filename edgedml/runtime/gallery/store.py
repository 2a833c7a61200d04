"""Where a gallery's identities, templates and decisions live: what every store provides.

A :class:`~.gallery.Gallery` decides; a store keeps. Two stores exist:

- :class:`~.sqlite_store.SQLiteStore`: one file per device (the embedded default);
- :class:`~.postgres_store.PostgresStore`: one PostgreSQL database with pgvector shared by a
  fleet of doors (``postgresql://…``).

Both answer the same calls: ``enroll(name, features, sources, add)`` (one transaction, which
also decides whether the name may be created or extended: :func:`enrollment_conflict`),
``remove(name)``, ``identities()``, ``sources(name)``, ``templates_of(name)``,
``nearest(query, k)`` (the k templates nearest by global cosine, best first, with the local
features the matcher re-ranks with), ``log(row)``, ``decisions(limit)`` and ``refuse_writes(what)``
(a read-only store raises :class:`GalleryError` saying it cannot do ``what``). Both refuse a
matcher whose embedder or face cropping differs from the one the templates were made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import EdgeDMLError

URL_SCHEMES = ("postgresql://", "postgres://")


class GalleryError(EdgeDMLError):
    """The gallery cannot do what was asked (unknown identity, another model, no threshold)."""


class GalleryUnavailable(GalleryError):
    """The gallery's server cannot be reached; the call may be repeated once it is back."""


@dataclass(frozen=True)
class Layout:
    """What a matcher's templates look like, and what made them."""

    embedding_size: int  # E
    local_shape: tuple[int, int]  # (R, D)
    embedder: str  # sha256 of the embedder graph
    cropping: str  # the detector's fingerprint, or "none" (whole images)

    def mismatch(self, where: str, embedder: str | None, cropping: str | None) -> str | None:
        """Why templates made with (``embedder``, ``cropping``) cannot serve this layout, or None."""
        if embedder is not None and embedder != self.embedder:
            return (f"{where} was enrolled with another model (embedder sha256 {embedder[:12]}…); use the bundle "
                    f"it was made with, or enroll into a new gallery")
        enrolled = cropping or "none"
        if enrolled != self.cropping:
            return (f"{where} was enrolled with detector {enrolled.split(':')[0]!r} ({enrolled}) and this matcher "
                    f"uses {self.cropping.split(':')[0]!r} ({self.cropping}): templates and queries would be cut "
                    f"differently. Use the same detector and settings (Matcher(..., detector=...), --detector), or "
                    f"enroll into a new gallery")
        return None


@dataclass
class Templates:
    """Template rows: ids (N,), owner names (N,), embedding (N, E), local (N, R, D), marginal
    (N, R) or None, and the enrolled image of each (when it was a file)."""

    ids: np.ndarray
    names: list[str]
    embedding: np.ndarray
    local: np.ndarray
    marginal: np.ndarray | None
    sources: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: list[tuple], layout: Layout, embedding_of=None) -> Templates:
        """From (id, name, embedding, local bytes, marginal bytes or None, source) rows; the
        embedding is float32 bytes, or whatever ``embedding_of`` turns into an (E,) array."""
        r, d = layout.local_shape
        e = layout.embedding_size
        parse = embedding_of or (lambda b: np.frombuffer(b, np.float32))
        embedding = (np.stack([parse(row[2]) for row in rows]).astype(np.float32, copy=False) if rows
                     else np.zeros((0, e), np.float32))
        local = np.frombuffer(b"".join(bytes(row[3]) for row in rows), np.float32).reshape(-1, r, d)
        marginal = (np.frombuffer(b"".join(bytes(row[4]) for row in rows), np.float32).reshape(-1, r)
                    if rows and all(row[4] is not None for row in rows) else None)
        return cls(np.array([row[0] for row in rows], np.int64), [row[1] for row in rows], embedding.reshape(-1, e),
                   local, marginal, [row[5] for row in rows])


def enrollment_conflict(name: str, where: str, exists: bool, add: bool) -> str | None:
    """Why ``name`` cannot be enrolled, or None: a new enrollment needs a new name, and adding
    templates (``add``) needs an enrolled one. Stores call it inside the enrollment transaction,
    so two enrollments of one new name cannot both create it."""
    if exists and not add:
        return (f"{name!r} is already enrolled in {where}; to add these photos to that identity pass --add "
                f"(API: add=True), or revoke {name!r} first to enroll it anew")
    if add and not exists:
        return (f"{name!r} is not enrolled in {where}, and --add (add=True) only adds photos to an enrolled "
                f"identity: enroll {name!r} without --add first, or check the name")
    return None


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def as_bytes(array: np.ndarray | None) -> bytes | None:
    return None if array is None else np.ascontiguousarray(array, np.float32).tobytes()
