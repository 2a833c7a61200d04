"""Progress bars for the long loops of the command line (tqdm), quiet where nobody watches.

A library call shows no bar unless asked (``progress=True``); the CLI asks. Even then a bar is
drawn only when standard error is a terminal (tqdm's ``disable=None``), so logs, pipes, CI and
``CliRunner`` stay clean. tqdm is a core dependency and imported when a bar is made.
"""

from __future__ import annotations

from collections.abc import Iterable


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool = False):
    """A tqdm bar over ``iterable`` (or one to ``update()`` by hand, with ``total``), on stderr;
    disabled unless ``enabled`` and stderr is a TTY. Always a tqdm object: iterate it, call
    ``update(n)``, use it in ``with``."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled else True, leave=False,
                dynamic_ncols=True)
