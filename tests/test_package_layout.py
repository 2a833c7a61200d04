"""The house rules of the package, read from its source (no import is executed): no import circle
anywhere, the runtime's rooms used in one direction, and no source file a reader cannot hold."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgedml"
MAX_LINES = 350
ROOMS = ("inference", "faces", "matching", "gallery", "assurance")  # each uses only those before it
# ...but for the thresholds every decision uses (they use nothing in the runtime), and
# Matcher.faithfulness, which imports the faithfulness curves when it is called.
UPWARD = {("matching", "assurance.thresholds"), ("gallery", "assurance.thresholds"),
          ("matching", "assurance.faithfulness")}


def _modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = file
    return found


def _imported(name: str, file: Path) -> set[str]:
    """Every absolute name ``file`` (the module ``name``) imports, at the top or inside a function,
    typing-only imports included; ``from m import x`` gives both ``m`` and ``m.x``."""
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    """module → the package's modules it imports (see :func:`_imported`): ``from . import x``
    counts as importing the module ``x``."""
    modules = _modules()
    return {name: {t for t in _imported(name, file) if t in modules and t != name} for name, file in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere_in_the_package():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "runtime" and parts[2] in ROOMS else None


def test_the_runtime_rooms_are_used_in_one_direction():
    wrong = []
    for module, targets in import_graph().items():
        here = _room(module)
        for target in targets:
            there = _room(target)
            if here and there and ROOMS.index(there) > ROOMS.index(here) \
                    and (here, target.split(".", 2)[2]) not in UPWARD:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


HEAVY = ("torch", "torchvision", "timm", "onnx", "onnxscript", "pytorch_metric_learning")
# what a device runs: the runtime and the device commands (cli/training.py is the torch side)
DEVICE_SIDE = ("edgedml.runtime", *(f"edgedml.cli.{module}" for module in
                                    ("device", "gallery", "assurance", "options", "common", "forms", "params")))


@pytest.mark.parametrize("root", DEVICE_SIDE)
def test_the_device_side_reaches_no_torch_or_onnx(root):
    """Nothing the device side imports, directly or through the package's modules it imports
    (models, training and export need torch), and lazily inside functions a run reaches only on
    some paths, imports torch or onnx."""
    modules, graph = _modules(), import_graph()
    reached = {m: m for m in modules if m == root or m.startswith(root + ".")}  # module → how it was reached
    todo = list(reached)
    while todo:
        module = todo.pop()
        for target in graph[module] - reached.keys():
            reached[target] = f"{reached[module]} -> {target}"
            todo.append(target)
    heavy = [f"{chain} imports {name}" for module, chain in reached.items()
             for name in sorted(_imported(module, modules[module])) if name.split(".")[0] in HEAVY]
    assert reached, f"no module of {root}"
    assert heavy == []


@pytest.mark.parametrize("file", sorted(PACKAGE.rglob("*.py")), ids=lambda f: str(f.relative_to(PACKAGE)))
def test_no_source_file_is_longer_than_a_reader_can_hold(file):
    lines = len(file.read_text().splitlines())
    assert lines <= MAX_LINES, f"{file.relative_to(PACKAGE)} has {lines} lines: split it by concern"


def _resolves(target: str) -> bool:
    import importlib

    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_cross_reference_in_the_docstrings_names_something_that_exists():
    """``:class:`~.roi.View``` and ``:mod:`edgedml.runtime.gallery``` point at real modules and
    names, so a reader following one after a move does not land nowhere."""
    import re

    reference = re.compile(r":(?:mod|class|func|meth|attr|data|exc):`~?([\w.]+)`")
    broken = []
    for name, file in _modules().items():
        package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
        text = file.read_text()
        for match in reference.finditer(text):
            ref = match.group(1)
            if ref.startswith("."):
                level = len(ref) - len(ref.lstrip("."))
                base = package.split(".")[: len(package.split(".")) - level + 1]
                target = ".".join(base + ([ref.lstrip(".")] if ref.lstrip(".") else []))
            elif ref.startswith("edgedml"):
                target = ref
            else:
                continue  # a bare name is the module's own
            if not _resolves(target):
                line = text[:match.start()].count("\n") + 1
                broken.append(f"{file.relative_to(PACKAGE)}:{line}: {match.group(0)}")
    assert broken == []
