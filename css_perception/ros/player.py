"""Play a recording onto live topics: ``css-perception play BAG`` for machines without the ros2 CLI.

rosbags reads the bag (rosbag2 mcap/db3 or ROS 1); each message is turned into the installed ROS message class
through CDR bytes (``rclpy.serialization``), so no field-by-field copy is needed. Types that are not installed
(e.g. ``tf2_msgs`` without a ROS distro) are skipped with one warning each. With ``--clock`` it publishes the
recording's time on ``/clock``, as ``ros2 bag play --clock`` does, for nodes and RViz run with ``use_sim_time``:
recorded stamps are then current to their TF buffers instead of seconds or days old.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore
from rosgraph_msgs.msg import Clock

__all__ = ['PlayStats', 'main', 'play']

_LATCHED_TOPICS = ('/tf_static',)


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    skipped_types: set[str] = field(default_factory=set)


def _message_class(msgtype: str) -> type | None:
    """``sensor_msgs/msg/PointCloud2`` -> the installed class, or None when its package is not installed."""
    package, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError):
        return None


def play(
    node: Node,
    bags: Sequence[str | Path],
    *,
    topics: Iterable[str] | None = None,
    rate: float = 1.0,
    fast: bool = False,
    loop: bool = False,
    remap: dict[str, str] | None = None,
    start_delay: float = 0.5,
    wait_for: Iterable[str] = (),
    match_timeout: float = 60.0,
    clock_hz: float = 0.0,
) -> PlayStats:
    """Publish the chosen topics of ``bags`` from ``node`` keeping the recorded gaps (divided by ``rate``).

    ``fast`` publishes back to back; ``loop`` repeats until interrupted. With ``wait_for`` (published topic names,
    after ``remap``) it first waits, up to ``match_timeout`` seconds, until each of those has a matched subscriber:
    discovery of a new process took from under 1 s to over 2 s on a loaded 2-core machine, and a best-effort
    subscriber misses what is published before it is matched. Then it waits ``start_delay`` seconds more: with
    Fast DDS's LARGE_DATA transports the first 0.8 s after the match were still lost (a TCP connection being made).
    With ``clock_hz`` > 0 the recording's time goes out on ``/clock`` that often while playing, and as each
    message's recorded time just before the message (never backwards within a pass). Returns what was published.
    """
    if rate <= 0:
        raise ValueError(f'rate must be positive, got {rate}')
    if clock_hz < 0:
        raise ValueError(f'clock rate must be positive (or 0: no /clock), got {clock_hz}')
    clock = node.create_publisher(Clock, '/clock', 1) if clock_hz else None
    wanted, remap = set(topics or ()), remap or {}
    stats = PlayStats()
    ros1_store = get_typestore(Stores.ROS2_JAZZY)
    with AnyReader([Path(b) for b in bags], default_typestore=ros1_store) as reader:
        connections = [c for c in reader.connections if not wanted or c.topic in wanted]
        missing = wanted - {c.topic for c in reader.connections}
        if missing:
            have = ', '.join(sorted({c.topic for c in reader.connections}))
            raise ValueError(f'topics {sorted(missing)} not in {", ".join(map(str, bags))}; it has: {have}')
        publishers: dict[int, tuple[Any, type]] = {}
        for conn in connections:
            cls = _message_class(conn.msgtype)
            if cls is None:
                if conn.msgtype not in stats.skipped_types:
                    node.get_logger().warning(f'skipping {conn.topic}: message type {conn.msgtype} is not installed')
                stats.skipped_types.add(conn.msgtype)
                continue
            latched = conn.topic in _LATCHED_TOPICS
            qos = QoSProfile(
                depth=10 if not latched else 1,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            publishers[conn.id] = (node.create_publisher(cls, remap.get(conn.topic, conn.topic), qos), cls)
        played = {remap.get(c.topic, c.topic): publishers[c.id][0] for c in connections if c.id in publishers}
        _wait_for_subscribers(node, played | ({'/clock': clock} if clock else {}), set(wait_for), match_timeout)
        time.sleep(start_delay)
        while True:
            start_wall, start_bag = time.monotonic(), None
            for conn, stamp, raw in reader.messages(connections=[c for c in connections if c.id in publishers]):
                publisher, cls = publishers[conn.id]
                if reader.is2:
                    cdr = bytes(raw)
                else:
                    cdr = bytes(ros1_store.serialize_cdr(reader.deserialize(raw, conn.msgtype), conn.msgtype))
                if not fast:
                    start_bag = stamp if start_bag is None else start_bag
                    due = start_wall + (stamp - start_bag) / 1e9 / rate
                    while (delay := due - time.monotonic()) > 0:
                        time.sleep(delay if clock is None else min(delay, 1 / clock_hz))
                        if clock is not None:
                            now = start_bag + round((time.monotonic() - start_wall) * rate * 1e9)
                            clock.publish(_clock_message(min(now, stamp)))
                if clock is not None:
                    clock.publish(_clock_message(stamp))
                publisher.publish(deserialize_message(cdr, cls))
                stats.published[conn.topic] = stats.published.get(conn.topic, 0) + 1
            if not loop:
                return stats


def _clock_message(nanoseconds: int) -> Clock:
    return Clock(clock=Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9))


def _wait_for_subscribers(node: Node, publishers: dict[str, Any], wanted: set[str], timeout: float) -> None:
    """Until each ``wanted`` topic's publisher has a matched subscriber, at most ``timeout`` seconds."""
    if unknown := wanted - set(publishers):
        raise ValueError(f'cannot wait for {sorted(unknown)}: not played; it plays: {", ".join(sorted(publishers))}')
    deadline = time.monotonic() + timeout
    while (unmatched := [t for t in sorted(wanted) if not publishers[t].get_subscription_count()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    if unmatched:
        node.get_logger().warning(f'no subscriber on {unmatched} after {timeout} s; playing anyway')


def _remap(value: str) -> tuple[str, str]:
    """One ``OLD:=NEW`` remapping (an argparse type: a bad one is a usage error)."""
    old, sep, new = value.partition(':=')
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f'takes OLD:=NEW, got {value!r}')
    return old, new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='css-perception play', description=__doc__.splitlines()[0])
    parser.add_argument('bags', nargs='+', help='rosbag2 directory or file (.mcap/.db3), or ROS 1 .bag')
    parser.add_argument('--topics', nargs='+', help='topics to play (default: all)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor')
    parser.add_argument('--fast', action='store_true', help='publish as fast as possible, ignoring stamps')
    parser.add_argument('--loop', action='store_true', help='start again at the end')
    parser.add_argument('--remap', nargs='+', type=_remap, default=[], help='OLD:=NEW topic remappings')
    parser.add_argument(
        '--start-delay', type=float, default=1.0, help='seconds to wait before playing (after --wait-for)'
    )
    parser.add_argument(
        '--wait-for', nargs='+', default=[], metavar='TOPIC', help='first wait until these topics have a subscriber'
    )
    parser.add_argument('--match-timeout', type=float, default=60.0, help='longest --wait-for wait, in seconds')
    parser.add_argument(
        '--clock',
        type=float,
        nargs='?',
        const=40.0,
        default=0.0,
        metavar='HZ',
        help="publish the recording's time on /clock, HZ times a second (default 40), for use_sim_time nodes",
    )
    args = parser.parse_args(argv)
    rclpy.init()
    node = Node('css_bag_player')
    try:
        stats = play(
            node,
            args.bags,
            topics=args.topics,
            rate=args.rate,
            fast=args.fast,
            loop=args.loop,
            remap=dict(args.remap),
            start_delay=args.start_delay,
            wait_for=args.wait_for,
            match_timeout=args.match_timeout,
            clock_hz=args.clock,
        )
    except KeyboardInterrupt:
        return 0
    except (AnyReaderError, ValueError, OSError) as err:
        print(f'css-perception play: {err}', file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    for topic, n in sorted(stats.published.items()):
        print(f'{topic}: {n} messages')
    return 0
