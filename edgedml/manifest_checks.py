"""What may be wrong with a manifest body (stdlib only): each part the runtime opens files or sizes
buffers from is checked before :meth:`edgedml.bundle.Manifest.from_dict` builds anything, and every
problem is named in one message (:func:`manifest_problems`): the required objects, the checksums,
the thresholds, both graphs' files and tensor shapes, the graph sets per precision, the batch
limits, and the files named by the detector, the validation data and the engines.
"""

from __future__ import annotations

import re

from .bundle_files import file_problem

REQUIRED = ("preprocessing", "embedder", "matcher")
GRAPH_KEYS = ("embedder", "matcher")  # what one precision's graph set holds
AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a dynamic dimension ("batch", "K")


def manifest_problems(data: dict) -> list[str]:
    """Everything malformed in a manifest body, one phrase each (empty: it can be parsed)."""
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
    return problems


def shown(value) -> str:
    """A manifest value as an error names it: its repr on one line, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


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
        problems.append(f"'{graph}.file' {shown(body['file'])} {file_problem(body['file'])}")
    for side in ("inputs", "outputs"):
        tensors = body.get(side)
        if side not in body:
            continue  # named by build_dataclass as a missing argument
        if not isinstance(tensors, dict) or not tensors:
            problems.append(f"'{graph}.{side}' {shown(tensors)} is not an object of tensor shapes")
            continue
        for name, dims in tensors.items():
            if not isinstance(dims, list) or not all(_is_dim(d) for d in dims):
                problems.append(f"the shape of {graph} {side[:-1]} '{name}' {shown(dims)} is not a list of whole "
                                f"numbers ≥ 1 and axis names")
    return problems


def _graph_set_problems(graphs) -> list[str]:
    """The malformed entries of ``graphs`` (precision → {"embedder": file, "matcher": file})."""
    if not isinstance(graphs, dict):
        return [f"'graphs' {shown(graphs)} is not an object of precision → {{embedder, matcher}} files"]
    problems = []
    for precision, entry in graphs.items():
        where = f"graphs[{shown(precision)}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} {shown(entry)} is not an object with an 'embedder' and a 'matcher' file")
            continue
        missing = [key for key in GRAPH_KEYS if key not in entry]
        unknown = sorted(str(key) for key in entry if key not in GRAPH_KEYS)
        if missing:
            problems.append(f"{where} lacks {missing}")
        if unknown:
            problems.append(f"{where} has unknown keys {unknown} (known: {list(GRAPH_KEYS)})")
        for key in GRAPH_KEYS:
            if key in entry and file_problem(entry[key]):
                problems.append(f"{where}['{key}'] {shown(entry[key])} {file_problem(entry[key])}")
    return problems


def _limit_problems(limits) -> list[str]:
    """The malformed entries of ``limits`` (graph → {"size": int ≥ 1 or null, "fixed": bool})."""
    if not isinstance(limits, dict):
        return [f"'limits' {shown(limits)} is not an object of graph → limit"]
    problems = []
    for graph, limit in limits.items():
        if limit is None:
            continue
        size = limit.get("size") if isinstance(limit, dict) else None
        if (not isinstance(limit, dict) or set(limit) - {"size", "fixed"}
                or not (size is None or (type(size) is int and size >= 1))
                or not isinstance(limit.get("fixed", False), bool)):
            problems.append(f"limits[{shown(graph)}] {shown(limit)} is not {{'size': a whole number ≥ 1 or null, "
                            f"'fixed': true or false}}")
    return problems


def _named_file_problems(data: dict) -> list[str]:
    """The malformed file names of the detector, the validation data, the engines and ``files``."""
    problems = []
    detector = data.get("detector")
    if detector is not None and (not isinstance(detector, dict) or file_problem(detector.get("file"))):
        problems.append(f"'detector' names no file inside the bundle ({shown(detector)})")
    stored = data.get("validation_inputs") or {}
    named = [("validation_inputs.inputs", stored.get("inputs"))] if isinstance(stored, dict) and stored else []
    outputs = stored.get("outputs", {}) if isinstance(stored, dict) else None
    if not isinstance(stored, dict) or not isinstance(outputs, dict):
        problems.append(f"'validation_inputs' {shown(stored)} is not "
                        "{'inputs': file, 'outputs': {precision: file}}")
    else:
        named += [(f"validation_inputs.outputs[{shown(p)}]", f) for p, f in outputs.items()]
    engines = data.get("engines") or {}
    if not isinstance(engines, dict) or not all(isinstance(e, dict) for e in engines.values()):
        problems.append(f"'engines' {shown(engines)} is not an object of precision → engines")
    else:
        for precision, entry in engines.items():
            for graph in GRAPH_KEYS:
                file = entry[graph].get("file") if isinstance(entry.get(graph), dict) else None
                if graph in entry:
                    named.append((f"engines[{shown(precision)}]['{graph}']",
                                  f"engines/{file}" if isinstance(file, str) and file else file))
    for where, name in named:
        why = file_problem(name)
        if why:
            problems.append(f"{where} {shown(name)} {why}")
    for name in data.get("files") or {}:  # listed files are read to verify them: never outside the folder
        why = file_problem(name)
        if why and why.startswith("is not"):
            problems.append(f"files[{shown(name)}] {why}")
    return problems
