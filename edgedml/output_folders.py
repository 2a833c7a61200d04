"""Folders of results written whole (stdlib only): a bundle (``edgedml export``), a set of face
crops (``edgedml crop-faces``).

Each is written into a hidden staging folder beside its final path and renamed into place only
when complete, so an interrupted or failed run leaves nothing under the name. An existing folder
there is replaced only when its writer says it holds nothing but its own files (each writer
decides that before its work starts); it is first renamed aside, so a failure leaves the old
folder or the new one under the name, never neither. A link is never written through.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import ConfigError
from .filemodes import as_created


def refuse_link(out: Path, option: str) -> None:
    """A link named as the output is refused: what it points to would be replaced, not the link."""
    if out.is_symlink():
        raise ConfigError(f"{option} {out} is a symbolic link (to {os.readlink(out)}); edgedml does not write "
                          f"through links: pass the folder itself or a new path")


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` (the parent is made), to be renamed to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out`` (with the modes of a new folder); an
    old folder there is first renamed aside, and deleted once the new one is in place."""
    as_created(staging)  # mkdtemp made it 0700: services running as other users must read it
    if not out.exists():
        os.replace(staging, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(aside / out.name, out)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)
