"""segment_node on real rclpy and real ONNX Runtime: publish inputs from a test node, check what comes out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from support.onnx_models import camera_metadata, lidar_metadata, write_model

from css_perception.core.image import array_to_image, image_to_array, rgb8_to_compressed
from css_perception.core.metadata import Modality
from css_perception.core.pointcloud import array_to_cloud, cloud_to_array
from css_perception.ros.messages import cloud_message, image_message
from css_perception.ros.node import SegmentationNode
from css_perception.ros.params import PARAMETERS, ConfigError
from css_perception.runtime.registry import Registry

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool], timeout: float = 8.0) -> bool:
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    return done()


def scan(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.zeros(n, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'), ('ring', '<u2')])
    arr['x'], arr['y'] = rng.uniform(-20, 20, n), rng.uniform(-20, 20, n)
    arr['z'] = rng.uniform(-2, 0.5, n)
    arr['intensity'] = rng.uniform(0, 1, n)
    arr['ring'] = np.arange(n) % 16
    return arr


def header(i: int, frame: str = 'velodyne') -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = 100 + i, 1000 * i
    return h


class Harness:
    """The node under test plus a peer node that publishes inputs and records outputs."""

    def __init__(self, context, params: dict, image_topic: str = 'image') -> None:
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        remap = ['--ros-args', '-r', f'image:={image_topic}']
        self.node = SegmentationNode(context=context, parameter_overrides=overrides, cli_args=remap)
        self.peer = Node('test_peer', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.got: dict[str, list] = {k: [] for k in ('cloud', 'labels', 'overlay', 'legend', 'prov', 'diag')}
        self.points_pub = self.peer.create_publisher(PointCloud2, 'points', 10)
        if params.get('image_transport') == 'compressed':
            self.image_pub = self.peer.create_publisher(CompressedImage, f'{image_topic}/compressed', 10)
        else:
            self.image_pub = self.peer.create_publisher(Image, image_topic, 10)

    def listen(self, *names: str) -> None:
        topics = {
            'cloud': (PointCloud2, '/segment_node/lidar/points', 10),
            'labels': (Image, '/segment_node/camera/labels', 10),
            'overlay': (Image, '/segment_node/camera/overlay', 10),
            'legend': (String, '/segment_node/legend_json', LATCHED),
            'prov': (String, '/segment_node/provenance', 10),
            'diag': (DiagnosticArray, '/diagnostics', 10),
        }
        for name in names:
            msg_type, topic, qos = topics[name]
            self.peer.create_subscription(msg_type, topic, self.got[name].append, qos)
        # Let discovery match the publishers before inputs are sent.
        inputs = [
            pub
            for pub, on in (
                (self.points_pub, self.node.config.enable_lidar),
                (self.image_pub, self.node.config.enable_camera),
            )
            if on
        ]
        spin_until(self.executor, lambda: all(pub.get_subscription_count() for pub in inputs), 5.0)
        self.executor.spin_once(timeout_sec=0.3)

    def status(self, modality: str) -> dict[str, str]:
        """The values of the latest /diagnostics status of ``modality`` received, {} before one."""
        name = f'{self.node.get_fully_qualified_name()}: {modality}'
        statuses = [s for d in self.got['diag'] for s in d.status if s.name == name]
        return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()


@pytest.fixture
def registry(tmp_path) -> Registry:
    reg = Registry(tmp_path / 'models')
    reg.publish(write_model(tmp_path / 'l.onnx', lidar_metadata('v1'), winner=1), Modality.LIDAR)
    reg.publish(write_model(tmp_path / 'c.onnx', camera_metadata('v1'), winner=2), Modality.CAMERA)
    return reg


@pytest.fixture
def harness(ros_context, registry) -> Iterator[Harness]:
    h = Harness(ros_context, {'model_dir': str(registry.root), 'diagnostics_period_s': 0.2})
    yield h
    h.close()


def test_labelled_cloud_keeps_fields_and_header(harness: Harness) -> None:
    harness.listen('cloud', 'prov')
    arr = scan()
    arr['x'][:3] = np.nan
    harness.points_pub.publish(cloud_message(array_to_cloud(arr), header(1)))
    assert spin_until(harness.executor, lambda: harness.got['cloud'] and harness.got['prov'])
    out = harness.got['cloud'][0]
    assert out.header.frame_id == 'velodyne'
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (101, 1000)
    result = cloud_to_array(out)
    assert result.dtype.names == ('x', 'y', 'z', 'intensity', 'ring', 'label', 'rgb', 'score')
    np.testing.assert_array_equal(result['ring'], arr['ring'])
    np.testing.assert_array_equal(result['label'][:3], 0)  # NaN points: unlabelled, never dropped
    np.testing.assert_array_equal(result['label'][3:], 40)  # the model's winner channel is id 40 (road)
    rgb = result['rgb'][3:].view(np.uint32)
    assert ((rgb >> 16) & 255 == 255).all()  # road is (255, 0, 255) in classes.yaml
    assert (result['score'][3:] > 0.9).all()
    prov = json.loads(harness.got['prov'][0].data)
    assert prov == {
        'modality': 'lidar',
        'stamp': {'sec': 101, 'nanosec': 1000},
        'frame_id': 'velodyne',
        'model_version': 'v1',
        'provider': 'CPUExecutionProvider',
    }


def test_camera_outputs(harness: Harness) -> None:
    harness.listen('labels', 'overlay')
    frame = np.full((30, 40, 3), 100, np.uint8)
    harness.image_pub.publish(image_message(array_to_image(frame[..., ::-1].copy(), 'bgr8'), header(2, 'camera')))
    assert spin_until(harness.executor, lambda: harness.got['labels'] and harness.got['overlay'])
    labels, over = harness.got['labels'][0], harness.got['overlay'][0]
    assert (labels.encoding, labels.height, labels.width) == ('mono16', 30, 40)
    assert (image_to_array(labels) == 10).all()  # winner channel 2 -> id 10 (car)
    assert over.encoding == 'rgb8'
    blended = image_to_array(over)
    np.testing.assert_array_equal(blended[0, 0], [(100 + 100) // 2, (100 + 150) // 2, (100 + 245) // 2])


@pytest.mark.parametrize(
    ('encoding', 'frame'),
    [('bayer_grbg8', np.full((30, 40), 100, np.uint8)), ('yuv422_yuy2', np.full((30, 40, 2), [100, 128], np.uint8))],
)
def test_raw_bayer_and_yuv_frames_from_camera_drivers_are_segmented(harness: Harness, encoding, frame) -> None:
    harness.listen('labels', 'overlay')
    harness.image_pub.publish(image_message(array_to_image(frame, encoding), header(2, 'camera')))
    assert spin_until(harness.executor, lambda: harness.got['labels'] and harness.got['overlay'])
    assert (image_to_array(harness.got['labels'][0]) == 10).all()
    grey = image_to_array(harness.got['overlay'][0])[0, 0].astype(int) * 2 - [100, 150, 245]  # undo the car colour
    np.testing.assert_allclose(grey, 100 if encoding.startswith('bayer') else round(1.164 * 84), atol=2)


def test_compressed_frames_come_from_the_remapped_topic_and_a_bad_one_is_counted(ros_context, registry) -> None:
    params = {'model_dir': str(registry.root), 'enable_lidar': False, 'image_transport': 'compressed'}
    h = Harness(ros_context, params, image_topic='/cam/front')
    try:
        h.listen('labels', 'overlay')
        assert h.image_pub.topic_name == '/cam/front/compressed'
        h.image_pub.publish(CompressedImage(header=header(1, 'camera'), format='jpeg', data=b'not a jpeg'))
        state = h.node.states[Modality.CAMERA]
        assert spin_until(h.executor, lambda: state.counts['errors'] == 1)
        assert 'cannot be decoded' in state.last_error
        frame = np.full((30, 40, 3), 100, np.uint8)
        fmt, data = rgb8_to_compressed(frame, 'png')
        h.image_pub.publish(CompressedImage(header=header(2, 'camera'), format=fmt, data=data))
        assert spin_until(h.executor, lambda: h.got['labels'] and h.got['overlay'])
        labels, over = h.got['labels'][0], h.got['overlay'][0]
        assert (labels.header.stamp.sec, labels.header.frame_id) == (102, 'camera')
        assert (image_to_array(labels) == 10).all()
        np.testing.assert_array_equal(image_to_array(over)[0, 0], [100, 125, 172])
    finally:
        h.close()


def test_legend_is_latched_for_late_subscribers(harness: Harness) -> None:
    harness.listen('legend')
    assert spin_until(harness.executor, lambda: harness.got['legend'])
    legend = json.loads(harness.got['legend'][-1].data)
    assert legend['lidar']['version'] == 'v1'
    assert [c['id'] for c in legend['camera']['classes']] == [0, 40, 10]
    assert legend['camera']['classes'][2]['color'] == [100, 150, 245]


def test_malformed_cloud_is_counted_and_next_one_served(harness: Harness) -> None:
    harness.listen('cloud', 'diag')
    bad = cloud_message(array_to_cloud(scan()), header(1))
    bad.data = bytes(bad.data)[:-5]
    harness.points_pub.publish(bad)
    spin_until(harness.executor, lambda: harness.node.states[Modality.LIDAR].counts['errors'] == 1, 3.0)
    harness.points_pub.publish(cloud_message(array_to_cloud(scan()), header(2)))
    assert spin_until(harness.executor, lambda: harness.got['cloud'])
    assert harness.got['cloud'][0].header.stamp.sec == 102

    assert spin_until(harness.executor, lambda: harness.status('lidar').get('frames_out') == '1')
    values = harness.status('lidar')
    assert values['errors'] == '1'
    assert 'data is' in values['last_error']
    assert values['model_version'] == 'v1'
    assert values['provider'] == 'CPUExecutionProvider'
    for stage in ('decode', 'project', 'infer', 'back_project', 'publish', 'total'):
        assert float(values[f'latency_{stage}_p95_ms']) >= 0


def test_frames_missing_from_the_input_stamps_are_counted(harness: Harness) -> None:
    harness.listen('diag')
    state = harness.node.states[Modality.LIDAR]
    for n, i in enumerate([1, 2, 3, 4, 7, 8], start=1):  # 1 s apart; scans 5 and 6 never sent
        harness.points_pub.publish(cloud_message(array_to_cloud(scan(seed=i)), header(i)))
        assert spin_until(harness.executor, lambda n=n: state.counts['frames_in'] == n)

    assert spin_until(harness.executor, lambda: harness.status('lidar').get('frames_in') == '6')
    assert harness.status('lidar')['frames_missed'] == '2'
    assert harness.status('lidar')['input_period_ms'] == '1000.0'
    latest = [s for d in harness.got['diag'] for s in d.status if s.name == '/segment_node: lidar'][-1]
    assert latest.level == DiagnosticStatus.WARN  # 2 of the 7 frames since the first: over the 0.2 default
    assert latest.message == '29 % of recent input frames missed before the node'


def test_outputs_without_subscribers_are_not_computed(harness: Harness) -> None:
    harness.listen('labels')  # a camera output, but nothing listens to the LiDAR cloud
    harness.points_pub.publish(cloud_message(array_to_cloud(scan()), header(1)))
    state = harness.node.states[Modality.LIDAR]
    assert spin_until(harness.executor, lambda: state.counts['frames_in'] == 1)
    assert state.counts['skipped'] == 1
    assert state.counts['frames_out'] == 0


def test_model_info_and_reload_services(harness: Harness) -> None:
    client = harness.peer.create_client(Trigger, '/segment_node/model_info')
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(Trigger.Request())
    assert spin_until(harness.executor, future.done)
    info = json.loads(future.result().message)
    assert info['lidar']['version'] == 'v1'
    assert info['camera']['classes'][1] == {'id': 40, 'name': 'road'}
    reload_client = harness.peer.create_client(Trigger, '/segment_node/reload_model')
    assert reload_client.wait_for_service(timeout_sec=5.0)
    future = reload_client.call_async(Trigger.Request())
    assert spin_until(harness.executor, future.done)
    assert future.result().success
    assert 'lidar: v1 accepted' in future.result().message


def set_parameters(harness: Harness, **values: object) -> SetParametersResult:
    """Set ``values`` at once through the node's own parameter service, as ``ros2 param set`` does."""
    client = harness.peer.create_client(SetParametersAtomically, '/segment_node/set_parameters_atomically')
    assert client.wait_for_service(timeout_sec=5.0)
    request = SetParametersAtomically.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
    )
    future = client.call_async(request)
    assert spin_until(harness.executor, future.done)
    return future.result().result


