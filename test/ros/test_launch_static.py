"""The launch file and RViz config, checked statically (launch/launch_ros are not installable from PyPI here)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch' / 'segment.launch.py'


def _calls(name: str) -> list[ast.Call]:
    tree = ast.parse(LAUNCH.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == name]


def _kwargs(call: ast.Call) -> dict[str, ast.expr]:
    return {kw.arg: kw.value for kw in call.keywords if kw.arg}


def test_launch_file_uses_launch_ros_and_defines_the_entry_point() -> None:
    tree = ast.parse(LAUNCH.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {'launch', 'launch_ros.actions', 'launch_ros.substitutions'} <= modules
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description' for n in tree.body)


def test_every_executable_it_names_exists() -> None:
    setup = (ROOT / 'setup.py').read_text()
    nodes = {
        ast.literal_eval(_kwargs(c)['package']): ast.literal_eval(_kwargs(c)['executable']) for c in _calls('Node')
    }
    assert nodes['css_perception'] == 'segment_node'
    assert "'segment_node = css_perception.ros.node:main'" in setup
    assert nodes['rviz2'] == 'rviz2'


def test_every_share_file_it_names_exists_and_is_installed() -> None:
    joins = [[ast.literal_eval(e) for e in c.args[0].elts[1:]] for c in _calls('PathJoinSubstitution')]
    assert ['config', 'segment.yaml'] in joins
    assert ['config', 'css_perception.rviz'] in joins
    setup = (ROOT / 'setup.py').read_text()
    for parts in joins:
        assert (ROOT.joinpath(*parts)).is_file(), parts
        assert f"'{parts[0]}/*{Path(parts[-1]).suffix}'" in setup


def test_inputs_are_remapped_from_launch_arguments() -> None:
    declared = {ast.literal_eval(c.args[0]) for c in _calls('DeclareLaunchArgument')}
    assert {'points_topic', 'image_topic', 'image_transport', 'params_file', 'model_dir', 'rviz'} <= declared
    node = next(c for c in _calls('Node') if ast.literal_eval(_kwargs(c)['package']) == 'css_perception')
    remaps = ast.unparse(_kwargs(node)['remappings'])
    assert "('points', LaunchConfiguration('points_topic'))" in remaps
    assert "('image', LaunchConfiguration('image_topic'))" in remaps
    parameters = ast.unparse(_kwargs(node)['parameters'])
    assert "'image_transport': LaunchConfiguration('image_transport')" in parameters


def test_the_node_can_run_in_a_namespace() -> None:
    assert 'namespace' in {ast.literal_eval(c.args[0]) for c in _calls('DeclareLaunchArgument')}
    node = next(c for c in _calls('Node') if ast.literal_eval(_kwargs(c)['package']) == 'css_perception')
    assert ast.unparse(_kwargs(node)['namespace']) == "LaunchConfiguration('namespace')"


def test_use_sim_time_reaches_the_node_and_rviz() -> None:
    assert 'use_sim_time' in {ast.literal_eval(c.args[0]) for c in _calls('DeclareLaunchArgument')}
    for node in _calls('Node'):
        assert "'use_sim_time': LaunchConfiguration('use_sim_time')" in ast.unparse(_kwargs(node)['parameters'])


def test_rviz_config_shows_the_node_outputs() -> None:
    config = yaml.safe_load((ROOT / 'config' / 'css_perception.rviz').read_text())
    displays = {d['Class']: d for d in config['Visualization Manager']['Displays']}
    cloud = displays['rviz_default_plugins/PointCloud2']
    assert cloud['Topic']['Value'] == '/segment_node/lidar/points'
    assert cloud['Color Transformer'] == 'RGB8'
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == '/segment_node/camera/overlay'
    assert displays['rviz_default_plugins/MarkerArray']['Topic']['Value'] == '/segment_node/legend'
