"""The per-epoch progress bar of a training run."""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar on rank 0 showing loss, images/s and ETA (plain lines when not a terminal)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, file=sys.stderr)

    def update(self, **postfix) -> None:
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
