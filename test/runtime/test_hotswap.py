"""Candidate validation and the registry watcher, with real files and real ONNX Runtime (no ROS)."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
from support.onnx_models import camera_metadata, lidar_metadata, write_model

from css_perception.core.metadata import Modality
from css_perception.runtime.hotswap import RegistryWatcher, SwapDecision, validate_candidate
from css_perception.runtime.registry import Registry

L = Modality.LIDAR


@pytest.fixture
def registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / 'models')
    reg.publish(write_model(tmp_path / 'v1.onnx', lidar_metadata('v1')), L)
    return reg


def _publish(reg: Registry, tmp_path, version: str, metadata=None, **options) -> None:
    reg.publish(write_model(tmp_path / f'{version}.onnx', metadata or lidar_metadata(version), **options), L, version)


def test_validate_accepts_a_good_candidate(registry: Registry) -> None:
    canary = (np.random.default_rng(0).uniform(-10, 10, (100, 3)).astype(np.float32), None)
    seg = validate_candidate(registry, registry.current(L), L, canary=canary)
    assert seg.metadata.version == 'v1'


@pytest.mark.parametrize(
    ('options', 'reason'),
    [
        ({'nan': True}, 'non-finite'),
        ({'out_channels': 4}, '4 output channels but 3 classes'),
        ({'drop_props': ('classes',)}, 'missing css.classes'),
        ({'metadata': camera_metadata('v2')}, 'is a camera model, expected lidar'),
        ({'metadata': lidar_metadata('v7')}, "says it is version 'v7'"),
    ],
)
def test_watcher_refuses_bad_candidates_once(registry: Registry, tmp_path, options, reason) -> None:
    decisions: list[SwapDecision] = []
    watcher = RegistryWatcher(registry, L, decisions.append)
    watcher.check()
    assert decisions[-1].accepted
    watcher.mark_serving('v1')
    _publish(registry, tmp_path, 'v2', **options)
    refused = watcher.check()
    assert refused is not None
    assert not refused.accepted
    assert reason in refused.reason
    assert watcher.check() is None  # not retried until CURRENT changes
    assert watcher.serving == 'v1'
    _publish(registry, tmp_path, 'v3')
    assert watcher.check().accepted
    assert watcher.serving == 'v3'


def test_truncated_and_tampered_candidates_are_refused(registry: Registry, tmp_path) -> None:
    watcher = RegistryWatcher(registry, L, lambda d: None)
    watcher.mark_serving('v1')
    _publish(registry, tmp_path, 'v2')
    entry = registry.current(L)
    entry.path.write_bytes(entry.path.read_bytes()[:200])
    assert 'sha256' in watcher.check().reason
    _publish(registry, tmp_path, 'v3')
    cut = registry.current(L)
    data = cut.path.read_bytes()[:300]
    cut.path.write_bytes(data)
    cut.path.with_name('v3.onnx.sha256').write_text(__import__('hashlib').sha256(data).hexdigest())
    assert 'not a loadable ONNX model' in watcher.check().reason


def test_current_escaping_is_refused(registry: Registry, tmp_path) -> None:
    watcher = RegistryWatcher(registry, L, lambda d: None)
    shutil.copy(registry.current(L).path, tmp_path / 'v1.onnx')
    (registry.directory(L) / 'CURRENT').write_text('../../v1')
    decision = watcher.check()
    assert not decision.accepted
    assert 'not a plain version name' in decision.reason


class _CountingRegistry(Registry):
    """A registry that counts how often its ``CURRENT`` is read."""

    reads = 0

    def current(self, modality: Modality):
        self.reads += 1
        return super().current(modality)


def test_the_watcher_wakes_on_a_publish_and_not_on_its_own_reads(tmp_path) -> None:
    """Every check reads CURRENT; a watch that took that read for a change would check again at once, forever
    (an idle node kept ~1.2 cores busy). With a one-minute poll, only the file-system watch can wake it here.
    """
    registry = _CountingRegistry(tmp_path / 'models')
    _publish(registry, tmp_path, 'v1')
    accepted = threading.Event()
    watcher = RegistryWatcher(registry, L, lambda d: d.accepted and d.version == 'v2' and accepted.set(), poll_s=60.0)
    watcher.mark_serving('v1')
    watcher.start()
    try:
        watcher.check()  # one read, as after a swap
        time.sleep(1.0)
        assert registry.reads <= 2
        _publish(registry, tmp_path, 'v2')
        assert accepted.wait(timeout=10.0)
        time.sleep(1.0)
        settled = registry.reads
        time.sleep(1.0)
        assert registry.reads == settled
    finally:
        watcher.stop()
    assert watcher.serving == 'v2'
