import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent  # this folder: the helper modules (crafted_images, fleet_door...)
ROOT = TESTS.parent  # the repository
SHARED = ROOT.parent / "shared"  # data and models beside the repository (../shared)
# ../shared/data beside the project root; EDGEDML_DATA overrides it.
DATA_DIR = Path(os.environ.get("EDGEDML_DATA", SHARED / "data"))


# Prepended to a subprocess's code: any import of torch (or what needs it) or of onnx fails, as on
# a device that has neither (onnxruntime stays importable); used to prove the runtime and the
# device commands never import them.
BLOCK_TORCH = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchvision', 'timm', 'pytorch_metric_learning', 'onnx'):\n"
    "            raise ImportError(f'{name} is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
)


SHIPPED = ROOT / "samples" / "images"  # real photos in the repo
# the YuNet face detector beside the data (OpenCV model zoo, MIT licence)
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
# the tiny random model of the tests (64 px, 2×2 regions, upsample 4): tiny_bundle exports it
TINY = dict(image_size=64, grid=2, upsample=4)


def benchmark_helper(name: str):
    """A helper module of ``benchmarks/`` (not part of the package: the benchmarks import it as a
    sibling script), e.g. ``benchmark_helper("composites")`` for the face-in-a-scene frames."""
    import importlib.util
    import sys

    if name not in sys.modules:
        path = ROOT / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.fixture(autouse=True)
def _no_child_process_outlives_its_test():
    """Kill the multiprocessing children a test left running. Only a failed test leaves any: one
    stopped by pytest-timeout (its signal method fails the test where it waits, in join) would
    otherwise leave mp.spawn's ranks running, and Python waits for them when pytest exits."""
    yield
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
        child.join(10)


def run_blocked(code: str) -> str:
    """Run ``code`` in a fresh Python where torch, timm and onnx cannot be imported (as on a
    device), assert it succeeded and that none of them was loaded; returns its stdout."""
    import subprocess
    import sys

    check = "\nassert not any(k.split('.')[0] in ('torch', 'timm', 'onnx') for k in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH + code + check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def data_path_or_none(*parts: str) -> Path | None:
    """A folder under the shared data, or None where it is absent (for tests that also run on the
    shipped photos)."""
    path = DATA_DIR.joinpath(*parts)
    return path if path.is_dir() else None


def data_path(*parts: str) -> Path:
    """A folder under the shared data, or a skip naming where it was looked for."""
    path = DATA_DIR.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"real-image data not found at {path} (set EDGEDML_DATA to the shared data folder)")
    return path


@pytest.fixture
def flowers_dir() -> Path:
    return data_path("flowers17")


@pytest.fixture
def yalefaces_dir() -> Path:
    return data_path("yalefaces")


@pytest.fixture(scope="session")
def yunet() -> str:
    """The detector spec "yunet:PATH" of :data:`YUNET`, or a skip naming where it was looked for."""
    if not YUNET.is_file():
        pytest.skip(f"the YuNet model is not at {YUNET} (see ../shared/models/README.md)")
    return f"yunet:{YUNET}"


def exported_once(tmp_path_factory, name: str, model):
    """Export ``model`` (seeded, in eval mode) once into a fresh folder and yield (model, bundle);
    at teardown prove that no test changed it: every checksum holds and no file came or went."""
    from edgedml.bundle import read_manifest
    from edgedml.export.exporter import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp(name) / "bundle"
    export_bundle(model, out, ExportOptions(validation_images=2), log=lambda m: None)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    yield model, out
    read_manifest(out)  # every checksum still holds
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before, f"a test wrote into {name}_bundle"


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    """(model, bundle): the default model (ImageNet Lite0, DIML head seeded with 0) at 96 px,
    exported once for the whole session; every export costs seconds. Read it, never change it:
    a test that calibrates or corrupts a bundle copies it first. The teardown proves no test did."""
    import torch

    from edgedml.models import ModelConfig, build_model

    torch.manual_seed(0)
    yield from exported_once(tmp_path_factory, "small", build_model(ModelConfig(image_size=96)).eval())


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """(model, bundle): a tiny random model (64 px, 2×2 regions, upsample 4, no pretrained weights,
    seeded with 0), exported once for the whole session; the modules that need a bundle of their
    own (to enroll into, calibrate, corrupt or chmod) copy it instead of exporting it again (an
    export costs 10-20 s on 2 cores, the most of the fast tier's time). Never change it."""
    import torch

    from edgedml.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY), pretrained=False).eval()
    yield from exported_once(tmp_path_factory, "tiny", model)


def start_postgres(folder: Path):
    """A PostgreSQL server with pgvector, from the pgserver wheel, in ``folder`` (skips the test,
    with the reason, where it cannot start)."""
    try:
        import pgserver
    except ImportError:
        pytest.skip("pgserver is not installed: pip install -e '.[dev]' (it ships PostgreSQL with pgvector)")
    try:
        return pgserver.get_server(folder, cleanup_mode="delete")
    except Exception as exc:  # noqa: BLE001 - any failure to start means: no server on this machine
        pytest.skip(f"PostgreSQL from the pgserver wheel could not start here ({type(exc).__name__}: {exc})")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One PostgreSQL + pgvector server for the session; each test takes a database of its own."""
    server = start_postgres(tmp_path_factory.mktemp("postgres") / "pgdata")
    yield server
    server.cleanup()


@pytest.fixture
def fleet_url(postgres_server):
    """postgresql:// URL of a new, empty database on the session's server."""
    import uuid

    import psycopg

    name = f"fleet_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return postgres_server.get_uri(database=name)


def kill_mid_enrollment(location: str, bundle: Path, write: tuple[str, str, str], images: list[Path]) -> None:
    """Enroll ``images`` into the gallery at ``location`` in a child process that pauses inside
    the enrollment transaction, right after ``write`` = (module, class, method) has sent its
    rows, and kill -9 it there."""
    import signal
    import subprocess
    import sys

    module, owner, method = write
    child = (
        "import importlib, time\n"
        "from edgedml.runtime import Matcher\n"
        "from edgedml.runtime.gallery.gallery import Gallery\n"
        f"owner = getattr(importlib.import_module({module!r}), {owner!r})\n"
        f"original = getattr(owner, {method!r})\n"
        "def slow(self, *args, **kwargs):\n"
        "    original(self, *args, **kwargs)\n"
        "    print('inserted', flush=True)\n"
        "    time.sleep(60)\n"
        f"setattr(owner, {method!r}, slow)\n"
        f"Gallery({location!r}, Matcher({str(bundle)!r})).enroll('pansy', {[str(i) for i in images]!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "inserted"  # rows written, transaction open
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
