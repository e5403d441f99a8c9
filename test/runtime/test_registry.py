"""The model registry: versions, CURRENT, rollback, checksums, path confinement, atomic publish."""

from __future__ import annotations

import threading

import pytest
from support.onnx_models import lidar_metadata, write_model

from css_perception.core.metadata import Modality
from css_perception.runtime.errors import ChecksumError, PathEscapeError, RegistryError
from css_perception.runtime.registry import Registry

L = Modality.LIDAR


@pytest.fixture
def registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / 'models')
    for v in ('v1', 'v2'):
        reg.publish(write_model(tmp_path / f'{v}.onnx', lidar_metadata(v)), L, v)
    return reg


def test_publish_versions_current_rollback(registry: Registry, tmp_path) -> None:
    assert [e.version for e in registry.versions(L)] == ['v1', 'v2']
    assert registry.current(L).version == 'v2'
    assert registry.next_version(L) == 'v3'
    entry = registry.publish(write_model(tmp_path / 'x.onnx', lidar_metadata('v3')), L)
    assert (entry.version, registry.current(L).version) == ('v3', 'v3')
    registry.verify(entry)
    assert registry.rollback(L).version == 'v2'
    assert registry.current(L).version == 'v2'
    assert registry.current(Modality.CAMERA) is None


def test_published_versions_are_immutable(registry: Registry, tmp_path) -> None:
    with pytest.raises(RegistryError, match='immutable'):
        registry.publish(tmp_path / 'v1.onnx', L, 'v1')


def test_a_registry_that_cannot_be_written_is_a_registry_error(tmp_path) -> None:
    root = tmp_path / 'a_file'
    root.write_text('not a directory')
    with pytest.raises(RegistryError, match='cannot create the registry directory'):
        Registry(root).publish(write_model(tmp_path / 'v1.onnx', lidar_metadata('v1')), L)
    assert root.read_text() == 'not a directory'


def test_rollback_past_the_oldest_is_refused(registry: Registry) -> None:
    registry.set_current(L, 'v1')
    with pytest.raises(RegistryError, match='no lidar version before v1'):
        registry.rollback(L)


def test_checksum_mismatch(registry: Registry) -> None:
    entry = registry.current(L)
    entry.path.write_bytes(entry.path.read_bytes() + b'x')
    with pytest.raises(ChecksumError, match='sha256'):
        registry.verify(entry)


def test_missing_version_lists_what_exists(registry: Registry) -> None:
    (registry.directory(L) / 'CURRENT').write_text('v9\n')
    with pytest.raises(RegistryError, match=r"'v9' not in .* \(has: v1, v2\)"):
        registry.current(L)


@pytest.mark.parametrize('pointer', ['../v1', '/etc/passwd', 'sub/v1', '..'])
def test_current_escaping_the_directory_is_refused(registry: Registry, pointer: str) -> None:
    (registry.directory(L) / 'CURRENT').write_text(pointer)
    with pytest.raises(PathEscapeError):
        registry.current(L)


def test_symlink_escaping_the_directory_is_refused(registry: Registry, tmp_path) -> None:
    outside = write_model(tmp_path / 'outside' / 'evil.onnx', lidar_metadata('v5'))
    (registry.directory(L) / 'v5.onnx').symlink_to(outside)
    (registry.directory(L) / 'v5.onnx.sha256').write_text('0' * 64)
    (registry.directory(L) / 'CURRENT').write_text('v5')
    with pytest.raises(PathEscapeError, match='outside'):
        registry.current(L)


def test_reader_polling_current_never_sees_a_partial_file(registry: Registry, tmp_path) -> None:
    seen: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.add((registry.directory(L) / 'CURRENT').read_text())

    reader = threading.Thread(target=poll)
    reader.start()
    for i in range(3, 40):
        registry.set_current(L, 'v1' if i % 2 else 'v2')
    stop.set()
    reader.join()
    assert seen <= {'v1\n', 'v2\n'}
    assert seen


def test_prune_keeps_the_newest_versions_and_the_current_one(registry: Registry, tmp_path) -> None:
    for v in ('v3', 'v4', 'v5'):
        registry.publish(write_model(tmp_path / f'{v}.onnx', lidar_metadata(v)), L, v)
    registry.set_current(L, 'v2')  # rolled back
    removed = registry.prune(L, keep=2)
    assert [e.version for e in removed] == ['v1', 'v3']
    assert [e.version for e in registry.versions(L)] == ['v2', 'v4', 'v5']
    assert sorted(p.name for p in registry.directory(L).iterdir()) == [
        'CURRENT', 'v2.onnx', 'v2.onnx.sha256', 'v4.onnx', 'v4.onnx.sha256', 'v5.onnx', 'v5.onnx.sha256'
    ]  # fmt: skip
    assert registry.current(L).version == 'v2'
    assert registry.next_version(L) == 'v6'
    assert registry.prune(L, keep=5) == []
    with pytest.raises(RegistryError, match='at least the newest version'):
        registry.prune(L, keep=0)
