"""``css-perception``: registry list / verify / rollback / activate / prune through the real entry point, and usage
errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.onnx_models import lidar_metadata, write_model

from css_perception.core.metadata import Modality
from css_perception.runtime.registry import Registry

CLI = str(Path(sys.executable).parent / 'css-perception')


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, check=False, timeout=60)


def test_registry_list_verify_rollback(tmp_path) -> None:
    reg = Registry(tmp_path / 'models')
    for v in ('v1', 'v2'):
        reg.publish(write_model(tmp_path / f'{v}.onnx', lidar_metadata(v)), Modality.LIDAR, v)
    listing = _run('registry', 'list', '--model-dir', str(reg.root))
    assert listing.returncode == 0
    assert '  lidar/v1' in listing.stdout
    assert '* lidar/v2' in listing.stdout
    assert _run('registry', 'verify', '--model-dir', str(reg.root)).stdout.count('  ok') == 2
    rollback = _run('registry', 'rollback', '--model-dir', str(reg.root), '--modality', 'lidar')
    assert rollback.returncode == 0
    assert 'lidar: CURRENT -> v1' in rollback.stdout
    assert reg.current(Modality.LIDAR).version == 'v1'
    path = reg.entry(Modality.LIDAR, 'v2').path
    path.write_bytes(path.read_bytes() + b'tampered')
    failed = _run('registry', 'verify', '--model-dir', str(reg.root))
    assert failed.returncode == 1
    assert 'lidar/v2' in failed.stdout
    assert 'FAILED' in failed.stdout


def test_registry_activate_and_prune(tmp_path) -> None:
    reg = Registry(tmp_path / 'models')
    for v in ('v1', 'v2', 'v3', 'v4'):
        reg.publish(write_model(tmp_path / f'{v}.onnx', lidar_metadata(v)), Modality.LIDAR, v)
    root = str(reg.root)
    activated = _run('registry', 'activate', 'lidar@v1', '--model-dir', root)
    assert (activated.returncode, activated.stdout) == (0, 'lidar: CURRENT -> v1\n')
    assert reg.current(Modality.LIDAR).version == 'v1'
    unknown = _run('registry', 'activate', 'lidar@v9', '--model-dir', root)
    assert unknown.returncode == 1
    assert "lidar: lidar model 'v9' not in" in unknown.stderr
    assert 'has: v1, v2, v3, v4' in unknown.stderr
    pruned = _run('registry', 'prune', '--keep', '2', '--modality', 'lidar', '--model-dir', root)
    assert pruned.returncode == 0
    assert pruned.stdout == 'lidar: removed v2\nlidar: kept v1, v3, v4\n'  # v1 is CURRENT
    assert reg.current(Modality.LIDAR).version == 'v1'
    for bad in (['activate'], ['activate', 'v1'], ['activate', 'radar@v1'], ['list', 'lidar@v1']):
        usage = _run('registry', *bad, '--model-dir', root)
        assert usage.returncode == 2, bad
        assert 'activate takes MODALITY@VERSION' in usage.stderr, bad
    assert [e.version for e in reg.versions(Modality.LIDAR)] == ['v1', 'v3', 'v4']


def test_unknown_command_prints_usage() -> None:
    result = _run('fly')
    assert result.returncode == 2
    assert 'usage: css-perception {node,play,monitor,registry}' in result.stderr


def test_the_node_refuses_a_bad_parameter_value_in_one_line() -> None:
    result = _run('node', '--ros-args', '-p', 'overlay_alpha:=3.0')
    assert result.returncode == 2
    assert 'invalid parameters: overlay_alpha=3.0 (expected in [0, 1])' in result.stderr
    assert 'Traceback' not in result.stderr


def test_the_node_refuses_a_params_file_it_cannot_read(tmp_path) -> None:
    broken = tmp_path / 'broken.yaml'
    broken.write_text('segment_node: {ros__parameters: [\n')
    for params in (broken, tmp_path / 'missing.yaml'):
        result = _run('node', '--params', str(params))
        assert result.returncode == 2
        assert 'segment_node: cannot start: ' in result.stderr
        assert str(params) in result.stderr
        assert 'Traceback' not in result.stderr


def test_usage_errors_are_one_line_and_exit_2(tmp_path) -> None:
    (tmp_path / 'a_file').write_text('')
    missing = _run('registry', 'list', '--model-dir', str(tmp_path / 'nowhere'))
    assert missing.returncode == 2
    assert f'no registry at {tmp_path / "nowhere"}' in missing.stderr
    unwritable = _run('monitor', '--out', str(tmp_path / 'a_file' / 'report.json'), '--duration', '30')
    assert unwritable.returncode == 2
    assert 'css-perception monitor: ' in unwritable.stderr
    remap = _run('play', str(tmp_path), '--remap', 'points')
    assert remap.returncode == 2
    assert "argument --remap: takes OLD:=NEW, got 'points'" in remap.stderr
    assert 'Traceback' not in missing.stderr + remap.stderr + unwritable.stderr
