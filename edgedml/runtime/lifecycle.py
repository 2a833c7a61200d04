"""Closing what holds a device's resources: :class:`ClosedError`, the one-line error of a
:class:`~.matching.matcher.Matcher`, :class:`~.gallery.gallery.Gallery` or backend used after ``close()``."""

from __future__ import annotations

from ..errors import EdgeDMLError


class ClosedError(EdgeDMLError, RuntimeError):
    """A Matcher, Gallery or backend was used after ``close()`` (or after its ``with`` block)."""
