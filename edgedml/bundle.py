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

Every file the runtime loads (graphs of every precision, the detector, the validation data,
TensorRT engines) is opened through :meth:`Manifest.path`, the one place that resolves a name
(symlinks included), keeps it inside the bundle and requires its checksum in ``files``: a graph
the manifest names but does not checksum, or one outside the folder, is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import BundleError, ChecksumError, ConfigError, build_dataclass
from .preprocessing import PreprocessSpec

MANIFEST = "manifest.json"
FORMAT = "edgedml-bundle"
FORMAT_VERSION = 1
REPORTS = frozenset({"calibration_roc.png", "calibration_scores.png"})
CACHE_FOLDER = "cache"
REQUIRED = ("preprocessing", "embedder", "matcher")
GRAPH_KEYS = ("embedder", "matcher")  # what one precision's graph set holds
AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a dynamic dimension ("batch", "K")


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


def _show(value, width: int = 60) -> str:
    """A manifest value as an error names it: its repr on one line, cut short."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


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


def _is_dim(value) -> bool:
    """A shape's dimension: a whole number ≥ 1, or an axis name for a dynamic one."""
    if isinstance(value, str):
        return AXIS_NAME.fullmatch(value) is not None
    return type(value) is int and value >= 1


def _graph_io_problems(graph: str, body: dict) -> list[str]:
    """The malformed parts of the manifest's ``embedder`` or ``matcher`` entry: its file and
    the shapes of its inputs and outputs."""
    problems = []
    if "file" in body and file_problem(body["file"]):
        problems.append(f"'{graph}.file' {_show(body['file'])} {file_problem(body['file'])}")
    for side in ("inputs", "outputs"):
        tensors = body.get(side)
        if side not in body:
            continue  # named by build_dataclass as a missing argument
        if not isinstance(tensors, dict) or not tensors:
            problems.append(f"'{graph}.{side}' {_show(tensors)} is not an object of tensor shapes")
            continue
        for name, dims in tensors.items():
            if not isinstance(dims, list) or not all(_is_dim(d) for d in dims):
                problems.append(f"the shape of {graph} {side[:-1]} '{name}' {_show(dims)} is not a list of whole "
                                f"numbers ≥ 1 and axis names")
    return problems


def _graph_set_problems(graphs) -> list[str]:
    """The malformed entries of ``graphs`` (precision → {"embedder": file, "matcher": file})."""
    if not isinstance(graphs, dict):
        return [f"'graphs' {_show(graphs)} is not an object of precision → {{embedder, matcher}} files"]
    problems = []
    for precision, entry in graphs.items():
        where = f"graphs[{_show(precision)}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} {_show(entry)} is not an object with an 'embedder' and a 'matcher' file")
            continue
        missing = [key for key in GRAPH_KEYS if key not in entry]
        unknown = sorted(str(key) for key in entry if key not in GRAPH_KEYS)
        if missing:
            problems.append(f"{where} lacks {missing}")
        if unknown:
            problems.append(f"{where} has unknown keys {unknown} (known: {list(GRAPH_KEYS)})")
        for key in GRAPH_KEYS:
            if key in entry and file_problem(entry[key]):
                problems.append(f"{where}['{key}'] {_show(entry[key])} {file_problem(entry[key])}")
    return problems


def _limit_problems(limits) -> list[str]:
    """The malformed entries of ``limits`` (graph → {"size": int ≥ 1 or null, "fixed": bool})."""
    if not isinstance(limits, dict):
        return [f"'limits' {_show(limits)} is not an object of graph → limit"]
    problems = []
    for graph, limit in limits.items():
        if limit is None:
            continue
        size = limit.get("size") if isinstance(limit, dict) else None
        if (not isinstance(limit, dict) or set(limit) - {"size", "fixed"}
                or not (size is None or (type(size) is int and size >= 1))
                or not isinstance(limit.get("fixed", False), bool)):
            problems.append(f"limits[{_show(graph)}] {_show(limit)} is not {{'size': a whole number ≥ 1 or null, "
                            f"'fixed': true or false}}")
    return problems


def _named_file_problems(data: dict) -> list[str]:
    """The malformed file names of the detector, the validation data, the engines and ``files``."""
    problems = []
    detector = data.get("detector")
    if detector is not None and (not isinstance(detector, dict) or file_problem(detector.get("file"))):
        problems.append(f"'detector' names no file inside the bundle ({_show(detector)})")
    stored = data.get("validation_inputs") or {}
    named = [("validation_inputs.inputs", stored.get("inputs"))] if isinstance(stored, dict) and stored else []
    outputs = stored.get("outputs", {}) if isinstance(stored, dict) else None
    if not isinstance(stored, dict) or not isinstance(outputs, dict):
        problems.append(f"'validation_inputs' {_show(stored)} is not "
                        "{'inputs': file, 'outputs': {precision: file}}")
    else:
        named += [(f"validation_inputs.outputs[{_show(p)}]", f) for p, f in outputs.items()]
    engines = data.get("engines") or {}
    if not isinstance(engines, dict) or not all(isinstance(e, dict) for e in engines.values()):
        problems.append(f"'engines' {_show(engines)} is not an object of precision → engines")
    else:
        for precision, entry in engines.items():
            for graph in GRAPH_KEYS:
                file = entry[graph].get("file") if isinstance(entry.get(graph), dict) else None
                if graph in entry:
                    named.append((f"engines[{_show(precision)}]['{graph}']",
                                  f"engines/{file}" if isinstance(file, str) and file else file))
    for where, name in named:
        why = file_problem(name)
        if why:
            problems.append(f"{where} {_show(name)} {why}")
    for name in data.get("files") or {}:  # listed files are read to verify them: never outside the folder
        why = file_problem(name)
        if why and why.startswith("is not"):
            problems.append(f"files[{_show(name)}] {why}")
    return problems


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
            raise BundleError(f"the bundle's {what} {_show(relative)} {why}; re-export the bundle")
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
        problems = [f"'{key}' is missing or not an object" for key in REQUIRED if not isinstance(data.get(key), dict)]
        files = data.get("files")
        if not isinstance(files, dict) or not files or not all(
                isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values()):
            problems.append("'files' lists no checksums, so nothing in it can be trusted")
        thresholds = data.get("thresholds", {})
        if not isinstance(thresholds, dict) or not all(
                isinstance(e, dict) and type(e.get("threshold")) in (int, float) for e in thresholds.values()):
            problems.append("'thresholds' holds a threshold that is not a number")
        if not problems:  # the parts the runtime opens files and sizes buffers from
            problems += _graph_set_problems(data.get("graphs", {})) + _limit_problems(data.get("limits", {}))
            problems += [p for graph in ("embedder", "matcher") for p in _graph_io_problems(graph, data[graph])]
            problems += _named_file_problems(data)
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
