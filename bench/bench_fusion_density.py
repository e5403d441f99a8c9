"""What the M2SKD multi-scan input adds on hard-class objects, in points and in range-image pixels.

The multi-scan teacher can only beat the single-scan student where the fused input holds more of a hard object
than the scan does *at the resolution both are projected to*. Baseline, same run: the single scan's hard-class
points and pixels; the ratios say how much denser the teacher's view is. Run after ``css-sim split`` of the
benchmark (``css-bench continual`` writes it):
``python bench/bench_fusion_density.py [--bag out/bench/sim/new] [--scans 40] [--window 2] [--size H W]``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from css_perception.core.metadata import LidarInputSpec
from css_perception.core.ontology import Ontology
from css_training.config import load_config
from css_training.data.records import SEMANTIC_MASK
from css_training.datasets import IGNORE_INDEX, LidarDataset, MultiScanDataset, read_records

HARD = ('person', 'bicycle', 'bicyclist', 'motorcycle', 'motorcyclist')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--bag', default='out/bench/sim/new')
    parser.add_argument('--config', default='config/train/lidar_base.yaml', help='base run: classes, input size')
    parser.add_argument('--scans', type=int, default=40)
    parser.add_argument('--window', type=int, default=2, help='neighbouring scans fused on each side')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help="range image size; default: the run's")
    args = parser.parse_args()
    cfg = load_config(args.config)
    ontology = Ontology.load(cfg.data.ontology)
    hard = [ontology.by_name(n).id for n in HARD]
    ids = [c.id for c in ontology.subset(cfg.data.classes)] + hard
    spec = cfg.input_spec()
    if not isinstance(spec, LidarInputSpec):
        parser.error(f'{args.config} is not a LiDAR run config')
    if args.size:
        spec = replace(spec, height=args.size[0], width=args.size[1])
    records = read_records([args.bag], 'lidar', cfg.data.topics, cfg.data.cache_dir, ontology)
    fused = MultiScanDataset(LidarDataset(records, spec, ids, None, 0, hard), hard, args.window)
    first_hard = len(ids) - len(hard)
    count = {'points': np.zeros(2, np.int64), 'pixels': np.zeros(2, np.int64)}
    # Scans whose full window exists, from the middle of the recording.
    start = max(args.window, (len(fused) - args.scans) // 2)
    for index in range(start, min(start + args.scans, len(fused) - args.window)):
        _, target, _, teacher_target, *_ = fused[index]
        points, labels = fused.fused(index)
        is_hard = np.isin(labels & SEMANTIC_MASK, hard)
        count['points'] += [int((is_hard & (points[:, 4] == 0)).sum()), int(is_hard.sum())]
        for row, image in enumerate((target, teacher_target)):
            count['pixels'][row] += int(((image >= first_hard) & (image != IGNORE_INDEX)).sum())
    print(f'{args.bag}: scans {start}..{start + args.scans - 1}, window +-{args.window}, classes {", ".join(HARD)}')
    for name, (single, multi) in count.items():
        where = f' of the {spec.height} x {spec.width} range image' if name == 'pixels' else ''
        print(f'hard-class {name}{where}: single scan {single}, fused {multi}, ratio {multi / max(single, 1):.2f}')


if __name__ == '__main__':
    main()
