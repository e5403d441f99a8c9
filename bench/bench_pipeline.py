"""Per-scan timings of the onboard pipeline's numpy stages for a 120,000-point scan.

Each stage is reported in ms and as a ratio to a baseline measured in the same run: one plain copy of the
scan's bytes (``np.copy`` of the 2.4 MB buffer), so figures from different machines compare.
Run: ``python bench/bench_pipeline.py [--points 120000] [--repeat 30]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from css_perception.core.metadata import LidarInputSpec
from css_perception.core.ontology import Ontology, colour_lut, pack_rgb
from css_perception.core.pointcloud import array_to_cloud, cloud_to_array, with_fields, xyz_intensity
from css_perception.core.projection import back_project, project_scan


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median of ``repeat`` runs, in ms (median: robust to the other processes on a small machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def print_ratios(kind: str, stages: dict[str, Callable[[], object]], baseline: float, repeat: int) -> None:
    """A markdown table: each stage's median ms and its ratio to ``baseline`` (ms, measured in the same run)."""
    print(f'| {kind} | ms | x baseline |\n|---|---:|---:|')
    for name, fn in stages.items():
        ms = best_ms(fn, repeat)
        print(f'| {name} | {ms:.2f} | {ms / baseline:.1f} |')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--points', type=int, default=120_000)
    parser.add_argument('--repeat', type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.points
    arr = np.zeros(n, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'), ('ring', '<u2')])
    arr['x'], arr['y'], arr['z'] = rng.uniform(-50, 50, n), rng.uniform(-50, 50, n), rng.uniform(-3, 2, n)
    arr['intensity'] = rng.uniform(0, 1, n)
    cloud = array_to_cloud(arr)
    spec = LidarInputSpec(height=64, width=2048, fov_up_deg=3.0, fov_down_deg=-25.0)
    xyz, intensity = xyz_intensity(cloud_to_array(cloud))
    proj = project_scan(xyz, intensity, spec)
    pixel_ids = rng.integers(0, 20, (spec.height, spec.width)).astype(np.uint16)
    labels = back_project(pixel_ids, proj)
    lut = colour_lut(Ontology.load().classes)
    raw = np.frombuffer(cloud.data, np.uint8)

    baseline = best_ms(lambda: np.copy(raw), args.repeat)
    stages = {
        'decode (cloud_to_array + xyz_intensity)': lambda: xyz_intensity(cloud_to_array(cloud)),
        'project (64 x 2048 range image)': lambda: project_scan(xyz, intensity, spec),
        'back_project (labels to every point)': lambda: back_project(pixel_ids, proj),
        'encode (label/rgb/score fields + array_to_cloud)': lambda: array_to_cloud(
            with_fields(arr, label=labels, rgb=pack_rgb(lut[labels]), score=np.ones(n, np.float32))
        ),
    }
    print(f'{n} points, {cloud.point_step} B/point; baseline np.copy of {raw.nbytes / 1e6:.1f} MB: {baseline:.3f} ms')
    print_ratios('stage', stages, baseline, args.repeat)


if __name__ == '__main__':
    main()
