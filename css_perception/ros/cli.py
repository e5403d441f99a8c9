"""``css-perception``: run the node, play a bag, watch the outputs, manage the model registry, without ros2 CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

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
    parser = argparse.ArgumentParser(
        prog='css-perception registry', description='list, verify, roll back, activate or prune models'
    )
    parser.add_argument('action', choices=('list', 'verify', 'rollback', 'activate', 'prune'))
    parser.add_argument('target', nargs='?', metavar='MODALITY@VERSION', help='activate: the version, e.g. lidar@v3')
    parser.add_argument('--model-dir', default='models', help='registry root (the node parameter model_dir)')
    parser.add_argument(
        '--modality', choices=[m.value for m in Modality], action='append', help='default: every modality'
    )
    parser.add_argument('--keep', type=int, default=3, help='prune: newest versions to keep (and always CURRENT)')
    args = parser.parse_args(rest)
    if (args.action == 'activate') != (args.target is not None):
        parser.error('activate takes MODALITY@VERSION, and only activate takes one')
    registry = Registry(args.model_dir)
    if not registry.root.is_dir():
        print(f'css-perception registry: no registry at {registry.root}', file=sys.stderr)
        return 2
    if args.action == 'activate':
        modality, _, version = args.target.partition('@')
        if modality not in {m.value for m in Modality} or not version:
            parser.error(f'activate takes MODALITY@VERSION (lidar@v3, camera@v1), not {args.target!r}')
        return _registry_action(registry, [modality], lambda m: _activate(registry, m, version))
    per_modality: dict[str, Callable[[str], bool]] = {
        'list': lambda m: _list(registry, m, verify=False),
        'verify': lambda m: _list(registry, m, verify=True),
        'rollback': lambda m: _activate(registry, m, None),
        'prune': lambda m: _prune(registry, m, args.keep),
    }
    return _registry_action(registry, args.modality, per_modality[args.action])


def _registry_action(registry: Registry, modalities: list[str] | None, action: Callable[[str], bool]) -> int:
    """``action`` per modality (default: every one); 1 when one failed or raised a RegistryError."""
    failed = False
    for modality in modalities or [m.value for m in Modality]:
        try:
            failed |= not action(modality)
        except RegistryError as err:
            print(f'{modality}: {err}', file=sys.stderr)
            failed = True
    return 1 if failed else 0


def _list(registry: Registry, modality: str, verify: bool) -> bool:
    current, ok = registry.current(modality), True
    for entry in registry.versions(modality):
        mark = '*' if current and entry.version == current.version else ' '
        status = ''
        if verify:
            try:
                registry.verify(entry)
                status = '  ok'
            except RegistryError as err:
                status, ok = f'  FAILED: {err}', False
        print(f'{mark} {modality}/{entry.version}  {entry.sha256[:12]}  {entry.path}{status}')
    return ok


def _activate(registry: Registry, modality: str, version: str | None) -> bool:
    """Point CURRENT at ``version``, or at the one before the current (rollback) when None."""
    entry = registry.rollback(modality) if version is None else registry.set_current(modality, version)
    print(f'{modality}: CURRENT -> {entry.version}')
    return True


def _prune(registry: Registry, modality: str, keep: int) -> bool:
    removed = registry.prune(modality, keep)
    for entry in removed:
        print(f'{modality}: removed {entry.version}')
    kept = ', '.join(e.version for e in registry.versions(modality)) or 'none'
    print(f'{modality}: kept {kept}')
    return True


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
