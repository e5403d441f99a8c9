"""``css-data``: data preparation. ``css-data kitti-to-bag SEQ OUT`` converts a SemanticKITTI sequence."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from css_perception.core.errors import OntologyError
from css_perception.core.ontology import Ontology
from css_training.data.errors import DataError
from css_training.data.kitti import kitti_to_bag

__all__ = ['get_args_parser', 'main']

_log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='css-data', description='Prepare recorded data for css_training.')
    commands = parser.add_subparsers(dest='command', required=True)
    kitti = commands.add_parser(
        'kitti-to-bag',
        help='write a SemanticKITTI sequence folder as a rosbag2 recording in the simulator layout',
    )
    kitti.add_argument('sequence', type=Path, help='sequence folder holding velodyne/, labels/, poses.txt, calib.txt')
    kitti.add_argument('out', type=Path, help='rosbag2 directory to create (must not exist)')
    kitti.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    kitti.add_argument('--classes', type=Path, help='ontology YAML (default: the package config/classes.yaml)')
    kitti.add_argument('--label-map', type=Path, help='YAML semantic_kitti_map replacing the ontology map')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status (1 with one error line on bad input)."""
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        ontology = Ontology.load(args.classes) if args.classes is not None else None
        out = kitti_to_bag(args.sequence, args.out, args.storage, ontology, args.label_map)
    except (DataError, OntologyError) as err:
        _log.error('%s', err)
        return 1
    _log.info('wrote %s', out)
    return 0
