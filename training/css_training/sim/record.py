"""Simulated sequences: sensor samples on their own clocks, written as a rosbag2 recording.

Topics: ``/points`` (x, y, z, intensity float32, label uint32 = ontology id | instance << 16, ring uint16) in
``velodyne``, ``/camera/image_raw`` (rgb8; or ``/camera/image_raw/compressed``, jpeg or png, with
``camera.compression``), ``/camera/labels`` (mono16 ontology ids) and ``/camera/camera_info``
in ``camera_optical_frame``, ``/tf`` (odom -> base_link at every scan), ``/tf_static`` (base_link -> velodyne,
base_link -> camera_link -> camera_optical_frame) and ``/odom``. Every sample draws its noise from a generator
seeded by (seed, sensor, index), so a sequence is the same bytes for the same config.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from css_perception.core.ontology import Ontology
from css_training.data.errors import BagError
from css_training.data.messages import (
    camera_info,
    cloud_message,
    compressed_image_message,
    image_message,
    odometry,
    tf_message,
)
from css_training.sim.config import SimConfig, SimConfigError
from css_training.sim.sensors import (
    OPTICAL_FROM_BODY,
    camera_intrinsics,
    camera_mount,
    ego_pose,
    lidar_mount,
    render_camera,
    scan_lidar,
)
from css_training.sim.world import World

__all__ = ['START_NS', 'Histogram', 'SimReport', 'Simulation', 'generate_split', 'simulate']

START_NS = 1_700_000_000 * 10**9
_STORAGE = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_SPLIT_FILE = 'split.yaml'


class Simulation:
    """One sequence: a street long enough for the drive, and its sensor samples by index."""

    def __init__(self, config: SimConfig, ontology: Ontology | None = None) -> None:
        self.config = config
        self.duration_s = config.scans / config.lidar.rate_hz
        self.world = World(config.scene, config.scene.ego_speed * self.duration_s + 30.0, config.seed, ontology)
        self._lidar_mount = lidar_mount(config.lidar)
        self._camera_optical = camera_mount(config.camera) @ OPTICAL_FROM_BODY

    def scan_time(self, i: int) -> float:
        return i / self.config.lidar.rate_hz

    def frame_times(self) -> np.ndarray:
        if not self.config.camera.enabled:
            return np.zeros(0)
        return np.arange(0.0, self.duration_s - 1e-9, 1.0 / self.config.camera.rate_hz)

    def ego(self, time_s: float) -> np.ndarray:
        return ego_pose(time_s, self.config.scene.ego_speed)

    def scan(self, i: int) -> np.ndarray:
        """Scan ``i`` as a structured array in :data:`css_training.sim.sensors.CLOUD_DTYPE`."""
        t = self.scan_time(i)
        rng = np.random.default_rng([self.config.seed, 1, i])
        return scan_lidar(self.world, self.config.lidar, self.ego(t) @ self._lidar_mount, t, rng)

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera frame ``k``: (rgb8 image, mono16 labels)."""
        t = float(self.frame_times()[k])
        rng = np.random.default_rng([self.config.seed, 2, k])
        return render_camera(self.world, self.config.camera, self.ego(t) @ self._camera_optical, t, rng)


@dataclass
class Histogram:
    """Labelled LiDAR points and camera pixels per ontology id."""

    points: np.ndarray
    pixels: np.ndarray

    @classmethod
    def empty(cls) -> Histogram:
        return cls(np.zeros(65536, np.int64), np.zeros(65536, np.int64))

    def table(self, ontology: Ontology) -> str:
        lines = [f'{"class":<14}{"points":>12}{"%":>8}{"pixels":>12}{"%":>8}']
        total_p, total_c = max(self.points.sum(), 1), max(self.pixels.sum(), 1)
        for info in ontology.classes:
            p, c = int(self.points[info.id]), int(self.pixels[info.id])
            if p or c:
                lines.append(f'{info.name:<14}{p:>12}{100 * p / total_p:>8.3f}{c:>12}{100 * c / total_c:>8.3f}')
        return '\n'.join(lines)


@dataclass(frozen=True)
class SimReport:
    path: Path
    scans: int
    frames: int
    seconds: float
    histogram: Histogram


def _events(sim: Simulation) -> Iterator[tuple[float, str, int]]:
    """(time, sensor, index) in time order; a camera frame at a scan's time comes after the scan."""
    scans = [(sim.scan_time(i), 'lidar', i) for i in range(sim.config.scans)]
    frames = [(float(t), 'camera', k) for k, t in enumerate(sim.frame_times())]
    yield from sorted(scans + frames)


