"""Wall time of ``css-sim record`` for a sequence with camera (issue 3's goal: 500 scans in about a minute).

Baseline, same run: writing the first scan's cloud message ``--scans`` times into an mcap bag (the recording cost
alone, with no ray casting), so the ratio says how much the simulation adds to merely storing the data.
Run: ``python bench/bench_sim.py [--scans 500]``; default sensor settings (64 x 2048 LiDAR, 320 x 240 camera).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from css_training.data.messages import cloud_message
from css_training.sim.config import SimConfig
from css_training.sim.record import START_NS, Simulation, simulate


def write_only(cloud_bytes: bytes, scans: int, out: Path) -> float:
    ts = get_typestore(Stores.ROS2_JAZZY)
    started = time.perf_counter()
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection('/points', 'sensor_msgs/msg/PointCloud2', typestore=ts)
        for i in range(scans):
            writer.write(connection, START_NS + i * 100_000_000, cloud_bytes)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scans', type=int, default=500)
    args = parser.parse_args()
    config = replace(SimConfig(), scans=args.scans)
    ts = get_typestore(Stores.ROS2_JAZZY)
    with tempfile.TemporaryDirectory() as tmp:
        cloud = Simulation(config).scan(0)
        raw = bytes(ts.serialize_cdr(cloud_message(ts, cloud, START_NS, 'velodyne'), 'sensor_msgs/msg/PointCloud2'))
        baseline = write_only(raw, args.scans, Path(tmp) / 'baseline')
        report = simulate(config, Path(tmp) / 'sim', progress=False)
        size = sum(f.stat().st_size for f in (Path(tmp) / 'sim').iterdir()) / 2**20
    print(f'{report.scans} scans ({len(cloud)} points in the first), {report.frames} camera frames, {size:.0f} MiB')
    print(f'simulate + record: {report.seconds:.1f} s ({1e3 * report.seconds / report.scans:.1f} ms per scan)')
    print(f'baseline (write the same number of clouds): {baseline:.2f} s; ratio {report.seconds / baseline:.1f}')


if __name__ == '__main__':
    main()