def test_live_parameters_apply_to_the_next_frame(harness: Harness) -> None:
    harness.listen('overlay', 'diag')
    assert set_parameters(harness, overlay_alpha=0.0, camera_latency_warn_ms=1e-6).successful
    frame = np.full((30, 40, 3), 100, np.uint8)
    harness.image_pub.publish(image_message(array_to_image(frame, 'rgb8'), header(2, 'camera')))
    assert spin_until(harness.executor, lambda: harness.got['overlay'])
    np.testing.assert_array_equal(image_to_array(harness.got['overlay'][0]), frame)  # no class colour at alpha 0
    assert spin_until(harness.executor, lambda: harness.status('camera').get('frames_out') == '1')
    latest = [s for d in harness.got['diag'] for s in d.status if s.name == '/segment_node: camera'][-1]
    assert latest.level == DiagnosticStatus.WARN
    assert latest.message.endswith('> 1e-06 ms')


def test_min_score_leaves_unsure_points_and_pixels_unlabelled(harness: Harness) -> None:
    harness.listen('cloud', 'labels')
    assert set_parameters(harness, min_score=0.99).successful  # the test models' winner has probability 0.987
    harness.points_pub.publish(cloud_message(array_to_cloud(scan()), header(1)))
    harness.image_pub.publish(image_message(array_to_image(np.full((30, 40, 3), 100, np.uint8), 'rgb8'), header(2)))
    assert spin_until(harness.executor, lambda: harness.got['cloud'] and harness.got['labels'])
    cloud = cloud_to_array(harness.got['cloud'][0])
    np.testing.assert_array_equal(cloud['label'], 0)
    assert (cloud['score'] > 0.98).all()  # the score is published as the model gave it
    assert (image_to_array(harness.got['labels'][0]) == 0).all()
    assert set_parameters(harness, min_score=0.5).successful
    harness.points_pub.publish(cloud_message(array_to_cloud(scan()), header(3)))
    assert spin_until(harness.executor, lambda: len(harness.got['cloud']) == 2)
    np.testing.assert_array_equal(cloud_to_array(harness.got['cloud'][1])['label'], 40)


