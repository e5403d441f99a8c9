"""The model registry: versioned ONNX files per modality and a ``CURRENT`` pointer, written atomically.

Layout: ``<root>/<modality>/<version>.onnx``, ``<version>.onnx.sha256`` and ``<root>/<modality>/CURRENT`` holding a
version name. Every file is written to a temporary file in the same directory, fsynced, then ``os.replace``d, so a
reader (the node's watcher) sees the old or the new file, never a partial one. Names read back from disk are
confined to the modality's directory: a ``CURRENT`` naming ``..``, an absolute path or a symlink that leads
elsewhere is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from css_perception.core.metadata import Modality
from css_perception.runtime.errors import ChecksumError, PathEscapeError, RegistryError

__all__ = ['Registry', 'RegistryEntry', 'sha256_of']

_VERSION = re.compile(r'^v(\d+)$')
CURRENT = 'CURRENT'


@dataclass(frozen=True)
class RegistryEntry:
    modality: Modality
    version: str
    path: Path
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open('rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Registry:
    """One model directory shared by the exporter (writer) and the node (reader)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def directory(self, modality: Modality | str) -> Path:
        return self.root / Modality(modality).value

    def _confined(self, modality: Modality, version: str) -> Path:
        """The file of ``version``, refusing any name that could leave the modality's directory."""
        if not version or Path(version).is_absolute() or '..' in version or '/' in version or '\\' in version:
            raise PathEscapeError(f'{modality.value} registry entry {version!r} is not a plain version name')
        directory = self.directory(modality).resolve()
        path = directory / f'{version}.onnx'
        if path.exists() and directory not in path.resolve().parents:
            raise PathEscapeError(f'{path} resolves to {path.resolve()}, outside {directory}')
        return path

    def entry(self, modality: Modality | str, version: str) -> RegistryEntry:
        """The recorded entry of ``version``.

        Raises:
            PathEscapeError: the name leaves the registry directory.
            RegistryError: the model file or its checksum file is missing.
        """
        modality = Modality(modality)
        path = self._confined(modality, version)
        if not path.is_file():
            known = ', '.join(e.version for e in self.versions(modality)) or 'none'
            raise RegistryError(f'{modality.value} model {version!r} not in {self.directory(modality)} (has: {known})')
        checksum = path.with_name(path.name + '.sha256')
        if not checksum.is_file():
            raise ChecksumError(f'{checksum} is missing: {path.name} cannot be verified')
        return RegistryEntry(modality, version, path, checksum.read_text().split()[0])

    def versions(self, modality: Modality | str) -> list[RegistryEntry]:
        """Every published version, oldest first."""
        directory = self.directory(modality)
        if not directory.is_dir():
            return []
        names = [p.name[: -len('.onnx')] for p in directory.glob('v*.onnx')]
        numbered = sorted((int(m.group(1)), n) for n in names if (m := _VERSION.match(n)))
        return [self.entry(modality, name) for _, name in numbered]

    def next_version(self, modality: Modality | str) -> str:
        names = [p.name[: -len('.onnx')] for p in self.directory(modality).glob('v*.onnx')]
        numbers = [int(m.group(1)) for n in names if (m := _VERSION.match(n))]
        return f'v{max(numbers, default=0) + 1}'

    def current(self, modality: Modality | str) -> RegistryEntry | None:
        """The entry ``CURRENT`` names; None when nothing was published yet."""
        modality = Modality(modality)
        pointer = self.directory(modality) / CURRENT
        if not pointer.is_file():
            return None
        return self.entry(modality, pointer.read_text().strip())

    def set_current(self, modality: Modality | str, version: str) -> RegistryEntry:
        entry = self.entry(modality, version)
        _atomic_write(self.directory(modality) / CURRENT, f'{version}\n'.encode())
        return entry

    def publish(
        self, onnx_path: str | Path, modality: Modality | str, version: str | None = None, *, make_current: bool = True
    ) -> RegistryEntry:
        """Copy a model in as ``version`` (default: the next one), record its sha256, and point ``CURRENT`` at it.

        Raises:
            RegistryError: the version exists already (published models are immutable), or the registry cannot
                be written.
        """
        modality = Modality(modality)
        directory = self.directory(modality)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RegistryError(f'cannot create the registry directory {directory}: {err}') from err
        version = version or self.next_version(modality)
        target = self._confined(modality, version)
        if target.exists():
            raise RegistryError(f'{modality.value} model {version} exists already; published models are immutable')
        data = Path(onnx_path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        try:
            _atomic_write(target, data)
            _atomic_write(target.with_name(target.name + '.sha256'), f'{digest}  {target.name}\n'.encode())
        except OSError as err:
            raise RegistryError(f'cannot write {target}: {err}') from err
        entry = RegistryEntry(modality, version, target, digest)
        if make_current:
            self.set_current(modality, version)
        return entry

    def rollback(self, modality: Modality | str) -> RegistryEntry:
        """Point ``CURRENT`` at the version published before the current one.

        Raises:
            RegistryError: nothing is current, or the current version is the oldest.
        """
        current = self.current(modality)
        versions = [e.version for e in self.versions(modality)]
        if current is None or versions.index(current.version) == 0:
            raise RegistryError(f'no {Modality(modality).value} version before {current and current.version}')
        return self.set_current(modality, versions[versions.index(current.version) - 1])

    def prune(self, modality: Modality | str, keep: int) -> list[RegistryEntry]:
        """Delete every version but the newest ``keep`` and the current one; returns those deleted.

        Every continual step publishes a version, so a robot that retrains in the field fills its disk; the node
        serves only ``CURRENT``, and the newest versions stay for ``rollback`` and ``add-classes --from``.

        Raises:
            RegistryError: ``keep`` < 1 (the newest version always stays: version numbers never repeat).
        """
        if keep < 1:
            raise RegistryError(f'prune keeps at least the newest version, not {keep}')
        current = self.current(modality)
        old = self.versions(modality)[:-keep]
        removed = [e for e in old if current is None or e.version != current.version]
        for entry in removed:  # the model first: a version is listed by its .onnx file
            entry.path.unlink()
            entry.path.with_name(entry.path.name + '.sha256').unlink(missing_ok=True)
        return removed

    def verify(self, entry: RegistryEntry) -> None:
        """Raises ChecksumError when the file's sha256 is not the one recorded at publish time."""
        actual = sha256_of(entry.path)
        if actual != entry.sha256:
            raise ChecksumError(f'{entry.path.name}: sha256 {actual[:12]}... != recorded {entry.sha256[:12]}...')
