"""Does a hot swap stall the node? Largest gap between consecutive outputs during a swap, against the median gap.

A publisher feeds segment_node 10 Hz scans over real DDS; midway a new model version is published into the
registry and validated by the node's watcher thread. Reported: median output gap, the largest gap in the frames
around the swap, their ratio (goal < 2), and the frame at which the version changed.
Run: ``python bench/bench_hotswap.py [--frames 60] [--points 60000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 101)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import numpy as np
import rclpy
import torch
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String

from css_perception.core.metadata import LidarInputSpec, Modality, ModelMetadata
from css_perception.core.ontology import Ontology
from css_perception.core.pointcloud import array_to_cloud
from css_perception.ros.messages import cloud_message
from css_perception.ros.node import SegmentationNode
from css_training.export import export_and_publish
from css_training.models import ModelConfig, build_model

CLASSES = tuple(Ontology.load().by_name(n) for n in ('unlabeled', 'car', 'road', 'building', 'vegetation'))
SPEC = LidarInputSpec(height=32, width=1024, fov_up_deg=2.0, fov_down_deg=-24.8)


def publish_version(model_dir: Path, seed: int) -> None:
    torch.manual_seed(seed)
    net = build_model(ModelConfig('rangenet', 'lite', 5, len(CLASSES)))
    sample = np.zeros((1, 5, SPEC.height, SPEC.width), np.float32)
    export_and_publish(net, ModelMetadata(Modality.LIDAR, 'draft', CLASSES, SPEC), model_dir, [sample])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60)
    parser.add_argument('--points', type=int, default=60_000)
    args = parser.parse_args()
    model_dir = Path(tempfile.mkdtemp()) / 'models'
    publish_version(model_dir, 0)
    rclpy.init()
    node = SegmentationNode(
        parameter_overrides=[
            Parameter('model_dir', value=str(model_dir)),
            Parameter('enable_camera', value=False),
            Parameter('registry_poll_s', value=0.5),
        ]
    )
    peer = Node('bench_peer')
    arrivals: list[tuple[float, str]] = []
    peer.create_subscription(PointCloud2, '/segment_node/lidar/points', lambda _m: None, 10)
    peer.create_subscription(
        String,
        '/segment_node/provenance',
        lambda m: arrivals.append((time.monotonic(), json.loads(m.data)['model_version'])),
        10,
    )
    pub = peer.create_publisher(PointCloud2, 'points', 10)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    executor.add_node(peer)
    rng = np.random.default_rng(0)
    arr = np.zeros(args.points, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4')])
    arr['x'], arr['y'], arr['z'] = rng.uniform(-40, 40, (3, args.points)) * [[1], [1], [0.05]]
    cloud = array_to_cloud(arr)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    swap_at = args.frames // 2
    for i in range(args.frames):
        if i == swap_at:  # the exporter runs beside the node, as a training job on the same machine would
            threading.Thread(target=publish_version, args=(model_dir, 1)).start()
        h = Header(frame_id='velodyne')
        h.stamp.sec = i
        pub.publish(cloud_message(cloud, h))
        tick = time.monotonic() + 0.1
        while time.monotonic() < tick:
            executor.spin_once(timeout_sec=0.01)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    times = np.array([t for t, _ in arrivals])
    versions = [v for _, v in arrivals]
    gaps = np.diff(times)
    switch = versions.index('v2') if 'v2' in versions else None
    median = float(np.median(gaps))
    window = gaps[max(switch - 5, 0) : switch + 5] if switch is not None else gaps
    print(
        f'outputs {len(arrivals)} of {args.frames} frames; version switch at output {switch}; '
        f'back to v1 after the switch: {"v1" in versions[switch:] if switch is not None else "n/a"}'
    )
    print(
        f'median gap {median * 1e3:.1f} ms, largest gap around the swap {window.max() * 1e3:.1f} ms, '
        f'ratio {window.max() / median:.2f} (goal < 2)'
    )
    return 0 if switch is not None else 1


if __name__ == '__main__':
    sys.exit(main())