def test_a_bad_or_read_only_parameter_is_refused_and_nothing_changes(harness: Harness) -> None:
    before = harness.node.config
    refused = set_parameters(harness, overlay_alpha=1.5)
    assert not refused.successful
    assert 'overlay_alpha=1.5 (expected in [0, 1])' in refused.reason
    refused = set_parameters(harness, overlay_alpha=0.2, lidar_latency_warn_ms=500.0)  # atomic: neither is set
    assert 'lidar_latency_warn_ms=500.0 is not below lidar_latency_error_ms=200.0' in refused.reason
    refused = set_parameters(harness, model_dir='/elsewhere')
    assert not refused.successful
    assert 'read-only' in refused.reason
    assert harness.node.config == before
    assert harness.node.get_parameter('overlay_alpha').value == 0.5
    harness.listen('cloud')
    harness.points_pub.publish(cloud_message(array_to_cloud(scan()), header(1)))
    assert spin_until(harness.executor, lambda: harness.got['cloud'])  # still serving


def test_the_diagnostics_period_is_live(harness: Harness) -> None:
    harness.listen('diag')
    assert spin_until(harness.executor, lambda: harness.got['diag'])  # every 0.2 s
    assert set_parameters(harness, diagnostics_period_s=60.0).successful
    harness.executor.spin_once(timeout_sec=0.3)
    harness.got['diag'].clear()
    assert not spin_until(harness.executor, lambda: harness.got['diag'], timeout=1.5)
    assert set_parameters(harness, diagnostics_period_s=0.1).successful
    assert spin_until(harness.executor, lambda: len(harness.got['diag']) >= 3, timeout=5.0)


