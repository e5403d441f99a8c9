"""Hot swap in the live node: a new version is picked up between frames, a bad one is refused (issue 6)."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from support.onnx_models import camera_metadata, lidar_metadata, write_model
from test_node import Harness, header, scan, spin_until

from css_perception.core.metadata import Modality
from css_perception.core.pointcloud import array_to_cloud, cloud_to_array
from css_perception.ros.messages import cloud_message
from css_perception.runtime.registry import Registry

L = Modality.LIDAR


@pytest.fixture
def registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / 'models')
    reg.publish(write_model(tmp_path / 'v1.onnx', lidar_metadata('v1'), winner=1), L)
    return reg


def _harness(ros_context, registry: Registry) -> Harness:
    h = Harness(ros_context, {'model_dir': str(registry.root), 'enable_camera': False, 'registry_poll_s': 0.2})
    h.listen('cloud', 'prov', 'legend')
    return h


def test_new_version_mid_stream_swaps_at_one_frame_without_losing_any(ros_context, registry, tmp_path) -> None:
    h = _harness(ros_context, registry)
    try:
        frames = 40
        for i in range(frames):
            if i == 12:
                registry.publish(write_model(tmp_path / 'v2.onnx', lidar_metadata('v2'), winner=2), L)
            h.points_pub.publish(cloud_message(array_to_cloud(scan(200, i)), header(i)))
            end = time.monotonic() + 0.1  # 10 Hz
            while time.monotonic() < end:
                h.executor.spin_once(timeout_sec=0.01)
        assert spin_until(h.executor, lambda: len(h.got['cloud']) >= frames, 5.0)
        stamps = [m.header.stamp.sec - 100 for m in h.got['cloud']]
        assert stamps == list(range(frames))  # every frame answered exactly once, in order
        ids = [set(np.unique(cloud_to_array(m)['label'])) - {0} for m in h.got['cloud']]
        assert all(len(s) == 1 for s in ids)
        labels = [s.pop() for s in ids]
        switch = labels.index(10)
        assert 12 <= switch < frames - 5
        assert labels == [40] * switch + [10] * (frames - switch)  # one switch, never back
        versions = [__import__('json').loads(m.data)['model_version'] for m in h.got['prov']]
        assert versions == ['v1'] * switch + ['v2'] * (frames - switch)
        legend = __import__('json').loads(h.got['legend'][-1].data)
        assert legend['lidar']['version'] == 'v2'
    finally:
        h.close()


def _truncated(registry: Registry, tmp_path) -> None:
    path = write_model(tmp_path / 'v2.onnx', lidar_metadata('v2'))
    data = path.read_bytes()[:150]
    path.write_bytes(data)
    registry.publish(path, L)


def _wrong_sha(registry: Registry, tmp_path) -> None:
    entry = registry.publish(write_model(tmp_path / 'v2.onnx', lidar_metadata('v2')), L, make_current=False)
    entry.path.with_name('v2.onnx.sha256').write_text(hashlib.sha256(b'other').hexdigest())
    registry.set_current(L, 'v2')


def _escape(registry: Registry, tmp_path) -> None:
    write_model(tmp_path / 'evil.onnx', lidar_metadata('v2'))
    (registry.directory(L) / 'CURRENT').write_text('../../evil')


def _publish(**options):
    def publish(registry: Registry, tmp_path) -> None:
        registry.publish(write_model(tmp_path / 'v2.onnx', options.pop('metadata', lidar_metadata('v2')), **options), L)

    return publish


@pytest.mark.parametrize(
    ('make_candidate', 'reason'),
    [
        (_truncated, 'not a loadable ONNX model'),
        (_wrong_sha, 'sha256'),
        (_publish(drop_props=('classes',)), 'missing css.classes'),
        (_publish(out_channels=5), '5 output channels but 3 classes'),
        (_publish(metadata=camera_metadata('v2')), 'is a camera model'),
        (_publish(nan=True), 'non-finite'),
        (_escape, 'not a plain version name'),
    ],
    ids=['truncated', 'wrong-sha256', 'no-metadata', 'channels', 'modality', 'nan', 'path-escape'],
)
def test_bad_candidate_is_refused_and_old_model_keeps_serving(
    ros_context, registry, tmp_path, make_candidate, reason
) -> None:
    h = _harness(ros_context, registry)
    try:
        make_candidate(registry, tmp_path)
        state = h.node.states[L]
        assert spin_until(h.executor, lambda: bool(state.refused[0]), 5.0)
        assert reason in state.refused[1]
        status = h.node._status(state)
        assert status.level == b'\x01'  # WARN
        assert reason in {kv.key: kv.value for kv in status.values}['refused_reason']
        h.points_pub.publish(cloud_message(array_to_cloud(scan()), header(7)))
        assert spin_until(h.executor, lambda: h.got['cloud'])
        assert set(np.unique(cloud_to_array(h.got['cloud'][0])['label'])) - {0} == {40}  # still v1
    finally:
        h.close()


def test_new_input_size_rebuilds_the_projection_with_the_model(ros_context, registry, tmp_path) -> None:
    h = _harness(ros_context, registry)
    try:
        registry.publish(write_model(tmp_path / 'v2.onnx', lidar_metadata('v2', height=32, width=128), winner=2), L)
        state = h.node.states[L]
        assert spin_until(h.executor, lambda: state.serving.segmenter.metadata.version == 'v2', 5.0)
        assert state.serving.segmenter.spec.height == 32
        h.points_pub.publish(cloud_message(array_to_cloud(scan()), header(3)))
        assert spin_until(h.executor, lambda: h.got['cloud'])
        assert set(np.unique(cloud_to_array(h.got['cloud'][0])['label'])) - {0} == {10}
    finally:
        h.close()
