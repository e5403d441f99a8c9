"""Errors of the onboard runtime: a model or registry entry that must not serve. All are ``ValueError``s."""

from __future__ import annotations

__all__ = [
    'ChecksumError',
    'ModelLoadError',
    'ModelValidationError',
    'PathEscapeError',
    'RegistryError',
    'RuntimeModelError',
]


class RuntimeModelError(ValueError):
    """Base class: a model cannot be used; the message says why."""


class ModelLoadError(RuntimeModelError):
    """The file is missing or ONNX Runtime cannot read it (truncated, not ONNX)."""


class ModelValidationError(RuntimeModelError):
    """The model loads but breaks the contract: metadata, shapes, or non-finite outputs."""


class RegistryError(RuntimeModelError):
    """The model registry is missing an entry or is inconsistent."""


class PathEscapeError(RegistryError):
    """A registry entry points outside the registry directory."""


class ChecksumError(RegistryError):
    """A model file's sha256 differs from the one recorded at publish time."""
