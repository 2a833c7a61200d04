"""What the training and the device commands share: exit codes, one-line errors, engine building.

Imports neither torch nor onnx, so the device commands can use it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import click

EXIT_NO_ENGINE = 3  # the bundle is complete but TensorRT or a GPU is missing here
EXIT_REJECTED = 4  # verify/identify/compare ran and the answer is no (not the same person, unknown, no face)
EXIT_UNDECIDED = 5  # compare scored but had no threshold to decide with (uncalibrated bundle, none given)


class _Echo(logging.Handler):
    """A library logger's records as the command's own lines on stderr: the message alone."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


@contextlib.contextmanager
def echo_logs(name: str, level: int = logging.INFO) -> Iterator[None]:
    """While the block runs, echo the records of logger ``name`` (and its children) at ``level``
    and above on stderr, as lines of the command; the library itself only logs."""
    logger, handler = logging.getLogger(name), _Echo()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _fail(exc: Exception) -> None:
    """Turn an edgedml error into a one-line message and exit code 1 (click's error exit)."""
    raise click.ClickException(str(exc)) from exc


def _build_engines_or_explain(bundle, engine, max_batch, max_candidates) -> None:
    from ..runtime.inference.tensorrt import EngineUnavailable, build_engines

    try:
        build_engines(bundle, engine, max_batch, max_candidates, log=lambda m: click.echo(m, err=True))
    except EngineUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_NO_ENGINE) from None