def test_with_sim_time_and_no_clock_yet_it_serves_and_reports(ros_context, registry) -> None:
    """A replay node runs with use_sim_time; its health must not wait for /clock (sim time 0 until the bag plays)."""
    h = Harness(ros_context, {'model_dir': str(registry.root), 'diagnostics_period_s': 0.2, 'use_sim_time': True})
    try:
        h.listen('cloud', 'diag')
        h.points_pub.publish(cloud_message(array_to_cloud(scan()), header(1)))
        assert spin_until(h.executor, lambda: h.got['cloud'])
        assert spin_until(h.executor, lambda: h.status('lidar').get('frames_out') == '1')
        assert h.node.get_clock().now().nanoseconds == 0
    finally:
        h.close()


def test_the_package_params_file_reaches_a_node_in_a_namespace(ros_context, registry, tmp_path) -> None:
    """A second camera runs a second node in its own namespace; the package's params file must still apply."""
    values = yaml.safe_load((Path(__file__).parents[2] / 'config' / 'segment.yaml').read_text())
    (key,) = values
    values[key]['ros__parameters'].update(model_dir=str(registry.root), overlay_alpha=0.25, enable_lidar=False)
    params = tmp_path / 'segment.yaml'
    params.write_text(yaml.safe_dump(values))
    args = ['--ros-args', '--params-file', str(params)]
    node = SegmentationNode(context=ros_context, namespace='front', cli_args=args)
    try:
        assert (node.config.overlay_alpha, node.config.enable_lidar) == (0.25, False)
        assert node._status(node.states[Modality.CAMERA]).name == '/front/segment_node: camera'
    finally:
        node.destroy_node()


