"""Where a bundle may be written: ``--out`` must be a new or empty folder or, with ``--overwrite``,
one that holds nothing but an edgedml bundle's own files (:func:`foreign_entries`), so that
replacing an old bundle never deletes a user's file. Checked before any work and again just before
the finished bundle is renamed into place (:mod:`edgedml.output_folders`).
"""

from __future__ import annotations

from pathlib import Path

from ..bundle import Manifest, read_manifest
from ..bundle_files import CACHE_FOLDER, MANIFEST, REPORTS
from ..errors import BundleError, ConfigError
from ..output_folders import refuse_link

BUNDLE_FOLDERS = ("validation", "detector", "engines")  # what export and build-engine write, file by file


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an empty folder or, with ``overwrite``, a folder that
    holds nothing but an edgedml bundle's own files (:func:`foreign_entries`): --overwrite
    replaces an old bundle, never a user's file. Decided before any work starts."""
    refuse_link(out, "--out")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} is a file; choose a folder path for --out")
    if out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise ConfigError(f"--out {out} is the current folder (or one above it); choose a new folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    if not (out / MANIFEST).is_file():
        raise ConfigError(f"{out} is not an edgedml bundle (no manifest.json), so --overwrite will not replace it: "
                          f"nothing was changed; choose a new folder for --out")
    try:
        manifest = read_manifest(out, verify=False)
    except BundleError as exc:
        raise ConfigError(f"{out} is not an edgedml bundle ({exc}), so --overwrite will not replace it: nothing was "
                          f"changed; choose a new folder for --out") from exc
    foreign = foreign_entries(out, manifest)
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise ConfigError(f"{out} is not an edgedml bundle alone: it also holds {shown}, so --overwrite will not "
                          f"replace it: nothing was changed; move those out or choose a new folder for --out")


def foreign_entries(root: Path, manifest: Manifest) -> list[str]:
    """What in a bundle folder is not the bundle's own, as paths relative to it (sorted; a folder
    outside the bundle's own ends with "/" and stands for all it holds). The bundle's own are:
    the manifest (and its ``.tmp``), the files the manifest lists in ``files``, its reports (the
    calibration pictures), temporary files (``*.tmp``) of a build in progress inside its folders
    (``validation/``, ``detector/``, ``engines/``), and anything under ``cache/``. A link is never
    the bundle's own."""
    listed = set(manifest.files) | {MANIFEST, MANIFEST + ".tmp"} | REPORTS
    folders = set(BUNDLE_FOLDERS) | {"/".join(name.split("/")[:k]) for name in listed
                                     for k in range(1, name.count("/") + 1)}

    def walk(folder: Path, prefix: str) -> list[str]:
        found = []
        for entry in sorted(folder.iterdir()):
            relative = prefix + entry.name
            if entry.is_symlink():
                found.append(relative)
            elif entry.is_dir():
                if relative in folders:
                    found += walk(entry, relative + "/")
                elif relative != CACHE_FOLDER:
                    found.append(relative + "/")
            elif not (relative in listed or (relative.endswith(".tmp") and relative.split("/")[0] in BUNDLE_FOLDERS)):
                found.append(relative)
        return found

    return walk(root, "")
