"""The bundle: the only contract between export and runtime (stdlib only).

A bundle is a folder with ONNX graphs, optional TensorRT engines and ``manifest.json``. The
manifest is read into a typed :class:`Manifest`: the model config, the preprocessing spec, both
graphs' inputs and outputs, the graph sets per precision, the Sinkhorn settings, thresholds,
engines, the face detector and its settings, the sha256 of every contract file, and the export's
reports. The runtime refuses a bundle whose checksums differ, and a malformed manifest with every
problem named (:mod:`edgedml.manifest_checks`). A manifest changes only through
:meth:`Manifest.update`, which rewrites the file and every checksum at once (a temporary file
renamed over the old one); which files are checksummed is the rule of :mod:`edgedml.bundle_files`.

Every file the runtime loads (graphs of every precision, the detector, the validation data,
TensorRT engines) is opened through :meth:`Manifest.path`, the one place that resolves a name
(symlinks included), keeps it inside the bundle and requires its checksum in ``files``: a graph
the manifest names but does not checksum, or one outside the folder, is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .bundle_files import MANIFEST, checksummed, file_problem, sha256_file
from .errors import BundleError, ChecksumError, ConfigError, build_dataclass
from .manifest_checks import manifest_problems, shown
from .preprocessing import PreprocessSpec

FORMAT = "edgedml-bundle"
FORMAT_VERSION = 1


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

    def path(self, relative: str, what: str = "file") -> Path:
        """The bundle file ``relative`` names, for loading: resolved (symlinks followed), inside
        the bundle folder and listed in ``files`` with its checksum, else :class:`BundleError`.
        Every loader of the runtime opens its files through here (``what`` names the file's role
        in the message: "embedder graph", "detector"...)."""
        if self.root is None:
            raise BundleError(f"the {what} {relative!r} cannot be opened: this manifest was not read from a "
                              f"bundle folder; use read_manifest(folder)")
        why = file_problem(relative)
        if why:
            raise BundleError(f"the bundle's {what} {shown(relative)} {why}; re-export the bundle")
        root = self.root.resolve()
        try:
            real = (root / relative).resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # missing, or a symlink loop
            raise BundleError(f"the bundle's {what} {root / relative} is missing or unreadable "
                              f"({exc.__class__.__name__}); re-export the bundle") from exc
        if not real.is_relative_to(root):
            raise BundleError(f"the bundle's {what} {relative} lies outside the bundle {root} (it resolves to "
                              f"{real}); copy the file into the bundle and re-export it")
        if relative not in self.files or real.relative_to(root).as_posix() not in self.files:
            raise BundleError(f"the bundle's {what} {relative} has no checksum in its manifest's 'files', so it "
                              f"cannot be trusted; re-export the bundle")
        if not real.is_file():
            raise BundleError(f"the bundle's {what} {relative} is not a file; re-export the bundle")
        return self.root / relative  # as the bundle names it (checked above through every symlink)

    def to_dict(self) -> dict:
        """The JSON body, as ``manifest.json`` holds it."""
        body = dataclasses.asdict(dataclasses.replace(self, root=None))  # nested dataclasses become dicts
        del body["extra"], body["root"]
        return {**self.extra, **body, "format": FORMAT, "format_version": FORMAT_VERSION}

    def write(self, root: str | Path) -> Manifest:
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
        tmp.unlink(missing_ok=True)  # a leftover, or a symlink planted there, is never written through
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(json.dumps(written.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return written

    def update(self, **changes) -> Manifest:
        """Change fields and rewrite the manifest (and every checksum) in the folder it was read
        from, atomically: ``manifest.update(thresholds={...})``."""
        if self.root is None:
            raise BundleError("this manifest was not read from a bundle folder; use write(folder)")
        return dataclasses.replace(self, **changes).write(self.root)

    @classmethod
    def from_dict(cls, data: dict, root: Path | None = None) -> Manifest:
        """Parse a manifest body; a malformed one raises :class:`BundleError` naming what is wrong."""
        where = root / MANIFEST if root else MANIFEST
        problems = manifest_problems(data)
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
            body["files"] = {name: FileEntry(e["sha256"], int(e.get("bytes", 0))) for name, e in data["files"].items()}
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