def test_no_model_keeps_the_node_running(ros_context, tmp_path) -> None:
    h = Harness(ros_context, {'model_dir': str(tmp_path / 'empty'), 'enable_camera': False})
    try:
        h.listen('cloud')
        h.points_pub.publish(cloud_message(array_to_cloud(scan()), header(1)))
        state = h.node.states[Modality.LIDAR]
        assert spin_until(h.executor, lambda: state.counts['dropped'] == 1)
        assert h.node._status(state).message == 'no model loaded; frames are dropped'
    finally:
        h.close()


def test_bad_parameters_are_refused_with_every_reason(ros_context) -> None:
    with pytest.raises(ConfigError, match=r"output_reliability='sometimes'.*overlay_alpha=2.0"):
        SegmentationNode(
            context=ros_context,
            parameter_overrides=[
                Parameter('output_reliability', value='sometimes'),
                Parameter('overlay_alpha', value=2.0),
            ],
        )


def test_yaml_defaults_and_live_marks_match_the_parameter_table() -> None:
    text = (Path(__file__).parents[2] / 'config' / 'segment.yaml').read_text()
    values = yaml.safe_load(text)
    params = values['/**/segment_node']['ros__parameters']
    assert params == {p.name: p.default for p in PARAMETERS}
    marked = {line.split(':')[0].strip() for line in text.splitlines() if '# live' in line}
    assert marked == {p.name for p in PARAMETERS if p.live}
