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
