"""Bag readers on real bags written with rosbags' own writers (rosbag2 mcap/sqlite3, ROS 1), read back."""

from __future__ import annotations

import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from css_perception.core.image import rgb8_to_compressed
from css_training.data import bags
from css_training.data.bags import BagTopics, bag_summary, read_camera_frames, read_lidar_scans
from css_training.data.errors import (
    BagError,
    DataError,
    FieldNotFoundError,
    LabelMismatchError,
    PoseError,
    TopicNotFoundError,
    TopicTypeError,
)

ROS2 = get_typestore(Stores.ROS2_JAZZY)
ROS1 = get_typestore(Stores.ROS1_NOETIC)  # a fresh store each call; noetic's lacks tf2_msgs
ROS1.register(get_types_from_msg('geometry_msgs/TransformStamped[] transforms', 'tf2_msgs/msg/TFMessage'))
SEC = 1_000_000_000
T0 = 100 * SEC
STAMPS = [T0, T0 + SEC // 10, T0 + SEC // 5]  # 10 Hz; the middle scan falls between the two poses
YAW_90 = (0.0, 0.0, float(np.sqrt(0.5)), float(np.sqrt(0.5)))
IDENTITY = (0.0, 0.0, 0.0, 1.0)
CLOUD_DTYPE = np.dtype(
    {
        'names': ['x', 'y', 'z', 'intensity', 'label'],
        'formats': ['<f4', '<f4', '<f4', '<f4', '<u4'],
        'offsets': [0, 4, 8, 12, 16],
        'itemsize': 20,
    }
)

Message = tuple[str, str, int, Any]  # topic, type, log time, message


def header(ts: Typestore, stamp_ns: int, frame: str) -> Any:
    types = ts.types
    stamp = types['builtin_interfaces/msg/Time'](sec=stamp_ns // SEC, nanosec=stamp_ns % SEC)
    if 'seq' in types['std_msgs/msg/Header'].__dataclass_fields__:
        return types['std_msgs/msg/Header'](seq=0, stamp=stamp, frame_id=frame)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame)


def cloud_array(i: int, n: int = 5) -> np.ndarray:
    """Scan ``i``: n points with distinct values, labels ``(instance i) << 16 | class``."""
    arr = np.zeros(n, CLOUD_DTYPE)
    arr['x'] = np.arange(n) + 10 * i
    arr['y'] = -np.arange(n)
    arr['z'] = 0.5 * i
    arr['intensity'] = np.linspace(0, 1, n)
    arr['label'] = (i << 16) | np.array([10, 40, 50, 70, 0] * n)[:n]
    return arr


def cloud_msg(ts: Typestore, stamp_ns: int, arr: np.ndarray, frame: str = 'velodyne') -> Any:
    types = ts.types
    fields = [
        types['sensor_msgs/msg/PointField'](name=name, offset=offset, datatype=7 if fmt.kind == 'f' else 6, count=1)
        for name, (fmt, offset) in arr.dtype.fields.items()
    ]
    return types['sensor_msgs/msg/PointCloud2'](
        header=header(ts, stamp_ns, frame),
        height=1,
        width=arr.size,
        fields=fields,
        is_bigendian=False,
        point_step=arr.dtype.itemsize,
        row_step=arr.dtype.itemsize * arr.size,
        data=np.frombuffer(arr.tobytes(), np.uint8),
        is_dense='x' not in arr.dtype.names or bool(np.isfinite(arr['x']).all()),
    )


def transform(ts: Typestore, stamp_ns: int, parent: str, child: str, xyz: tuple, quat: tuple) -> Any:
    types = ts.types
    return types['geometry_msgs/msg/TransformStamped'](
        header=header(ts, stamp_ns, parent),
        child_frame_id=child,
        transform=types['geometry_msgs/msg/Transform'](
            translation=types['geometry_msgs/msg/Vector3'](*xyz),
            rotation=types['geometry_msgs/msg/Quaternion'](*quat),
        ),
    )


def tf_msg(ts: Typestore, *transforms: Any) -> Any:
    return ts.types['tf2_msgs/msg/TFMessage'](transforms=list(transforms))


def odom_msg(ts: Typestore, stamp_ns: int, xyz: tuple, quat: tuple) -> Any:
    types = ts.types
    cov = np.zeros(36)
    pose = types['geometry_msgs/msg/Pose'](
        position=types['geometry_msgs/msg/Point'](*xyz),
        orientation=types['geometry_msgs/msg/Quaternion'](*quat),
    )
    twist = types['geometry_msgs/msg/Twist'](
        linear=types['geometry_msgs/msg/Vector3'](0.0, 0.0, 0.0),
        angular=types['geometry_msgs/msg/Vector3'](0.0, 0.0, 0.0),
    )
    return types['nav_msgs/msg/Odometry'](
        header=header(ts, stamp_ns, 'odom'),
        child_frame_id='base_link',
        pose=types['geometry_msgs/msg/PoseWithCovariance'](pose=pose, covariance=cov),
        twist=types['geometry_msgs/msg/TwistWithCovariance'](twist=twist, covariance=cov),
    )


def image_msg(ts: Typestore, stamp_ns: int, arr: np.ndarray, encoding: str) -> Any:
    return ts.types['sensor_msgs/msg/Image'](
        header=header(ts, stamp_ns, 'camera'),
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=encoding,
        is_bigendian=False,
        step=arr.strides[0],
        data=np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8),
    )


