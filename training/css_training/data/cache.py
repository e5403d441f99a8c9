"""Decoded-sample cache: arrays on disk keyed by the recording's content and the reading options.

A cache entry is a directory ``<cache_dir>/<key>/`` holding one ``.npy`` per array and ``index.json``. Every
file is written to a temporary name and ``os.replace``d, and the index goes last, so a directory without an
index is an interrupted run and is simply decoded again. The key hashes the bag's bytes, not its name or
mtime: a renamed or copied bag still hits, and a re-recorded one with the same name cannot. Arrays are read
back with ``np.load(mmap_mode='r')``, so a sequence larger than RAM is paged in sample by sample.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

__all__ = ['CACHE_VERSION', 'DiskStore', 'MemoryStore', 'SampleStore', 'content_key']

_log = logging.getLogger(__name__)

#: Bump when decoding changes what a cached sample holds, so old entries are no longer found.
CACHE_VERSION = 1

_BLOCK = 1 << 20
_INDEX = 'index.json'


def content_key(files: Sequence[Path], options: Mapping[str, Any]) -> str:
    """sha256 (hex) of the files' bytes, streamed in 1 MiB blocks, and of ``options`` as sorted JSON.

    Each file's length goes in before its bytes, so moving bytes from one file to the next changes the key.
    """
    digest = hashlib.sha256(json.dumps({'version': CACHE_VERSION, **options}, sort_keys=True).encode())
    for path in files:
        digest.update(path.stat().st_size.to_bytes(8, 'little'))
        with path.open('rb') as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


class SampleStore(Protocol):
    """Where a reader puts decoded arrays and its index, and where a sequence gets them back."""

    @property
    def path(self) -> Path | None:
        """The cache directory, or None when the samples live in memory."""
        ...

    def put(self, name: str, array: np.ndarray) -> None:
        """Store ``array`` under ``name``."""

    def get(self, name: str) -> np.ndarray:
        """The read-only array stored under ``name``."""
        ...

    def write_index(self, index: dict[str, Any]) -> None:
        """Store the index; for a disk store this completes the entry."""


class MemoryStore:
    """Samples kept in RAM, for reads without a cache directory."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self.index: dict[str, Any] | None = None

    @property
    def path(self) -> None:
        return None

    def put(self, name: str, array: np.ndarray) -> None:
        # Own contiguous copy (not a view into a message buffer), read-only like a memory-mapped cache array.
        stored = np.array(array, copy=True, order='C')
        stored.flags.writeable = False
        self._arrays[name] = stored

    def get(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def write_index(self, index: dict[str, Any]) -> None:
        self.index = index


class DiskStore:
    """One cache entry directory: ``<name>.npy`` files and ``index.json``."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self._path

    def put(self, name: str, array: np.ndarray) -> None:
        _atomic_write(self._path / f'{name}.npy', lambda stream: np.save(stream, np.asarray(array)))

    def get(self, name: str) -> np.ndarray:
        return np.load(self._path / f'{name}.npy', mmap_mode='r')

    def read_index(self) -> dict[str, Any] | None:
        """The complete entry's index; None when the entry is absent, interrupted or of another version."""
        path = self._path / _INDEX
        try:
            index = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            _log.warning('ignoring the unreadable cache index %s (%s); decoding again', path, err)
            return None
        return index if index.get('version') == CACHE_VERSION else None

    def write_index(self, index: dict[str, Any]) -> None:
        text = json.dumps({**index, 'version': CACHE_VERSION}, indent=1).encode()
        _atomic_write(self._path / _INDEX, lambda stream: stream.write(text))


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same directory, fsync, then ``os.replace`` onto ``path``.

    A reader (or a crash) never sees a half-written file, and two processes filling the same entry at once
    each replace whole files with identical content.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
