"""``css-perception monitor`` against a live node over real DDS: its readiness and its report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rclpy.executors import SingleThreadedExecutor
from support.onnx_models import camera_metadata, lidar_metadata, write_model
from test_node import Harness, header, scan, spin_until

from css_perception.core.metadata import Modality
from css_perception.core.pointcloud import array_to_cloud
from css_perception.ros.messages import cloud_message
from css_perception.ros.monitor import OutputMonitor
from css_perception.runtime.registry import Registry


@pytest.fixture
def harness(ros_context, tmp_path) -> Iterator[Harness]:
    registry = Registry(tmp_path / 'models')
    registry.publish(write_model(tmp_path / 'l.onnx', lidar_metadata('v1'), winner=1), Modality.LIDAR)
    registry.publish(write_model(tmp_path / 'c.onnx', camera_metadata('v1'), winner=2), Modality.CAMERA)
    h = Harness(ros_context, {'model_dir': str(registry.root)})
    yield h
    h.close()


def test_a_matched_monitor_gets_the_first_frame(harness: Harness, ros_context) -> None:
    """Once ``matched()`` (what ``--ready-file`` waits for) holds, the node computes the next frame instead of
    skipping it for want of a subscriber, and the report counts it.
    """
    monitor = OutputMonitor(context=ros_context)
    harness.executor.add_node(monitor)
    try:
        assert spin_until(harness.executor, monitor.matched)
        harness.listen()  # let the node's inputs match the peer's publishers
        harness.points_pub.publish(cloud_message(array_to_cloud(scan()), header(1)))
        state = harness.node.states[Modality.LIDAR]
        assert spin_until(harness.executor, lambda: monitor.counts['lidar/points'] and monitor.versions)
        assert (state.counts['frames_out'], state.counts['skipped']) == (1, 0)
        assert monitor.report()['frames_per_model'] == {'lidar@v1': 1}
    finally:
        monitor.destroy_node()


def test_a_monitor_of_an_absent_node_is_not_matched(ros_context) -> None:
    monitor = OutputMonitor('no_such_node', context=ros_context)
    try:
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(monitor)
        assert not spin_until(executor, monitor.matched, timeout=1.0)
        executor.shutdown()
    finally:
        monitor.destroy_node()