def recording(ts: Typestore, scans: int = 3) -> list[Message]:
    """The simulator's layout: /points, odom -> base_link on /tf and /odom at the first and last scan only,
    base_link -> velodyne 1 m up on /tf_static."""
    out: list[Message] = [
        (
            '/tf_static',
            'tf2_msgs/msg/TFMessage',
            T0,
            tf_msg(ts, transform(ts, T0, 'base_link', 'velodyne', (0, 0, 1), IDENTITY)),
        )
    ]
    for t, xyz, quat in [(T0, (0.0, 0.0, 0.0), IDENTITY), (STAMPS[-1], (2.0, 4.0, 0.0), YAW_90)]:
        out.append(('/tf', 'tf2_msgs/msg/TFMessage', t, tf_msg(ts, transform(ts, t, 'odom', 'base_link', xyz, quat))))
        out.append(('/odom', 'nav_msgs/msg/Odometry', t, odom_msg(ts, t, xyz, quat)))
    for i, t in enumerate(STAMPS[:scans]):
        out.append(('/points', 'sensor_msgs/msg/PointCloud2', t, cloud_msg(ts, t, cloud_array(i))))
    return out


def write_bag(path: Path, messages: list[Message], storage: str = 'mcap') -> Path:
    """A rosbag2 directory (``mcap``, ``sqlite3``) or a ROS 1 ``.bag`` (``ros1``) holding ``messages``."""
    if storage == 'ros1':
        path = path.with_suffix('.bag')
        writer, ts, serialize = Writer1(path), ROS1, ROS1.serialize_ros1
    else:
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        writer, ts, serialize = Writer(path, version=9, storage_plugin=plugin), ROS2, ROS2.serialize_cdr
    with writer:
        connections: dict[str, Any] = {}
        for topic, msgtype, t, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(connections[topic], t, serialize(msg, msgtype))
    return path


def expected_pose(i: int) -> np.ndarray:
    """velodyne -> odom of scan i: yaw 0 -> 90 degrees, (0, 0) -> (2, 4) over the recording, sensor 1 m up."""
    angle = np.radians(45.0 * i)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    out[:3, 3] = (i, 2 * i, 1)
    return out


def assert_scans_match_recording(scans: bags.ScanSequence, poses: bool = True) -> None:
    assert len(scans) == 3
    np.testing.assert_array_equal(scans.stamps_ns, STAMPS)
    for i, scan in enumerate(scans):
        arr = cloud_array(i)
        assert scan.stamp_ns == STAMPS[i]
        assert scan.points.dtype == np.float32
        assert scan.points.shape == (5, 4)
        np.testing.assert_array_equal(scan.points, np.stack([arr['x'], arr['y'], arr['z'], arr['intensity']], 1))
        assert scan.labels.dtype == np.uint32
        np.testing.assert_array_equal(scan.labels, arr['label'])
        if poses:
            np.testing.assert_allclose(scan.pose, expected_pose(i), atol=1e-9)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3', 'ros1'])
