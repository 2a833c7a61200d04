"""File modes of what edgedml writes for users (stdlib only).

Temporary files and folders (mkdtemp, safetensors' writer) are private to their owner (0700,
0600). Bundles and checkpoints are meant to be read by services running as other users, so once
written they get the modes any new file or folder gets under the user's umask.
"""

from __future__ import annotations

import os
from pathlib import Path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def as_created(*paths: str | Path) -> None:
    """chmod each path (recursively for folders) to 0666/0777 minus the umask."""
    mask = umask()
    for root in map(Path, paths):
        for path in [root, *(root.rglob("*") if root.is_dir() else ())]:
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a new temporary file beside it, renamed over ``path`` once
    complete (with the modes of a new file): a reader never sees half a file, and a link planted at
    ``path`` (or at a fixed temporary name) is replaced, never written through."""
    import tempfile

    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        as_created(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
