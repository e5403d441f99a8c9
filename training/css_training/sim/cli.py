"""``css-sim``: simulated LiDAR + camera recordings.

css-sim record OUT [--config sim.yaml] [--scans 500] [--seed 0] [--storage sqlite3] [--no-camera]
css-sim split ROOT [--config sim.yaml] [--train 400] [--val 100] [--test 100]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from css_perception.core.image import COMPRESSED_FORMATS
from css_perception.core.ontology import Ontology
from css_training.data.errors import BagError
from css_training.sim.config import SimConfig, SimConfigError
from css_training.sim.record import generate_split, simulate

__all__ = ['get_args_parser', 'main']


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='css-sim', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--config', type=Path, help='simulator YAML (see config/sim/); defaults otherwise')
    common.add_argument('--seed', type=int, help='random seed (the same seed writes the same data)')
    common.add_argument('--storage', choices=['mcap', 'sqlite3'], help='rosbag2 storage (default mcap)')
    common.add_argument('--beams', type=int, help='LiDAR beams')
    common.add_argument('--azimuth-steps', type=int, help='LiDAR azimuth steps per turn')
    common.add_argument('--no-camera', action='store_true', help='LiDAR only')
    common.add_argument(
        '--compressed',
        choices=COMPRESSED_FORMATS,
        help='camera frames as CompressedImage on /camera/image_raw/compressed (default: rgb8 Image)',
    )
    common.add_argument('--quiet', action='store_true', help='no progress bar or histogram')
    sub = parser.add_subparsers(dest='command', required=True)
    record = sub.add_parser('record', parents=[common], help='write one sequence')
    record.add_argument('out', type=Path, help='rosbag2 directory to create')
    record.add_argument('--scans', type=int, help='number of LiDAR scans')
    split = sub.add_parser('split', parents=[common], help='write (or reuse) a train/val/test split')
    split.add_argument('root', type=Path)
    for name, default in (('train', 400), ('val', 100), ('test', 100)):
        split.add_argument(f'--{name}', type=int, default=default, help=f'scans in {name} (default {default})')
    return parser


def _config(args: argparse.Namespace) -> SimConfig:
    config = SimConfig.load(args.config) if args.config else SimConfig()
    top = {
        k: v
        for k, v in (('seed', args.seed), ('storage', args.storage), ('scans', getattr(args, 'scans', None)))
        if v is not None
    }
    lidar = {k: v for k, v in (('beams', args.beams), ('azimuth_steps', args.azimuth_steps)) if v is not None}
    camera = {'enabled': False} if args.no_camera else {}
    if args.compressed:
        camera['compression'] = args.compressed
    return replace(config, **top, lidar=replace(config.lidar, **lidar), camera=replace(config.camera, **camera))


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        config = _config(args)
        if args.command == 'record':
            report = simulate(config, args.out, progress=not args.quiet)
            if not args.quiet:
                print(f'{report.path}: {report.scans} scans, {report.frames} frames in {report.seconds:.1f} s')
                print(report.histogram.table(Ontology.load()))
        else:
            paths = generate_split(
                args.root, config, {'train': args.train, 'val': args.val, 'test': args.test}, not args.quiet
            )
            print('\n'.join(f'{name}: {" ".join(map(str, part))}' for name, part in paths.items()))
    except (SimConfigError, BagError, OSError) as err:
        print(f'css-sim: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
