"""What the training and the device commands share: exit codes, one-line errors, engine building.

Imports neither torch nor onnx, so the device commands can use it."""

from __future__ import annotations

import click

EXIT_NO_ENGINE = 3  # the bundle is complete but TensorRT or a GPU is missing here
EXIT_REJECTED = 4  # verify/identify/compare ran and the answer is no (not the same person, unknown, no face)
EXIT_UNDECIDED = 5  # compare scored but had no threshold to decide with (uncalibrated bundle, none given)


def _fail(exc: Exception) -> None:
    """Turn an edgedml error into a one-line message and exit code 1 (click's error exit)."""
    raise click.ClickException(str(exc)) from exc


def _build_engines_or_explain(bundle, engine, max_batch, max_candidates) -> None:
    from ..runtime.tensorrt import EngineUnavailable, build_engines

    try:
        build_engines(bundle, engine, max_batch, max_candidates, log=lambda m: click.echo(m, err=True))
    except EngineUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_NO_ENGINE)
