"""SemanticKITTI reader and converter on a small sequence folder written by the test."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from css_training.data.bags import BagTopics, bag_summary, read_lidar_scans
from css_training.data.cli import main
from css_training.data.errors import BagError, KittiError
from css_training.data.kitti import kitti_to_bag, read_semantic_kitti

# KITTI's velodyne -> camera axes (camera z = velodyne x, x = -y, y = -z) and a lever arm.
TR = np.array([[0.0, -1.0, 0.0, 0.1], [0.0, 0.0, -1.0, -0.2], [1.0, 0.0, 0.0, -0.3], [0.0, 0.0, 0.0, 1.0]])
TIMES = [0.0, 0.103, 0.207]
# Raw SemanticKITTI ids and what config/classes.yaml maps them to: moving-car -> car, outlier and an id
# missing from the map -> 0, road and parking kept.
RAW = np.array([252, 40, 1, 7, 44, 10], np.uint32)
MAPPED = np.array([10, 40, 0, 0, 44, 10], np.uint32)


def velo_pose(i: int) -> np.ndarray:
    """Sensor pose of scan i: yaw 10 degrees per scan, moving 1 m forward and 0.5 m left per scan."""
    c, s = np.cos(np.radians(10 * i)), np.sin(np.radians(10 * i))
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:3, 3] = (i, 0.5 * i, 0.0)
    return out


def points(i: int) -> np.ndarray:
    n = 4 + i  # scans of 4, 5 and 6 points
    out = np.zeros((n, 4), np.float32)
    out[:, 0] = np.arange(n) + 0.25
    out[:, 1] = -i
    out[:, 2] = 0.1 * np.arange(n)
    out[:, 3] = np.linspace(0, 1, n)
    return out


def raw_labels(i: int) -> np.ndarray:
    n = 4 + i
    return RAW[:n] | (np.arange(n, dtype=np.uint32) + 100 * i) << 16


def write_sequence(folder: Path, labels: bool = True, poses: bool = True, times: bool = True) -> Path:
    (folder / 'velodyne').mkdir(parents=True)
    if labels:
        (folder / 'labels').mkdir()
    for i in range(3):
        points(i).tofile(folder / 'velodyne' / f'{i:06d}.bin')
        if labels:
            raw_labels(i).tofile(folder / 'labels' / f'{i:06d}.label')
    if poses:
        camera = [TR @ velo_pose(i) @ np.linalg.inv(TR) for i in range(3)]
        np.savetxt(folder / 'poses.txt', np.array([p[:3].reshape(-1) for p in camera]), fmt='%.17g')
        projection = ' '.join(['0'] * 12)
        tr = ' '.join(f'{v:.17g}' for v in TR[:3].reshape(-1))
        (folder / 'calib.txt').write_text(''.join(f'P{k}: {projection}\n' for k in range(4)) + f'Tr: {tr}\n')
    if times:
        (folder / 'times.txt').write_text(''.join(f'{t:e}\n' for t in TIMES))
    return folder


def expected_labels(i: int) -> np.ndarray:
    n = 4 + i
    return MAPPED[:n] | (np.arange(n, dtype=np.uint32) + 100 * i) << 16


def test_reads_points_mapped_labels_stamps_and_sensor_poses(tmp_path: Path) -> None:
    scans = read_semantic_kitti(write_sequence(tmp_path / '08'))
    assert len(scans) == 3
    np.testing.assert_array_equal(scans.stamps_ns, [0, 103_000_000, 207_000_000])
    for i, scan in enumerate(scans):
        assert scan.stamp_ns == round(TIMES[i] * 1e9)
        assert scan.points.dtype == np.float32
        np.testing.assert_array_equal(scan.points, points(i))
        assert scan.labels.dtype == np.uint32
        np.testing.assert_array_equal(scan.labels, expected_labels(i))
        np.testing.assert_allclose(scan.pose, velo_pose(i), atol=1e-12)
    tail = scans[1:]
    assert len(tail) == 2
    np.testing.assert_array_equal(tail[-1].points, points(2))


def test_optional_files_and_defaults(tmp_path: Path) -> None:
    scans = read_semantic_kitti(write_sequence(tmp_path / 'seq', labels=False, poses=False, times=False))
    np.testing.assert_array_equal(scans.stamps_ns, [0, 100_000_000, 200_000_000])
    assert scans.poses is None
    assert all(scan.labels is None and scan.pose is None for scan in scans)


def test_a_label_map_file_replaces_the_ontology_map(tmp_path: Path) -> None:
    folder = write_sequence(tmp_path / 'seq')
    custom = tmp_path / 'map.yaml'
    custom.write_text('semantic_kitti_map: {252: 20, 40: 48}\n')
    scans = read_semantic_kitti(folder, label_map_yaml=custom)
    np.testing.assert_array_equal(scans[0].labels & 0xFFFF, [20, 48, 0, 0])
    training_ids = tmp_path / 'semantic-kitti.yaml'
    training_ids.write_text('learning_map: {10: 1, 40: 9}\n')
    with pytest.raises(KittiError, match=r'sends raw ids to \[1, 9\], which are not ontology ids'):
        read_semantic_kitti(folder, label_map_yaml=training_ids)
    broken = tmp_path / 'broken.yaml'
    broken.write_text('classes: []\n')
    with pytest.raises(KittiError, match='expected a semantic_kitti_map or learning_map'):
        read_semantic_kitti(folder, label_map_yaml=broken)


def test_malformed_folders_raise_kitti_error(tmp_path: Path) -> None:
    with pytest.raises(KittiError, match=r'has no velodyne/\*\.bin scans'):
        read_semantic_kitti(tmp_path)
    folder = write_sequence(tmp_path / 'labels')
    raw_labels(0)[:3].tofile(folder / 'labels' / '000000.label')
    with pytest.raises(KittiError, match=r'000000\.label holds 3 labels for the 4 points of 000000\.bin'):
        read_semantic_kitti(folder)
    folder = write_sequence(tmp_path / 'poses')
    (folder / 'calib.txt').unlink()
    with pytest.raises(KittiError, match=r'calib\.txt is needed with poses\.txt'):
        read_semantic_kitti(folder)
    (folder / 'calib.txt').write_text('P0: 1 2 3\n')
    with pytest.raises(KittiError, match='has no Tr: line of 12 numbers'):
        read_semantic_kitti(folder)
    (folder / 'poses.txt').write_text('1 0 0 0 0 1 0 0 0 0 1 0\n')
    with pytest.raises(KittiError, match='has 1 poses for 3 scans'):
        read_semantic_kitti(folder)
    (folder / 'times.txt').write_text('0.0\n0.1\n')
    with pytest.raises(KittiError, match='has 2 times for 3 scans'):
        read_semantic_kitti(folder)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_the_converted_bag_reads_back_as_the_folder(tmp_path: Path, storage: str) -> None:
    folder = write_sequence(tmp_path / '08')
    bag = kitti_to_bag(folder, tmp_path / 'bag', storage=storage)
    assert bag_summary(bag) == {
        '/points': ('sensor_msgs/msg/PointCloud2', 3),
        '/tf': ('tf2_msgs/msg/TFMessage', 3),
        '/tf_static': ('tf2_msgs/msg/TFMessage', 1),
        '/odom': ('nav_msgs/msg/Odometry', 3),
    }
    direct = read_semantic_kitti(folder)
    for pose_source in ('tf', 'odom'):
        from_bag = read_lidar_scans(bag, BagTopics(pose_source=pose_source))
        assert len(from_bag) == len(direct)
        np.testing.assert_array_equal(from_bag.stamps_ns, direct.stamps_ns)
        for read, expected in zip(from_bag, direct, strict=True):
            assert read.stamp_ns == expected.stamp_ns
            np.testing.assert_array_equal(read.points, expected.points)
            np.testing.assert_array_equal(read.labels, expected.labels)
            np.testing.assert_allclose(read.pose, expected.pose, atol=1e-9)


def test_a_folder_without_labels_or_poses_converts_to_an_unlabelled_unposed_bag(tmp_path: Path) -> None:
    folder = write_sequence(tmp_path / '11', labels=False, poses=False)
    bag = kitti_to_bag(folder, tmp_path / 'bag')
    assert set(bag_summary(bag)) == {'/points'}
    scans = read_lidar_scans(bag, BagTopics(label_field=None))
    np.testing.assert_array_equal(scans[2].points, points(2))
    assert scans.poses is None
    with pytest.raises(BagError, match='exists already'):
        kitti_to_bag(folder, bag)
    with pytest.raises(BagError, match="storage must be one of \\['mcap', 'sqlite3'\\], not 'db3'"):
        kitti_to_bag(folder, tmp_path / 'other', storage='db3')  # type: ignore[arg-type]


def test_cli_converts_and_reports_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_sequence(tmp_path / '08')
    assert main(['kitti-to-bag', str(folder), str(tmp_path / 'bag'), '--storage', 'sqlite3']) == 0
    assert len(read_lidar_scans(tmp_path / 'bag')) == 3
    with caplog.at_level(logging.ERROR):
        assert main(['kitti-to-bag', str(tmp_path / 'nothing'), str(tmp_path / 'bag2')]) == 1
    assert 'has no velodyne/*.bin scans' in caplog.text
    assert not (tmp_path / 'bag2').exists()
