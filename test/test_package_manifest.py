"""The ament_python package is complete: manifest, resource marker, installed data files, entry points."""

from __future__ import annotations

import ast
import importlib
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_kwargs() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / 'setup.py').read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'setup')
    return {kw.arg: kw.value for kw in call.keywords if kw.arg}


def _interface_packages() -> set[str]:
    """The ROS message and service packages the onboard package imports (``from sensor_msgs.msg import ...``)."""
    modules = {
        node.module
        for path in (ROOT / 'css_perception').rglob('*.py')
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    return {m.split('.')[0] for m in modules if m.endswith(('.msg', '.srv'))}


def test_package_xml_is_format3_ament_python_with_ros_dependencies() -> None:
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'css_perception'
    assert root.find('export/build_type').text == 'ament_python'
    depends = {e.text for e in root if e.tag in ('depend', 'exec_depend')}
    assert 'rclpy' in depends
    assert _interface_packages() <= depends
    assert {'python3-numpy', 'python3-yaml', 'python3-onnxruntime-pip', 'python3-rosbags-pip'} <= depends


def test_setup_installs_marker_launch_and_config() -> None:
    data_files = ast.unparse(_setup_kwargs()['data_files'])
    assert "'share/ament_index/resource_index/packages'" in data_files
    assert (ROOT / 'resource' / 'css_perception').is_file()
    for pattern in ("'launch/*.launch.py'", "'config/*.yaml'", "'config/*.rviz'"):
        assert pattern in data_files
    assert list((ROOT / 'launch').glob('*.launch.py')), 'no launch file to install'


def test_setup_never_requires_ros_wheels_or_torch() -> None:
    requires = ast.literal_eval(_setup_kwargs()['install_requires'])
    assert not [r for r in requires if r.startswith(('ros-', 'rclpy', 'torch'))]


def test_console_scripts_resolve_to_callables() -> None:
    scripts = ast.literal_eval(_setup_kwargs()['entry_points'])['console_scripts']
    for line in scripts:
        name, target = (s.strip() for s in line.split('='))
        module, func = target.split(':')
        assert callable(getattr(importlib.import_module(module), func)), name


def test_the_dev_wheels_cover_every_ros_package_the_node_imports() -> None:
    wheels = set((ROOT / 'requirements' / 'ros-wheels.txt').read_text().split())
    assert {f'ros-{pkg.replace("_", "-")}' for pkg in _interface_packages()} <= wheels
