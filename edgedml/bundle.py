"""The bundle: the only contract between export and runtime (stdlib only).

A bundle is a folder with ONNX graphs, optional TensorRT engines and ``manifest.json``. The
manifest is read into a typed :class:`Manifest`: the model config, the preprocessing spec, both
graphs' inputs and outputs, the graph sets per precision, the Sinkhorn settings, thresholds,
engines, the face detector and its settings, the sha256 of every contract file, and the export's
reports. The runtime refuses a
bundle whose checksums differ. A manifest changes only through :meth:`Manifest.update`, which
rewrites the file and every checksum at once (a temporary file renamed over the old one).

Which files are checksummed is a rule, :func:`checksummed`: every file in the folder except the
manifest itself, temporary files (``*.tmp``, a build in progress), the pictures that
``edgedml calibrate`` draws for people (:data:`REPORTS`), and anything under ``cache/`` (caches a
device may keep beside the bundle; edgedml's own caches live in ``$EDGEDML_CACHE``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BundleError, ChecksumError, ConfigError, build_dataclass
from .preprocessing import PreprocessSpec

MANIFEST = "manifest.json"
FORMAT = "edgedml-bundle"
FORMAT_VERSION = 1
REPORTS = frozenset({"calibration_roc.png", "calibration_scores.png"})
CACHE_FOLDER = "cache"
REQUIRED = ("preprocessing", "embedder", "matcher")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checksummed(relative: str) -> bool:
    """Whether a file (POSIX path relative to the bundle) is part of the contract."""
    return not (relative == MANIFEST or relative.endswith(".tmp") or relative in REPORTS
                or relative.split("/", 1)[0] == CACHE_FOLDER)


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class GraphIO:
    """One ONNX graph: its file and the shapes of its inputs and outputs (an int per fixed
    dimension, an axis name such as "batch" or "K" per dynamic one)."""

    file: str
    inputs: dict[str, list]
    outputs: dict[str, list]
    nodes: dict[str, int] = field(default_factory=dict)  # operator histogram
    form: str | None = None  # the matcher's Sinkhorn form ("scaling" or "log")


@dataclass(frozen=True)
class SinkhornSettings:
    eps: float
    iters: int
    marginals: str
    form: str
    # the marginals' centres are the global embeddings (DIML's official x̄); bundles written
    # before the field existed centred them on the mean of the normalised regions
    centers_from_embedding: bool = False
    partial_mass: float | None = None  # partial transport (dummy bins); None: full transport


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a bundle. The report fields (validation, readiness, options, tools)
    are kept as the exporter wrote them; keys this version does not know stay in ``extra``."""

    model: dict
    preprocessing: PreprocessSpec
    embedder: GraphIO
    matcher: GraphIO
    sinkhorn: SinkhornSettings | None = None
    graphs: dict[str, dict[str, str]] = field(default_factory=dict)  # precision → {graph: file}
    limits: dict[str, dict] = field(default_factory=dict)  # graph → batch limit (runtime.chunking.Limit)
    rerank_k: int = 100
    detector: dict | None = None  # {"kind", "file", "source", "sha256", "settings"} (runtime.detection.install)
    thresholds: dict[str, dict] = field(default_factory=dict)  # name → {"threshold": float, ...}
    calibration: dict | None = None
    engines: dict[str, dict] = field(default_factory=dict)  # precision → {graph: engine facts}
    validation_inputs: dict = field(default_factory=dict)
    precisions: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    tensorrt_readiness: dict = field(default_factory=dict)
    export_options: dict = field(default_factory=dict)
    export_seconds: float | None = None
    created: str = ""
    source: str = ""
    tools: dict = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    root: Path | None = field(default=None, compare=False, repr=False)  # the folder it was read from

    @property
    def regions(self) -> int:
        """R, the regions per image (the matcher's query_local is (1, R, D))."""
        return int(self.matcher.inputs["query_local"][1])

    @property
    def graph_sets(self) -> dict[str, dict[str, str]]:
        """precision → {"embedder": file, "matcher": file}; bundles from before precisions had
        only the fp32 pair."""
        return self.graphs or {"fp32": {"embedder": self.embedder.file, "matcher": self.matcher.file}}

    def to_dict(self) -> dict:
        """The JSON body, as ``manifest.json`` holds it."""
        body = dataclasses.asdict(dataclasses.replace(self, root=None))  # nested dataclasses become dicts
        del body["extra"], body["root"]
        return {**self.extra, **body, "format": FORMAT, "format_version": FORMAT_VERSION}

    def write(self, root: str | Path) -> "Manifest":
        """Write this manifest into the bundle folder ``root`` with the checksums of every
        contract file, atomically; returns the manifest as written."""
        root = Path(root)
        if not root.is_dir():
            raise BundleError(f"bundle folder {root} does not exist")
        files = {}
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and checksummed(relative):
                files[relative] = FileEntry(sha256_file(path), path.stat().st_size)
        written = dataclasses.replace(self, files=files, root=root)
        target = root / MANIFEST
        tmp = target.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(written.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return written

    def update(self, **changes) -> "Manifest":
        """Change fields and rewrite the manifest (and every checksum) in the folder it was read
        from, atomically: ``manifest.update(thresholds={...})``."""
        if self.root is None:
            raise BundleError("this manifest was not read from a bundle folder; use write(folder)")
        return dataclasses.replace(self, **changes).write(self.root)

    @classmethod
    def from_dict(cls, data: dict, root: Path | None = None) -> "Manifest":
        """Parse a manifest body; a malformed one raises :class:`BundleError` naming what is wrong."""
        where = root / MANIFEST if root else MANIFEST
        problems = [f"'{key}' is missing or not an object" for key in REQUIRED if not isinstance(data.get(key), dict)]
        files = data.get("files")
        if not isinstance(files, dict) or not files or not all(
                isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values()):
            problems.append("'files' lists no checksums, so nothing in it can be trusted")
        thresholds = data.get("thresholds", {})
        if not isinstance(thresholds, dict) or not all(
                isinstance(e, dict) and type(e.get("threshold")) in (int, float) for e in thresholds.values()):
            problems.append("'thresholds' holds a threshold that is not a number")
        if problems:
            raise BundleError(f"{where} is malformed: {'; '.join(problems)}. Re-export the bundle "
                              f"(and calibrate it again)")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "root"}
        body = {k: v for k, v in data.items() if k in known}
        try:
            body["preprocessing"] = PreprocessSpec.from_dict(data["preprocessing"])
            for graph in ("embedder", "matcher"):
                body[graph] = build_dataclass(GraphIO, data[graph], graph)
            if data.get("sinkhorn") is not None:
                body["sinkhorn"] = build_dataclass(SinkhornSettings, data["sinkhorn"], "sinkhorn")
            body["files"] = {name: FileEntry(e["sha256"], int(e.get("bytes", 0))) for name, e in files.items()}
            return cls(**body, extra={k: v for k, v in data.items() if k not in known | {"format", "format_version"}},
                       root=root)
        except (ConfigError, TypeError, ValueError) as exc:
            raise BundleError(f"{where} is malformed ({exc}); re-export the bundle") from exc


def read_manifest(bundle_dir: str | Path, verify: bool = True) -> Manifest:
    """Read a bundle's manifest; with ``verify``, check every listed file's sha256."""
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} is not an edgedml bundle: {MANIFEST} is missing. Create one "
                          f"with `edgedml export --out {root}`")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc.__class__.__name__}); re-export the bundle") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgedml bundle manifest; re-export the bundle")
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{root} has bundle format {data.get('format_version')}; this edgedml "
                          f"reads format {FORMAT_VERSION}: re-export it or upgrade edgedml")
    manifest = Manifest.from_dict(data, root)
    if verify:
        for name, entry in manifest.files.items():
            file = root / name
            if not file.is_file():
                raise ChecksumError(f"{file} is listed in the manifest but missing; re-export the bundle")
            if sha256_file(file) != entry.sha256:
                raise ChecksumError(f"{file} does not match the sha256 in {MANIFEST}: the file was "
                                    f"changed or corrupted after export; re-export the bundle")
    return manifest