def test_reads_scans_labels_and_tf_poses_from_every_format(tmp_path: Path, storage: str) -> None:
    ts = ROS1 if storage == 'ros1' else ROS2
    bag = write_bag(tmp_path / 'rec', recording(ts), storage)
    scans = read_lidar_scans(bag)
    assert_scans_match_recording(scans)
    assert scans.decoded == 3 + 2 + 2 + 1  # scans, tf, odom, tf_static under 'auto' (tf and odom both read)
    assert scans.cache_dir is None


def test_reads_a_single_storage_file_and_a_list_of_ros1_bags(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    assert_scans_match_recording(read_lidar_scans(bag / 'rec.mcap'))
    messages = recording(ROS1)
    part1 = write_bag(tmp_path / 'part1', messages[:3], 'ros1')
    part2 = write_bag(tmp_path / 'part2', messages[3:], 'ros1')
    assert_scans_match_recording(read_lidar_scans([part1, str(part2)]))


def test_odometry_and_tf_give_the_same_poses(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    from_tf = read_lidar_scans(bag, BagTopics(pose_source='tf'))
    from_odom = read_lidar_scans(bag, BagTopics(pose_source='odom'))
    np.testing.assert_allclose(from_odom.poses, from_tf.poses, atol=1e-12)
    assert_scans_match_recording(from_odom)


def test_auto_falls_back_to_odometry_when_tf_does_not_reach_the_sensor(tmp_path: Path) -> None:
    messages = [m for m in recording(ROS2) if m[0] != '/tf']
    messages.append(
        (
            '/tf',
            'tf2_msgs/msg/TFMessage',
            T0,
            tf_msg(ROS2, transform(ROS2, T0, 'map', 'x', (0, 0, 0), IDENTITY)),
        )
    )
    assert_scans_match_recording(read_lidar_scans(write_bag(tmp_path / 'rec', messages)))


def test_no_pose_source_leaves_poses_empty(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', [m for m in recording(ROS2) if m[0] == '/points'])
    scans = read_lidar_scans(bag)
    assert scans.poses is None
    assert all(scan.pose is None for scan in scans)
    assert_scans_match_recording(scans, poses=False)
    with pytest.raises(TopicNotFoundError, match='has no topic /tf; it has: /points'):
        read_lidar_scans(bag, BagTopics(pose_source='tf'))


def test_scans_outside_the_recorded_poses_have_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    late = STAMPS[-1] + SEC
    messages = [
        *recording(ROS2),
        ('/points', 'sensor_msgs/msg/PointCloud2', late, cloud_msg(ROS2, late, cloud_array(3))),
    ]
    with caplog.at_level(logging.WARNING):
        scans = read_lidar_scans(write_bag(tmp_path / 'rec', messages))
    assert [scan.pose is None for scan in scans] == [False, False, False, True]
    assert np.isnan(scans.poses[3]).all()
    assert "1 of 4 scans in 'velodyne' are outside the poses recorded on /tf" in caplog.text


def test_explicit_tf_without_a_chain_to_the_sensor_raises(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    with pytest.raises(PoseError, match=r"cannot pose the scans of /points in 'world'.*no transform chain"):
        read_lidar_scans(bag, BagTopics(pose_source='tf', base_frame='world'))


def test_a_missing_topic_lists_what_the_bag_has(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    with pytest.raises(TopicNotFoundError, match='has no topic /velodyne_points; it has: ') as info:
        read_lidar_scans(bag, BagTopics(points='/velodyne_points'))
    for listed in [
        '/points (sensor_msgs/msg/PointCloud2, 3)',
        '/tf (tf2_msgs/msg/TFMessage, 2)',
        '/odom (nav_msgs',
    ]:
        assert listed in str(info.value)
    with pytest.raises(TopicTypeError, match=r'/odom in .* is nav_msgs/msg/Odometry, expected sensor_msgs'):
        read_lidar_scans(bag, BagTopics(points='/odom'))


def test_a_missing_field_lists_the_fields_of_the_cloud(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    fields = r'x \(float32\), y \(float32\), z \(float32\), intensity \(float32\), label \(uint32\)'
    with pytest.raises(FieldNotFoundError, match=rf"/points has no field 'semantic'; it has: {fields}"):
        read_lidar_scans(bag, BagTopics(label_field='semantic'))
    arr = np.zeros(3, [('a', '<f4'), ('b', '<f4')])
    bad = write_bag(tmp_path / 'bad', [('/points', 'sensor_msgs/msg/PointCloud2', T0, cloud_msg(ROS2, T0, arr))])
    with pytest.raises(FieldNotFoundError, match=r'/points has no field x, y, z; it has: a \(float32\), b'):
        read_lidar_scans(bad)


def test_unlabelled_reads_and_option_checks(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    assert all(scan.labels is None for scan in read_lidar_scans(bag, BagTopics(label_field=None)))
    with pytest.raises(DataError, match='pose_source must be'):
        BagTopics(pose_source='gps')  # type: ignore[arg-type]
    with pytest.raises(DataError, match='needs label_field'):
        BagTopics(label_topic='/labels', label_field=None)


def test_labels_on_their_own_topic_are_matched_by_stamp(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    messages = [m for m in recording(ROS2) if m[0] != '/points']
    label_dtype = np.dtype([('label', '<u4')])
    for i, t in enumerate(STAMPS):
        arr = cloud_array(i)
        if i == 1:
            arr['x'][2] = np.nan  # dropped, and its label with it
        plain = np.zeros(arr.size, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4')])
        for name in plain.dtype.names:
            plain[name] = arr[name]
        messages.append(('/points', 'sensor_msgs/msg/PointCloud2', t, cloud_msg(ROS2, t, plain)))
        if i < 2:  # the last scan has no labels
            labels = np.zeros(arr.size, label_dtype)
            labels['label'] = arr['label']
            messages.append(('/labels', 'sensor_msgs/msg/PointCloud2', t + 3, cloud_msg(ROS2, t + 3, labels)))
    bag = write_bag(tmp_path / 'rec', messages)
    with caplog.at_level(logging.WARNING):
        scans = read_lidar_scans(bag, BagTopics(label_topic='/labels', label_tolerance_ns=5))
    assert '1 of 3 scans have no labels on /labels' in caplog.text
    np.testing.assert_array_equal(scans[0].labels, cloud_array(0)['label'])
    keep = [0, 1, 3, 4]
    np.testing.assert_array_equal(scans[1].labels, cloud_array(1)['label'][keep])
    np.testing.assert_array_equal(scans[1].points[:, 0], cloud_array(1)['x'][keep])
    assert scans[2].labels is None
    exact = read_lidar_scans(bag, BagTopics(label_topic='/labels'))
    assert all(scan.labels is None for scan in exact)


def test_organised_clouds_are_flattened_and_nan_points_dropped_with_their_labels(tmp_path: Path) -> None:
    arr = cloud_array(0, 6)
    arr['y'][4] = np.nan
    msg = cloud_msg(ROS2, T0, arr)
    msg.height, msg.width, msg.row_step = 2, 3, 3 * arr.dtype.itemsize
    scans = read_lidar_scans(write_bag(tmp_path / 'rec', [('/points', 'sensor_msgs/msg/PointCloud2', T0, msg)]))
    keep = [0, 1, 2, 3, 5]
    np.testing.assert_array_equal(scans[0].points[:, 0], arr['x'][keep])
    np.testing.assert_array_equal(scans[0].labels, arr['label'][keep])


def test_labels_with_another_point_count_raise(tmp_path: Path) -> None:
    labels = np.zeros(4, [('label', '<u4')])
    messages = [
        ('/points', 'sensor_msgs/msg/PointCloud2', T0, cloud_msg(ROS2, T0, cloud_array(0))),
        ('/labels', 'sensor_msgs/msg/PointCloud2', T0, cloud_msg(ROS2, T0, labels)),
    ]
    with pytest.raises(LabelMismatchError, match='has 4 labels for 5 points of /points'):
        read_lidar_scans(write_bag(tmp_path / 'rec', messages), BagTopics(label_topic='/labels'))


def test_sequence_indexing_and_slicing(tmp_path: Path) -> None:
    scans = read_lidar_scans(write_bag(tmp_path / 'rec', recording(ROS2)))
    assert scans[-1].stamp_ns == STAMPS[2]
    tail = scans[1:]
    assert isinstance(tail, bags.ScanSequence)
    assert [s.stamp_ns for s in tail] == STAMPS[1:]
    np.testing.assert_allclose(tail[0].pose, expected_pose(1), atol=1e-9)
    with pytest.raises(IndexError):
        scans[3]
    with pytest.raises(ValueError, match='read-only'):
        scans[0].points[0, 0] = 1.0


def big_recording(scans: int, points: int = 20_000) -> list[Message]:
    """Scans of 400 kB each, so rosbags' 1 MiB chunks hold about three."""
    out = []
    for i in range(scans):
        t = T0 + i * SEC // 10
        out.append(('/points', 'sensor_msgs/msg/PointCloud2', t, cloud_msg(ROS2, t, cloud_array(i, points))))
    return out


def mcap_records(path: Path) -> list[tuple[int, int, int]]:
    """(offset, opcode, length) of the top-level MCAP records."""
    data = path.read_bytes()
    out, pos = [], 8
    while pos + 9 <= len(data):
        opcode, length = data[pos], struct.unpack_from('<Q', data, pos + 1)[0]
        out.append((pos, opcode, length))
        pos += 9 + length
    return out


def test_a_truncated_mcap_reads_its_complete_chunks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bag = write_bag(tmp_path / 'rec', big_recording(8))
    mcap = bag / 'rec.mcap'
    size = mcap.stat().st_size
    chunks = [(pos, length) for pos, opcode, length in mcap_records(mcap) if opcode == 0x06]
    assert len(chunks) == 3
    cut = chunks[1][0] + 9 + chunks[1][1] // 2  # the middle of the second chunk
    os.truncate(mcap, cut)
    with caplog.at_level(logging.WARNING):
        scans = read_lidar_scans(bag, BagTopics(label_field=None))
    complete_end = chunks[1][0]  # the first chunk and its message indexes are complete
    assert 0 < len(scans) < 8
    assert scans.stamps_ns.tolist() == [T0 + i * SEC // 10 for i in range(len(scans))]
    np.testing.assert_array_equal(scans[-1].points[:, 0], cloud_array(len(scans) - 1, 20_000)['x'])
    assert 'has truncated files' in caplog.text
    assert f'skipping the last {cut - complete_end} of {cut}' in caplog.text
    assert size > cut
    assert bag_summary(bag)['/points'] == ('sensor_msgs/msg/PointCloud2', len(scans))


def test_a_damaged_chunk_mid_stream_keeps_what_came_before(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bag = write_bag(tmp_path / 'rec', big_recording(8))
    mcap = bag / 'rec.mcap'
    chunk = [pos for pos, opcode, _ in mcap_records(mcap) if opcode == 0x06][1]
    with mcap.open('r+b') as stream:  # the first record inside the second chunk claims to be 2**60 bytes long
        stream.seek(chunk + 9 + 8 + 8 + 8 + 4 + 4 + 8 + 1)
        stream.write(struct.pack('<Q', 2**60))
    with caplog.at_level(logging.WARNING):
        scans = read_lidar_scans(bag, BagTopics(label_field=None))
    assert 0 < len(scans) < 8
    assert f'read {len(scans)} of 8 messages, skipped the rest' in caplog.text


def test_a_directory_without_metadata_is_read_from_its_storage_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    (bag / 'metadata.yaml').unlink()
    with caplog.at_level(logging.WARNING):
        assert_scans_match_recording(read_lidar_scans(bag))
    assert 'has no metadata.yaml' in caplog.text


def test_unreadable_bags_raise_bag_error(tmp_path: Path) -> None:
    garbage = tmp_path / 'garbage.mcap'
    garbage.write_bytes(b'not a bag at all' * 10)
    with pytest.raises(BagError, match=r'cannot read the bag .*garbage\.mcap: File magic is invalid'):
        read_lidar_scans(garbage)
    with pytest.raises(BagError, match='does not exist'):
        read_lidar_scans(tmp_path / 'missing')
    ros1 = write_bag(tmp_path / 'rec', recording(ROS1), 'ros1')
    os.truncate(ros1, ros1.stat().st_size // 2)
    with pytest.raises(BagError, match=r'cannot read the bag .*rec.bag'):
        read_lidar_scans(ros1)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(BagError, match='not a rosbag2 recording'):
        bag_summary(empty)


def test_bag_summary_lists_topics_types_and_counts(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2), 'sqlite3')
    assert bag_summary(bag) == {
        '/odom': ('nav_msgs/msg/Odometry', 2),
        '/points': ('sensor_msgs/msg/PointCloud2', 3),
        '/tf': ('tf2_msgs/msg/TFMessage', 2),
        '/tf_static': ('tf2_msgs/msg/TFMessage', 1),
    }


def test_the_cache_serves_a_second_read_without_opening_the_bag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    cache = tmp_path / 'cache'
    first = read_lidar_scans(bag, cache_dir=cache)
    assert first.decoded == 8
    assert (first.cache_dir / 'index.json').exists()

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError('the bag was opened')

    monkeypatch.setattr(bags, 'AnyReader', no_reading)
    second = read_lidar_scans(bag, cache_dir=cache)
    assert second.decoded == 0
    assert second.cache_dir == first.cache_dir
    assert isinstance(second[0].points, np.memmap)
    assert_scans_match_recording(second)
    with pytest.raises(AssertionError, match='the bag was opened'):  # other options: another entry
        read_lidar_scans(bag, BagTopics(label_field=None), cache_dir=cache)


def test_the_cache_key_is_the_content_and_an_interrupted_entry_is_rebuilt(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / 'rec', recording(ROS2))
    cache = tmp_path / 'cache'
    first = read_lidar_scans(bag, cache_dir=cache)
    moved = tmp_path / 'moved'
    shutil.copytree(bag, moved)
    assert read_lidar_scans(moved, cache_dir=cache).decoded == 0
    (first.cache_dir / 'index.json').unlink()
    rebuilt = read_lidar_scans(bag, cache_dir=cache)
    assert rebuilt.decoded == 8
    assert_scans_match_recording(rebuilt)
    other = write_bag(tmp_path / 'other', recording(ROS2, scans=2))
    assert read_lidar_scans(other, cache_dir=cache).cache_dir != first.cache_dir


def camera_recording(ts: Typestore) -> list[Message]:
    rng = np.random.default_rng(1)
    out: list[Message] = []
    for i, t in enumerate(STAMPS):
        rgb = rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)
        out.append(('/camera/image_raw', 'sensor_msgs/msg/Image', t, image_msg(ts, t, rgb, 'rgb8')))
        ids = np.full((4, 6), 10 * (i + 1), np.uint16)
        label_t = t + 1_000_000 if i == 2 else t  # the last label image is 1 ms late
        out.append(('/camera/labels', 'sensor_msgs/msg/Image', label_t, image_msg(ts, label_t, ids, 'mono16')))
    return out


@pytest.mark.parametrize('storage', ['mcap', 'ros1'])
def test_camera_frames_and_their_label_images(tmp_path: Path, storage: str) -> None:
    ts = ROS1 if storage == 'ros1' else ROS2
    messages = camera_recording(ts)
    bag = write_bag(tmp_path / 'rec', messages, storage)
    frames = read_camera_frames(bag)
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        sent = messages[2 * i][3]
        assert frame.stamp_ns == STAMPS[i]
        assert frame.image.dtype == np.uint8
        np.testing.assert_array_equal(frame.image, np.asarray(sent.data).reshape(4, 6, 3))
    np.testing.assert_array_equal(frames[1].labels, np.full((4, 6), 20, np.uint16))
    assert frames[1].labels.dtype == np.uint16
    assert frames[2].labels is None
    tolerant = read_camera_frames(bag, BagTopics(label_tolerance_ns=2_000_000), cache_dir=tmp_path / 'cache')
    np.testing.assert_array_equal(tolerant[2].labels, np.full((4, 6), 30, np.uint16))
    assert all(frame.labels is None for frame in read_camera_frames(bag, BagTopics(image_labels=None)))


@pytest.mark.parametrize('storage', ['mcap', 'ros1'])
def test_compressed_frames_read_as_their_pixels_and_a_corrupt_one_is_named(tmp_path: Path, storage: str) -> None:
    ts = ROS1 if storage == 'ros1' else ROS2
    topic, kind = '/camera/image_raw/compressed', 'sensor_msgs/msg/CompressedImage'
    messages, sent = [], []
    for i, (message_topic, msgtype, t, msg) in enumerate(camera_recording(ts)):
        if message_topic != '/camera/image_raw':
            messages.append((message_topic, msgtype, t, msg))
            continue
        sent.append(np.asarray(msg.data).reshape(4, 6, 3))
        fmt, data = rgb8_to_compressed(sent[-1], 'png')  # lossless: the pixels must come back exactly
        if i == 4:
            fmt, data = 'jpeg', b'\xff\xd8 cut short'
        compressed = ts.types[kind](header=header(ts, t, 'camera'), format=fmt, data=np.frombuffer(data, np.uint8))
        messages.append((topic, kind, t, compressed))
    topics = BagTopics(image=topic)
    frames = read_camera_frames(write_bag(tmp_path / 'rec', messages[:4], storage), topics)
    assert len(frames) == 2
    for frame, image in zip(frames, sent, strict=False):
        np.testing.assert_array_equal(frame.image, image)
    np.testing.assert_array_equal(frames[1].labels, np.full((4, 6), 20, np.uint16))
    with pytest.raises(DataError, match=rf'{topic} at {STAMPS[2]} ns: compressed image \(jpeg\) cannot be decoded'):
        read_camera_frames(write_bag(tmp_path / 'bad', messages, storage), topics)


def test_camera_label_images_must_fit_their_frame(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    messages: list[Message] = [
        ('/camera/image_raw', 'sensor_msgs/msg/Image', T0, image_msg(ROS2, T0, rgb, 'rgb8')),
        (
            '/camera/labels',
            'sensor_msgs/msg/Image',
            T0,
            image_msg(ROS2, T0, np.zeros((4, 5), np.uint16), 'mono16'),
        ),
    ]
    with pytest.raises(LabelMismatchError, match=r'/camera/labels at .* is \(4, 5\), its frame \[4, 6\]'):
        read_camera_frames(write_bag(tmp_path / 'a', messages))
    messages[1] = ('/camera/labels', 'sensor_msgs/msg/Image', T0, image_msg(ROS2, T0, rgb, 'rgb8'))
    with pytest.raises(LabelMismatchError, match='label images are mono8 or mono16'):
        read_camera_frames(write_bag(tmp_path / 'b', messages))
    messages[1] = ('/camera/labels', 'sensor_msgs/msg/Image', T0, image_msg(ROS2, T0, rgb, 'nv21'))
    with pytest.raises(DataError, match=r"/camera/labels at .* ns: unsupported image encoding 'nv21'"):
        read_camera_frames(write_bag(tmp_path / 'd', messages))
    with pytest.raises(TopicNotFoundError, match=r'no topic /camera/image_raw; it has: /points'):
        read_camera_frames(write_bag(tmp_path / 'c', recording(ROS2)[-1:]))
