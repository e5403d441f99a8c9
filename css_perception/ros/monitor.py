"""Watch a running segmentation node and summarise what it published: the ``ros2 topic echo/hz`` of this package.

Used by the demo and by users without the ros2 CLI (``css-perception monitor``): counts messages per output,
histograms of the class ids in the labelled clouds and label images, the served model versions (from the
provenance topic) and the last diagnostics of each modality. Stops after ``--duration`` or when the node has been
quiet for ``--idle`` seconds after its first output. ``--ready-file`` is written once the node's frame outputs are
matched: the node computes nothing for an output without subscribers, so a recording played before that point
would be partly skipped (the demo waits for the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String

from css_perception.core.errors import CoreError
from css_perception.core.image import image_to_array
from css_perception.core.pointcloud import cloud_to_array

__all__ = ['OutputMonitor', 'main']


class OutputMonitor(Node):
    """Subscribes to every output of ``target`` (a node name) and keeps running totals."""

    def __init__(self, target: str = 'segment_node', **kwargs: Any) -> None:
        super().__init__('css_output_monitor', **kwargs)
        prefix = f'/{target.strip("/")}'
        self._status_prefix = f'{prefix}: '  # the node's own diagnostics, not another instance's
        self.counts: Counter[str] = Counter()
        self.lidar_classes: Counter[int] = Counter()
        self.camera_classes: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.legend: dict[str, Any] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.first_output: float | None = None
        self.last_output: float | None = None
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.frame_outputs = (
            self.create_subscription(PointCloud2, f'{prefix}/lidar/points', self._on_cloud, reliable),
            self.create_subscription(Image, f'{prefix}/camera/labels', self._on_labels, reliable),
        )
        self.create_subscription(Image, f'{prefix}/camera/overlay', self._count('camera/overlay'), reliable)
        self.create_subscription(String, f'{prefix}/provenance', self._on_provenance, reliable)
        self.create_subscription(String, f'{prefix}/legend_json', self._on_legend, latched)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, reliable)

    def matched(self) -> bool:
        """Whether every frame output the graph has a publisher for is matched to this monitor (and one is)."""
        offered = [sub for sub in self.frame_outputs if self.count_publishers(sub.topic_name)]
        return bool(offered) and all(sub.get_publisher_count() for sub in offered)

    def _seen(self, key: str) -> None:
        self.counts[key] += 1
        now = time.monotonic()
        self.first_output = self.first_output or now
        self.last_output = now

    def _count(self, key: str):
        return lambda _msg: self._seen(key)

    def _on_cloud(self, msg: PointCloud2) -> None:
        self._seen('lidar/points')
        try:
            ids, n = np.unique(cloud_to_array(msg)['label'], return_counts=True)
        except (CoreError, ValueError) as err:
            self.get_logger().warning(f'unreadable labelled cloud: {err}', throttle_duration_sec=5.0)
            return
        self.lidar_classes.update(dict(zip(ids.tolist(), n.tolist(), strict=True)))

    def _on_labels(self, msg: Image) -> None:
        self._seen('camera/labels')
        try:
            ids, n = np.unique(image_to_array(msg), return_counts=True)
        except CoreError as err:
            self.get_logger().warning(f'unreadable label image: {err}', throttle_duration_sec=5.0)
            return
        self.camera_classes.update(dict(zip(ids.tolist(), n.tolist(), strict=True)))

    def _on_provenance(self, msg: String) -> None:
        self._seen('provenance')
        info = json.loads(msg.data)
        self.versions[f'{info.get("modality")}@{info.get("model_version")}'] += 1

    def _on_legend(self, msg: String) -> None:
        self.legend = json.loads(msg.data)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self._status_prefix):
                level = status.level[0] if isinstance(status.level, bytes) else int(status.level)  # 'byte' field
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics[status.name] = {'level': level, 'message': status.message, **values}

    def report(self) -> dict[str, Any]:
        """Everything seen so far, JSON-ready, with class ids named from the latched legend."""
        names = {c['id']: c['name'] for entry in self.legend.values() for c in entry.get('classes', [])}

        def named(counter: Counter[int]) -> dict[str, int]:
            return {names.get(i, str(i)): n for i, n in sorted(counter.items())}

        return {
            'messages': dict(self.counts),
            'lidar_points_per_class': named(self.lidar_classes),
            'camera_pixels_per_class': named(self.camera_classes),
            'frames_per_model': dict(self.versions),
            'legend': self.legend,
            'diagnostics': self.diagnostics,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='css-perception monitor', description=__doc__.splitlines()[0])
    parser.add_argument(
        '--node', default='segment_node', help='the segmentation node, with its namespace if any (front/segment_node)'
    )
    parser.add_argument('--duration', type=float, default=30.0, help='stop after this many seconds')
    parser.add_argument('--idle', type=float, default=3.0, help='stop after this long without output, once started')
    parser.add_argument('--out', type=Path, help='write the report as JSON here')
    parser.add_argument('--ready-file', type=Path, help="touch this file once the node's outputs are matched")
    args = parser.parse_args(argv)
    try:  # before watching: a path that cannot be written would lose the whole report at the end
        for path in filter(None, (args.out, args.ready_file)):
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f'css-perception monitor: {err}', file=sys.stderr)
        return 2
    rclpy.init()
    monitor = OutputMonitor(args.node)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    start = time.monotonic()
    try:
        while time.monotonic() - start < args.duration:
            executor.spin_once(timeout_sec=0.1)
            if args.ready_file and not args.ready_file.exists() and monitor.matched():
                args.ready_file.touch()
            if monitor.last_output is not None and time.monotonic() - monitor.last_output > args.idle:
                break
    except KeyboardInterrupt:
        pass
    report = monitor.report()
    monitor.destroy_node()
    rclpy.try_shutdown()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        try:
            args.out.write_text(text + '\n')
        except OSError as err:
            print(f'css-perception monitor: cannot write the report: {err}', file=sys.stderr)
            return 2
    return 0 if report['messages'] else 1


if __name__ == '__main__':
    sys.exit(main())
