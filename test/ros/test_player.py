"""The bag player: a real rclpy subscriber receives every recorded message, in order, with the recorded gaps."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

from css_perception.ros.player import play

TS = get_typestore(Stores.ROS2_JAZZY)
GAP_NS = 50_000_000  # 20 Hz


def _write_bag(path, n: int = 20, storage: str = 'mcap'):
    text = TS.types['std_msgs/msg/String']
    tf = TS.types['tf2_msgs/msg/TFMessage']
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        chat = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=TS)
        tf_conn = writer.add_connection('/tf', 'tf2_msgs/msg/TFMessage', typestore=TS)
        for i in range(n):
            writer.write(chat, 10**9 + i * GAP_NS, TS.serialize_cdr(text(data=f'msg {i}'), 'std_msgs/msg/String'))
        writer.write(tf_conn, 10**9, TS.serialize_cdr(tf(transforms=[]), 'tf2_msgs/msg/TFMessage'))
    return path


def _receive(ros_context, topic: str, run_player, listen_after: float = 0.0) -> tuple[list[str], list[float], object]:
    """Runs ``run_player(node)`` in a thread; a listener on ``topic`` joins ``listen_after`` seconds later."""
    player = Node('player', context=ros_context)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(stats=run_player(player)))
    thread.start()
    time.sleep(listen_after)
    listener = Node('listener', context=ros_context)
    got: list[str] = []
    times: list[float] = []

    def on_msg(msg: String) -> None:
        got.append(msg.data)
        times.append(time.monotonic())

    listener.create_subscription(String, topic, on_msg, 50)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    end = time.monotonic() + 10
    while (thread.is_alive() or len(got) < 20) and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    thread.join()
    executor.shutdown()
    listener.destroy_node()
    player.destroy_node()
    return got, times, result['stats']


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_every_message_in_order_with_recorded_timing(ros_context, tmp_path, storage: str) -> None:
    bag = _write_bag(tmp_path / 'bag', storage=storage)
    got, times, stats = _receive(ros_context, '/chatter', lambda node: play(node, [bag], start_delay=1.0))
    assert got == [f'msg {i}' for i in range(20)]
    gaps = np.diff(times)
    # Measured, not a tight wall-clock bound: the median gap is near the recorded 50 ms.
    assert abs(np.median(gaps) - 0.05) < 0.015, gaps
    assert stats.published == {'/chatter': 20}
    assert stats.skipped_types == {'tf2_msgs/msg/TFMessage'}


def test_remap_and_fast(ros_context, tmp_path) -> None:
    bag = _write_bag(tmp_path / 'bag')
    got, times, _ = _receive(
        ros_context,
        '/renamed',
        lambda node: play(node, [bag], topics=['/chatter'], fast=True, remap={'/chatter': '/renamed'}, start_delay=1.0),
    )
    assert got == [f'msg {i}' for i in range(20)]
    assert times[-1] - times[0] < 0.95 * 19 * 0.05


def test_ros1_bag_is_converted(ros_context, tmp_path) -> None:
    ros1 = get_typestore(Stores.ROS1_NOETIC)
    path = tmp_path / 'old.bag'
    with Writer1(path) as writer:
        conn = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ros1)
        for i in range(20):
            msg = ros1.types['std_msgs/msg/String'](data=f'msg {i}')
            writer.write(conn, 10**9 + i * GAP_NS, ros1.serialize_ros1(msg, 'std_msgs/msg/String'))
    got, _, _ = _receive(ros_context, '/chatter', lambda node: play(node, [path], fast=True, start_delay=1.0))
    assert got == [f'msg {i}' for i in range(20)]


def test_wait_for_starts_once_a_late_subscriber_is_matched(ros_context, tmp_path) -> None:
    bag = _write_bag(tmp_path / 'bag')
    timing: dict[str, float] = {}

    def run(node: Node):
        started = time.monotonic()
        stats = play(node, [bag], fast=True, wait_for=['/chatter'], match_timeout=30.0, start_delay=0.0)
        timing['seconds'] = time.monotonic() - started
        return stats

    # The listener joins 1.5 s late: a best-effort subscriber would miss what the player sent before it matched.
    got, _, _ = _receive(ros_context, '/chatter', run, listen_after=1.5)
    assert got == [f'msg {i}' for i in range(20)]
    assert 1.5 <= timing['seconds'] < 10, timing  # waited for the subscriber, not the 30 s timeout


def test_wait_for_a_topic_it_does_not_play_is_refused_and_an_unmatched_one_times_out(ros_context, tmp_path) -> None:
    bag = _write_bag(tmp_path / 'bag')
    node = Node('player', context=ros_context)
    with pytest.raises(ValueError, match=r"cannot wait for \['/points'\]: not played; it plays: /chatter"):
        play(node, [bag], topics=['/chatter'], wait_for=['/points'])
    started = time.monotonic()
    stats = play(node, [bag], fast=True, wait_for=['/chatter'], match_timeout=0.5, start_delay=0.2)
    assert time.monotonic() - started >= 0.7
    assert stats.published == {'/chatter': 20}
    node.destroy_node()


def test_missing_topic_lists_what_the_bag_has(ros_context, tmp_path) -> None:
    bag = _write_bag(tmp_path / 'bag')
    node = Node('player', context=ros_context)
    with pytest.raises(ValueError, match=r"\['/nope'\] not in .* it has: /chatter, /tf"):
        play(node, [bag], topics=['/nope'])
    node.destroy_node()


def test_clock_gives_use_sim_time_nodes_the_recording_time(ros_context, tmp_path) -> None:
    bag = _write_bag(tmp_path / 'bag')  # /chatter at 1.00, 1.05, ... 1.95 s
    sim = Node('sim_time_user', context=ros_context, parameter_overrides=[Parameter('use_sim_time', value=True)])
    clocks: list[int] = []
    sim.create_subscription(Clock, '/clock', lambda m: clocks.append(Time.from_msg(m.clock).nanoseconds), 200)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    player = Node('player', context=ros_context)
    thread = threading.Thread(target=lambda: play(player, [bag], clock_hz=100.0, wait_for=['/clock'], start_delay=0.5))
    thread.start()
    while thread.is_alive():
        executor.spin_once(timeout_sec=0.01)
    thread.join()
    for _ in range(20):
        executor.spin_once(timeout_sec=0.01)
    last = 10**9 + 19 * GAP_NS
    assert len(clocks) > 40  # ~95 ticks at 100 Hz over 0.95 s, and one per message
    assert clocks == sorted(clocks)
    assert (clocks[0], clocks[-1]) == (10**9, last)
    assert sim.get_clock().now().nanoseconds == last  # the node's ROS time is the recording's
    executor.shutdown()
    sim.destroy_node()
    player.destroy_node()


def test_a_negative_clock_rate_is_refused(ros_context, tmp_path) -> None:
    node = Node('player', context=ros_context)
    with pytest.raises(ValueError, match='clock rate must be positive'):
        play(node, [_write_bag(tmp_path / 'bag')], clock_hz=-1.0)
    node.destroy_node()
