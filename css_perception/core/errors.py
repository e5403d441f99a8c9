"""Errors raised by the numeric core. All are ``ValueError`` subclasses: bad input, never a bug."""

from __future__ import annotations


class CoreError(ValueError):
    """Base class of the core's errors."""


class ConversionError(CoreError):
    """A message cannot be converted: malformed, unsupported layout or encoding."""


class ProjectionError(CoreError):
    """Points or a projection spec are unusable."""


class MetadataError(CoreError):
    """A model's metadata is missing or inconsistent."""


class OntologyError(CoreError):
    """The class ontology file is malformed."""
