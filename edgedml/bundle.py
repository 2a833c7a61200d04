"""The bundle: the only contract between export and runtime (stdlib only).

A bundle is a folder with ONNX graphs, optional TensorRT engines and ``manifest.json``, which
records the format version, the model config, the preprocessing spec, the sha256 of every file,
and whatever else the exporter states. The runtime refuses a bundle whose checksums differ.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import BundleError, ChecksumError

MANIFEST = "manifest.json"
FORMAT = "edgedml-bundle"
FORMAT_VERSION = 1
# reports written into a bundle for people to look at, not part of the contract: not checksummed,
# so that deleting or redrawing them never breaks the bundle
REPORTS = frozenset({"calibration_roc.png", "calibration_scores.png"})
REQUIRED = ("preprocessing", "embedder", "matcher")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle_dir: str | Path, manifest: dict) -> Path:
    """Write ``manifest.json`` with the sha256 of every other file in the bundle, atomically.

    ``manifest`` holds everything but ``format``, ``format_version`` and ``files``, which are
    filled here. Files in sub-folders are listed by their relative POSIX path.
    """
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"bundle folder {root} does not exist")
    files = {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
        and p.relative_to(root).as_posix() not in REPORTS
    }
    body = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION, "files": files}
    target = root / MANIFEST
    tmp = target.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return target


def read_manifest(bundle_dir: str | Path, verify: bool = True) -> dict:
    """Read a bundle's manifest; with ``verify``, check every listed file's sha256."""
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} is not an edgedml bundle: {MANIFEST} is missing. Create one "
                          f"with `edgedml export --out {root}`")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc.__class__.__name__}); re-export the bundle") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgedml bundle manifest; re-export the bundle")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{root} has bundle format {manifest.get('format_version')}; this edgedml "
                          f"reads format {FORMAT_VERSION}: re-export it or upgrade edgedml")
    problems = [f"'{key}' is missing or not an object" for key in REQUIRED if not isinstance(manifest.get(key), dict)]
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values()):
        problems.append("'files' lists no checksums, so nothing in it can be trusted")
    thresholds = manifest.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
            isinstance(e, dict) and type(e.get("threshold")) in (int, float) for e in thresholds.values()):
        problems.append("'thresholds' holds a threshold that is not a number")
    if problems:
        raise BundleError(f"{path} is malformed: {'; '.join(problems)}. Re-export the bundle (and calibrate it again)")
    if verify:
        for name, entry in files.items():
            file = root / name
            if not file.is_file():
                raise ChecksumError(f"{file} is listed in the manifest but missing; re-export the bundle")
            if sha256_file(file) != entry["sha256"]:
                raise ChecksumError(f"{file} does not match the sha256 in {MANIFEST}: the file was "
                                    f"changed or corrupted after export; re-export the bundle")
    return manifest
