"""``css-perception``: run the node, play a bag, watch the outputs, manage the model registry, without ros2 CLI."""

from __future__ import annotations

import argparse
import sys

from css_perception.core.metadata import Modality
from css_perception.runtime.errors import RegistryError
from css_perception.runtime.registry import Registry

__all__ = ['main']


def _node(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog='css-perception node', description='run segment_node (as the launch file)')
    parser.add_argument('--params', help='ROS parameters YAML (e.g. config/segment.yaml)')
    args, ros_args = parser.parse_known_args(rest)
    from css_perception.ros.node import main as node_main

    argv = ['segment_node']
    if args.params:
        argv += ['--ros-args', '--params-file', args.params]
    if ros_args:
        argv += ros_args if '--ros-args' in ros_args or '--ros-args' in argv else ['--ros-args', *ros_args]
    return node_main(argv)


def _registry(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog='css-perception registry', description='list, verify or roll back models')
    parser.add_argument('action', choices=('list', 'verify', 'rollback'))
    parser.add_argument('--model-dir', default='models', help='registry root (the node parameter model_dir)')
    parser.add_argument(
        '--modality', choices=[m.value for m in Modality], action='append', help='default: every modality'
    )
    args = parser.parse_args(rest)
    registry = Registry(args.model_dir)
    if not registry.root.is_dir():
        print(f'css-perception registry: no registry at {registry.root}', file=sys.stderr)
        return 2
    failed = False
    for modality in args.modality or [m.value for m in Modality]:
        try:
            if args.action == 'rollback':
                entry = registry.rollback(modality)
                print(f'{modality}: CURRENT -> {entry.version}')
                continue
            current = registry.current(modality)
            for entry in registry.versions(modality):
                mark = '*' if current and entry.version == current.version else ' '
                status = ''
                if args.action == 'verify':
                    try:
                        registry.verify(entry)
                        status = '  ok'
                    except RegistryError as err:
                        status, failed = f'  FAILED: {err}', True
                print(f'{mark} {modality}/{entry.version}  {entry.sha256[:12]}  {entry.path}{status}')
        except RegistryError as err:
            print(f'{modality}: {err}', file=sys.stderr)
            failed = True
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = ('node', 'play', 'monitor', 'registry')
    if not argv or argv[0] not in commands:
        print(
            f'usage: css-perception {{{",".join(commands)}}} ... (-h after a command for its options)', file=sys.stderr
        )
        return 2
    command, rest = argv[0], argv[1:]
    if command == 'node':
        return _node(rest)
    if command == 'registry':
        return _registry(rest)
    if command == 'play':
        from css_perception.ros.player import main as play_main

        return play_main(rest)
    from css_perception.ros.monitor import main as monitor_main

    return monitor_main(rest)


if __name__ == '__main__':
    sys.exit(main())