def simulate(config: SimConfig, out: Path, progress: bool = True, ontology: Ontology | None = None) -> SimReport:
    """Writes one sequence to the rosbag2 directory ``out`` (which must not exist).

    Raises:
        BagError: ``out`` exists or cannot be written.
    """
    started = time.perf_counter()
    ontology = ontology or Ontology.load()
    sim = Simulation(config, ontology)
    ts = get_typestore(Stores.ROS2_JAZZY)
    histogram = Histogram.empty()
    cam = config.camera
    k = camera_intrinsics(cam)
    events = list(_events(sim))
    compressed = cam.compression != 'none'
    image_topic = '/camera/image_raw/compressed' if compressed else '/camera/image_raw'

    def write(connection: object, stamp: int, msg: object) -> None:
        writer.write(connection, stamp, ts.serialize_cdr(msg, msg.__msgtype__))  # type: ignore[attr-defined]

    try:
        with Writer(Path(out), version=9, storage_plugin=_STORAGE[config.storage]) as writer:
            add = {
                topic: writer.add_connection(topic, msgtype, typestore=ts)
                for topic, msgtype in [
                    ('/points', 'sensor_msgs/msg/PointCloud2'),
                    ('/tf', 'tf2_msgs/msg/TFMessage'),
                    ('/tf_static', 'tf2_msgs/msg/TFMessage'),
                    ('/odom', 'nav_msgs/msg/Odometry'),
                    *(
                        [
                            (image_topic, f'sensor_msgs/msg/{"CompressedImage" if compressed else "Image"}'),
                            ('/camera/labels', 'sensor_msgs/msg/Image'),
                            ('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
                        ]
                        if cam.enabled
                        else []
                    ),
                ]
            }
            static = [('base_link', 'velodyne', lidar_mount(config.lidar))]
            if cam.enabled:
                static += [
                    ('base_link', 'camera_link', camera_mount(cam)),
                    ('camera_link', 'camera_optical_frame', OPTICAL_FROM_BODY),
                ]
            write(add['/tf_static'], START_NS, tf_message(ts, START_NS, static))
            for t, sensor, index in tqdm(events, desc=f'simulating {Path(out).name}', disable=not progress):
                stamp = START_NS + round(t * 1e9)
                if sensor == 'lidar':
                    cloud = sim.scan(index)
                    histogram.points += np.bincount(cloud['label'] & 0xFFFF, minlength=65536)
                    pose = sim.ego(t)
                    write(add['/points'], stamp, cloud_message(ts, cloud, stamp, 'velodyne'))
                    write(add['/tf'], stamp, tf_message(ts, stamp, [('odom', 'base_link', pose)]))
                    write(add['/odom'], stamp, odometry(ts, stamp, pose))
                else:
                    image, labels = sim.frame(index)
                    histogram.pixels += np.bincount(labels.reshape(-1), minlength=65536)
                    frame = 'camera_optical_frame'
                    if compressed:
                        frame_msg = compressed_image_message(ts, image, cam.compression, stamp, frame)
                    else:
                        frame_msg = image_message(ts, image, 'rgb8', stamp, frame)
                    write(add[image_topic], stamp, frame_msg)
                    write(add['/camera/labels'], stamp, image_message(ts, labels, 'mono16', stamp, frame))
                    write(add['/camera/camera_info'], stamp, camera_info(ts, stamp, frame, cam.width, cam.height, k))
    except (WriterError, OSError) as err:
        msg = f'cannot write {out}: {err}'
        raise BagError(msg) from err
    frames = sum(1 for e in events if e[1] == 'camera')
    return SimReport(Path(out), config.scans, frames, time.perf_counter() - started, histogram)


def generate_split(
    root: Path, config: SimConfig, scans: Mapping[str, int | Sequence[int]], progress: bool = True
) -> dict[str, list[Path]]:
    """A train/val/test (or any named) split under ``root``: per part, its sequences, each from its own seed.

    A part given as a count is one sequence, ``root/<part>``; a part given as a list of counts is that many
    sequences (streets), ``root/<part>/00``, ``01``, ...: rare objects are few per street, so a part scored on
    them needs several. Sequence j of the part at position k draws from seed ``config.seed + 1000 k + j``.
    A split already generated with the same settings is reused: ``split.yaml``, written last, records them.

    Raises:
        SimConfigError: a part without scans.
        BagError: the split cannot be written under ``root``.
    """
    root = Path(root)
    plain = {name: list(n) if isinstance(n, list | tuple) else n for name, n in scans.items()}
    bad = {name: n for name, n in plain.items() if not _scan_counts(n)}
    if bad:
        msg = f'split parts need a scan count >= 1 or a non-empty list of them, got {bad}'
        raise SimConfigError(msg)
    wanted = {'config': config.to_dict(), 'scans': plain}
    counts = {name: [n] if isinstance(n, int) else n for name, n in plain.items()}
    paths = {
        name: [root / name] if isinstance(n, int) else [root / name / f'{j:02d}' for j in range(len(n))]
        for name, n in plain.items()
    }
    marker = root / _SPLIT_FILE
    every = [path for part in paths.values() for path in part]
    if marker.exists() and yaml.safe_load(marker.read_text()) == wanted and all(p.exists() for p in every):
        return paths
    ontology = Ontology.load()
    try:
        marker.unlink(missing_ok=True)
        for offset, name in enumerate(counts):
            if (root / name).exists():
                shutil.rmtree(root / name)
            for j, (path, count) in enumerate(zip(paths[name], counts[name], strict=True)):
                path.parent.mkdir(parents=True, exist_ok=True)
                seed = config.seed + 1000 * offset + j
                report = simulate(replace(config, seed=seed, scans=count), path, progress, ontology)
                if progress:
                    where = path.relative_to(root)
                    print(f'{where}: {report.scans} scans, {report.frames} frames in {report.seconds:.1f} s')
                    print(report.histogram.table(ontology))
        marker.write_text(yaml.safe_dump(wanted))
    except OSError as err:
        msg = f'cannot write the split under {root}: {err}'
        raise BagError(msg) from err
    return paths


def _scan_counts(value: int | list[int]) -> bool:
    counts = value if isinstance(value, list) and value else [value]
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts)
