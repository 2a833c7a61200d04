import os
from pathlib import Path

import pytest

# ../shared/data beside the project root; EDGEDML_DATA overrides it.
DATA_DIR = Path(os.environ.get("EDGEDML_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


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


SHIPPED = Path(__file__).resolve().parents[1] / "samples" / "images"  # real photos in the repo


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
