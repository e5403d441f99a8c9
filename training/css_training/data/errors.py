"""Errors raised while reading recorded data. All are ``ValueError`` subclasses: bad input, never a bug."""

from __future__ import annotations

__all__ = [
    'BagError',
    'DataError',
    'FieldNotFoundError',
    'KittiError',
    'LabelMismatchError',
    'PoseError',
    'TopicNotFoundError',
    'TopicTypeError',
]


class DataError(ValueError):
    """Base class of the data readers' errors."""


class BagError(DataError):
    """A bag cannot be opened or written: missing, not a bag, or damaged beyond what can be salvaged."""


class TopicNotFoundError(DataError):
    """A requested topic is not in the bag; the message lists the topics the bag has."""


class TopicTypeError(DataError):
    """A topic holds another message type than the reader needs."""


class FieldNotFoundError(DataError):
    """A point cloud lacks a requested field; the message lists the fields it has."""


class LabelMismatchError(DataError):
    """Labels do not fit their sample: another point count or image size."""


class PoseError(DataError):
    """A pose cannot be computed: no transform chain, or a time outside the recorded range."""


class KittiError(DataError):
    """A SemanticKITTI sequence folder is incomplete or malformed."""
