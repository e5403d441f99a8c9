"""The simulator: its bags read back through the training readers, determinism, instances, class coverage, CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from css_perception.core.ontology import Ontology
from css_training.data.bags import BagTopics, bag_summary, read_camera_frames, read_lidar_scans
from css_training.data.records import split_label
from css_training.sim.cli import main
from css_training.sim.config import CameraConfig, LidarConfig, SceneConfig, SimConfig, SimConfigError
from css_training.sim.record import Simulation, generate_split, simulate
from css_training.sim.sensors import lidar_mount

SMALL = SimConfig(
    seed=1,
    scans=6,
    lidar=LidarConfig(beams=16, azimuth_steps=360),
    camera=CameraConfig(width=64, height=48, fx=44.0, fy=44.0, rate_hz=5.0),
    scene=SceneConfig(density=3.0),
)


def raw_messages(bag: Path) -> dict[str, list[bytes]]:
    with AnyReader([bag]) as reader:
        out: dict[str, list[bytes]] = {}
        for connection, _, raw in reader.messages():
            out.setdefault(connection.topic, []).append(bytes(raw))
        return out


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_reads_back_to_the_simulated_arrays(tmp_path: Path, storage: str) -> None:
    config = replace(SMALL, storage=storage)
    report = simulate(config, tmp_path / 'seq', progress=False)
    sim = Simulation(config)
    scans = read_lidar_scans(tmp_path / 'seq')
    assert len(scans) == config.scans
    for i, scan in enumerate(scans):
        cloud = sim.scan(i)
        expected = np.stack([cloud['x'], cloud['y'], cloud['z'], cloud['intensity']], axis=1)
        np.testing.assert_array_equal(scan.points, expected)
        np.testing.assert_array_equal(scan.labels, cloud['label'])
        np.testing.assert_allclose(scan.pose, sim.ego(sim.scan_time(i)) @ lidar_mount(config.lidar), atol=1e-9)
    frames = read_camera_frames(tmp_path / 'seq')
    assert len(frames) == report.frames == 3  # 0.6 s at 5 Hz
    for k, frame in enumerate(frames):
        image, labels = sim.frame(k)
        np.testing.assert_array_equal(frame.image, image)
        np.testing.assert_array_equal(frame.labels, labels)
    summary = bag_summary(tmp_path / 'seq')
    assert summary['/camera/camera_info'] == ('sensor_msgs/msg/CameraInfo', 3)
    assert summary['/tf_static'][1] == 1
    assert summary['/odom'] == ('nav_msgs/msg/Odometry', config.scans)


def test_compressed_frames_are_recorded_as_robots_record_them(tmp_path: Path) -> None:
    config = tmp_path / 'sim.yaml'
    config.write_text(
        'seed: 1\nlidar: {beams: 16, azimuth_steps: 360}\ncamera: {width: 64, height: 48, fx: 44, fy: 44}\n'
    )
    assert main(['record', str(tmp_path / 'png'), '--config', str(config), '--scans', '6', '--compressed', 'png']) == 0
    summary = bag_summary(tmp_path / 'png')
    assert summary['/camera/image_raw/compressed'] == ('sensor_msgs/msg/CompressedImage', 3)
    assert '/camera/image_raw' not in summary
    sim = Simulation(replace(SimConfig.load(config), scans=6))
    frames = read_camera_frames(tmp_path / 'png', BagTopics(image='/camera/image_raw/compressed'))
    assert len(frames) == 3
    for k, frame in enumerate(frames):  # png is lossless: the rendered pixels, and labels beside them
        image, labels = sim.frame(k)
        np.testing.assert_array_equal(frame.image, image)
        np.testing.assert_array_equal(frame.labels, labels)
    jpeg = simulate(replace(SMALL, camera=replace(SMALL.camera, compression='jpeg')), tmp_path / 'jpeg', False)
    frames = read_camera_frames(jpeg.path, BagTopics(image='/camera/image_raw/compressed'))
    first, _ = Simulation(SMALL).frame(0)
    assert np.abs(frames[0].image.astype(int) - first).mean() < 8
    with pytest.raises(SimConfigError, match="camera compression must be 'none', 'jpeg' or 'png', not 'gif'"):
        replace(SMALL, camera=replace(SMALL.camera, compression='gif'))


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    simulate(SMALL, tmp_path / 'a', progress=False)
    simulate(SMALL, tmp_path / 'b', progress=False)
    simulate(replace(SMALL, seed=2), tmp_path / 'c', progress=False)
    a, b, c = (raw_messages(tmp_path / name) for name in 'abc')
    assert a == b
    assert a['/points'] != c['/points']
    assert a['/camera/image_raw'] != c['/camera/image_raw']


def test_moving_objects_keep_their_instance_id(tmp_path: Path) -> None:
    config = replace(SMALL, scans=20, camera=replace(SMALL.camera, enabled=False))
    simulate(config, tmp_path / 'seq', progress=False)
    tracks: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for i, scan in enumerate(read_lidar_scans(tmp_path / 'seq')):
        semantic, instance = split_label(scan.labels)
        odom = scan.points[:, :3] @ scan.pose[:3, :3].T + scan.pose[:3, 3]
        for ident in np.unique(instance[instance > 0]):
            mask = instance == ident
            classes = np.unique(semantic[mask])
            assert classes.size == 1, f'instance {ident} spans classes {classes}'
            tracks.setdefault(int(ident), []).append((i, int(classes[0]), odom[mask].mean(axis=0)))
    ontology = Ontology.load()
    thing_ids = {
        ontology.by_name(n).id for n in ('car', 'truck', 'person', 'bicycle', 'bicyclist', 'motorcycle', 'motorcyclist')
    }
    assert {cls for track in tracks.values() for _, cls, _ in track} <= thing_ids
    # One instance keeps its class over time; moved objects (> 3 m in the odom frame) keep their id.
    moved = [t for t in tracks.values() if len(t) >= 5 and np.linalg.norm(t[-1][2] - t[0][2]) > 3.0]
    assert moved, 'no moving object was seen over 5 or more scans'
    for track in moved:
        assert len({cls for _, cls, _ in track}) == 1


def test_histogram_covers_every_configured_class(tmp_path: Path) -> None:
    config = SimConfig(
        seed=3,
        scans=20,
        lidar=LidarConfig(beams=32, azimuth_steps=512),
        camera=CameraConfig(width=96, height=64),
        scene=SceneConfig(density=3.0),
    )
    report = simulate(config, tmp_path / 'seq', progress=False)
    ontology = Ontology.load()
    missing = [n for n in config.scene.classes if report.histogram.points[ontology.by_name(n).id] == 0]
    assert missing == []
    table = report.histogram.table(ontology)
    assert all(name in table for name in config.scene.classes)
    # Rare classes stay rare: persons get far fewer points than the road.
    assert report.histogram.points[30] * 20 < report.histogram.points[40]


def test_a_class_subset_leaves_the_others_out(tmp_path: Path) -> None:
    config = replace(SMALL, scene=SceneConfig(classes=('road', 'car', 'building')))
    report = simulate(config, tmp_path / 'seq', progress=False)
    seen = set(np.flatnonzero(report.histogram.points)) | set(np.flatnonzero(report.histogram.pixels))
    sky = Ontology.load().by_name('sky').id
    assert seen <= {0, 10, 40, 50, sky}
    assert {10, 40, 50} <= seen
    # Pixels that see nothing are sky; a LiDAR point never is.
    assert report.histogram.points[sky] == 0 < report.histogram.pixels[sky]


def test_split_is_reused_when_settings_match(tmp_path: Path) -> None:
    config = replace(SMALL, scans=2, camera=replace(SMALL.camera, enabled=False))
    paths = generate_split(tmp_path, config, {'train': 3, 'test': 2}, progress=False)
    assert paths == {'train': [tmp_path / 'train'], 'test': [tmp_path / 'test']}
    (train,), (test,) = paths['train'], paths['test']
    stamp = (train / 'metadata.yaml').stat().st_mtime_ns
    assert len(read_lidar_scans(train)) == 3
    assert len(read_lidar_scans(test)) == 2
    assert raw_messages(train)['/points'][0] != raw_messages(test)['/points'][0]
    again = generate_split(tmp_path, config, {'train': 3, 'test': 2}, progress=False)
    assert again == paths
    assert (train / 'metadata.yaml').stat().st_mtime_ns == stamp
    generate_split(tmp_path, config, {'train': 4, 'test': 2}, progress=False)
    assert len(read_lidar_scans(train)) == 4


def test_a_split_part_of_several_sequences_draws_each_from_its_own_seed(tmp_path: Path) -> None:
    config = replace(SMALL, camera=replace(SMALL.camera, enabled=False))
    single = generate_split(tmp_path / 'one', config, {'train': 2, 'test': 2}, progress=False)
    paths = generate_split(tmp_path / 'many', config, {'train': 2, 'test': [2, 3]}, progress=False)
    assert paths['test'] == [tmp_path / 'many' / 'test' / '00', tmp_path / 'many' / 'test' / '01']
    assert [len(read_lidar_scans(p)) for p in paths['test']] == [2, 3]
    first, second = (raw_messages(p)['/points'] for p in paths['test'])
    assert first == raw_messages(single['test'][0])['/points']  # sequence 0 keeps the part's seed
    assert first[0] != second[0]
    assert raw_messages(paths['train'][0]) == raw_messages(single['train'][0])
    for bad in ({'test': []}, {'test': [2, 0]}, {'test': 'many'}, {'test': True}):
        with pytest.raises(SimConfigError, match='scan count'):
            generate_split(tmp_path / 'bad', config, bad, progress=False)


def test_cli_records_and_refuses_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / 'sim.yaml'
    config.write_text('lidar: {beams: 8, azimuth_steps: 90}\ncamera: {enabled: false}\n')
    assert main(['record', str(tmp_path / 'seq'), '--config', str(config), '--scans', '3', '--storage', 'sqlite3']) == 0
    assert bag_summary(tmp_path / 'seq')['/points'] == ('sensor_msgs/msg/PointCloud2', 3)
    assert '/camera/image_raw' not in bag_summary(tmp_path / 'seq')
    assert main(['record', str(tmp_path / 'seq'), '--scans', '1', '--quiet']) == 2
    assert 'cannot write' in capsys.readouterr().err
    config.write_text('lidar: {beam: 8}\n')
    assert main(['record', str(tmp_path / 'other'), '--config', str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown LidarConfig keys ['beam']" in err
    assert main(['record', str(tmp_path / 'other'), '--scans', '0']) == 2
    assert 'scans must be >= 1' in capsys.readouterr().err
    assert main(['record', str(tmp_path / 'other'), '--seed', '-4']) == 2
    assert 'seed must be in [0, 2**32), not -4' in capsys.readouterr().err
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    assert main(['record', str(blocker / 'seq'), '--scans', '1', '--quiet', '--no-camera']) == 2
    assert f'cannot write {blocker / "seq"}' in capsys.readouterr().err
    assert main(['split', str(blocker / 'split'), '--train', '1', '--val', '1', '--test', '1', '--quiet']) == 2
    assert f'cannot write the split under {blocker / "split"}' in capsys.readouterr().err
