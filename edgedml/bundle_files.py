"""A bundle's files and their integrity (stdlib only): which of them the manifest checksums, their
sha256, and which names may denote one.

Which files are checksummed is a rule, :func:`checksummed`: every file in the folder except the
manifest itself, temporary files (``*.tmp``, a build in progress), the pictures that
``edgedml calibrate`` draws for people (:data:`REPORTS`), and anything under ``cache/`` (caches a
device may keep beside the bundle; edgedml's own caches live in ``$EDGEDML_CACHE``). A name the
manifest gives a file must be a POSIX path inside the folder that this rule checksums
(:func:`file_problem`); :meth:`edgedml.bundle.Manifest.path` opens files only by such names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

MANIFEST = "manifest.json"
REPORTS = frozenset({"calibration_roc.png", "calibration_scores.png"})
CACHE_FOLDER = "cache"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksummed(relative: str) -> bool:
    """Whether a file (POSIX path relative to the bundle) is part of the contract."""
    return not (relative == MANIFEST or relative.endswith(".tmp") or relative in REPORTS
                or relative.split("/", 1)[0] == CACHE_FOLDER)


def file_problem(name) -> str | None:
    """Why ``name`` cannot name a contract file of a bundle (a POSIX path relative to its
    folder, checksummed by :func:`checksummed`), or None when it can."""
    if not isinstance(name, str) or not name:
        return "is not a file name"
    parts = name.split("/")
    if PurePosixPath(name).is_absolute() or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        return "is not a path inside the bundle"
    if name == MANIFEST:
        return "is the manifest itself"
    if not checksummed(name):
        return "is a file the manifest never checksums (a report, a cache or a temporary file)"
    return None
