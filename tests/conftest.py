import os
from pathlib import Path

import pytest

# ../shared/data beside the project root; EDGEDML_DATA overrides it.
DATA_DIR = Path(os.environ.get("EDGEDML_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


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
