"""How many objects of the step classes a benchmark preset's recordings hold: what its new-class IoU rests on.

Per part (``new``: what the steps learn from, ``test``: what scores them) and class: LiDAR instances (distinct
instance ids per sequence with at least ``--min-points`` points in some scan) and labelled points; camera
labelled pixels. Reads the preset's simulated split (generated when missing, as ``css-bench continual`` does):
``python bench/count_rare_objects.py config/benchmarks/small.yaml [--min-points 20]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from css_perception.core.ontology import Ontology
from css_training.benchmark import BenchmarkConfig
from css_training.data.records import split_label
from css_training.datasets import read_records
from css_training.sim.config import SimConfig
from css_training.sim.record import generate_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('preset', type=Path)
    parser.add_argument('--min-points', type=int, default=20, help='points an instance needs in one scan')
    args = parser.parse_args()
    config = BenchmarkConfig.load(args.preset)
    ontology = Ontology.load()
    names = sorted({name for steps in config.splits.values() for step in steps for name in step})
    ids = np.array([ontology.by_name(n).id for n in names])
    split = generate_split(Path(config.sim_dir), SimConfig.load(Path(config.sim_config)), dict(config.sim_scans))
    print(f'{config.name}: instances with >= {args.min_points} points in a scan / LiDAR points / camera pixels')
    print(f'{"part":6} {"sequences":>9} ' + ' '.join(f'{n:>24}' for n in names))
    for part in ('new', 'test'):
        instances, points, pixels = np.zeros(len(ids), int), np.zeros(len(ids), int), np.zeros(len(ids), int)
        for path in split[part]:
            seen: set[tuple[int, int]] = set()
            for scan in read_records([path], 'lidar'):
                semantic, instance = split_label(scan.labels)
                points += (semantic[:, None] == ids).sum(0)
                pairs, counts = np.unique(np.column_stack([semantic, instance]), axis=0, return_counts=True)
                big = (pairs[:, 1] > 0) & (counts >= args.min_points)
                seen |= {(int(c), int(i)) for c, i in pairs[big]}
            instances += [sum(c == k for c, _ in seen) for k in ids]
            for frame in read_records([path], 'camera'):
                pixels += (frame.labels.reshape(-1, 1) == ids).sum(0)
        cells = ' '.join(f'{f"{i} / {p} / {q}":>24}' for i, p, q in zip(instances, points, pixels, strict=True))
        print(f'{part:6} {len(split[part]):>9} {cells}')


if __name__ == '__main__':
    main()
