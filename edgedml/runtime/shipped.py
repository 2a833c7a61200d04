"""The bundles that install with the package: ``Matcher("objects")``, ``--model faces``.

``edgedml/bundles/<name>/`` holds the exported bundle of each shipped preset (fp32 and int8-cpu
graphs, validation data, the manifest; ``faces`` also YuNet and a calibrated threshold), written
by ``scripts/ship_bundles.py``. Stdlib only: resolving a name imports nothing heavy.

Which wins, a shipped name or a folder of that name in the working directory? A folder that is
a bundle (it holds ``manifest.json``) wins: ``--model objects`` has always meant ``./objects``
when one was exported there, and a script that relied on that keeps working. Any other value of
a shipped name (no such folder, or a folder that is no bundle, such as a folder of photos called
``faces``) is the shipped bundle. ``edgedml bundles`` prints where each shipped bundle lies.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BundleError

SHIPPED = ("objects", "faces")  # the presets whose bundles ship (edgedml.models.presets names them too)


def bundles_folder() -> Path:
    """The folder the shipped bundles install into: ``edgedml/bundles``."""
    return Path(__file__).resolve().parent.parent / "bundles"


def shipped_bundles() -> dict[str, Path]:
    """{name: folder} of the shipped bundles that are installed (a folder holding a manifest),
    in :data:`SHIPPED` order."""
    root = bundles_folder()
    return {name: root / name for name in SHIPPED if (root / name / "manifest.json").is_file()}


def resolve_bundle(spec: str | Path) -> Path:
    """The bundle folder ``spec`` names: a shipped name ("objects", "faces") → its installed
    folder, unless a bundle folder of that name exists in the working directory (it wins: see
    the module's docstring); any other value → ``Path(spec)`` unchanged. A shipped name whose
    bundle is not installed raises :class:`BundleError` with the fix."""
    if isinstance(spec, Path) or str(spec) not in SHIPPED or (Path(spec) / "manifest.json").is_file():
        return Path(spec)
    folder = bundles_folder() / str(spec)
    if not (folder / "manifest.json").is_file():
        raise BundleError(f"the shipped bundle {spec!r} is not installed ({folder} holds no manifest.json): "
                          f"reinstall edgedml, or in a source checkout run `python scripts/ship_bundles.py {spec}`")
    return folder


def describe(name: str, folder: Path) -> dict:
    """What ``edgedml bundles`` says of one shipped bundle, its checksums verified: name, path,
    precisions, bytes on disk, the face detector's file (or None), the calibration (None when
    uncalibrated: threshold, FAR, precision, what it was measured on) and ``problem`` (None, or
    why the bundle cannot be used)."""
    from ..bundle import read_manifest

    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    entry = {"name": name, "path": str(folder), "bytes": size, "precisions": [], "detector": None,
             "calibration": None, "problem": None}
    try:
        manifest = read_manifest(folder)
    except BundleError as exc:
        return {**entry, "problem": str(exc)}
    default = manifest.thresholds.get("default")
    calibration = manifest.calibration or {}
    if default:
        entry["calibration"] = {"threshold": default["threshold"], "far": default.get("far"),
                                "target_far": calibration.get("target_far"), "precision": calibration.get("precision"),
                                "data": calibration.get("source") or calibration.get("data"),
                                "images": calibration.get("images"),
                                "impostor_pairs": calibration.get("impostor_pairs"), "eer": calibration.get("eer")}
    return {**entry, "precisions": list(manifest.graph_sets),
            "detector": manifest.detector.get("file") if manifest.detector else None}
