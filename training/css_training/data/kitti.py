"""SemanticKITTI sequence folders: read as LidarScans, or converted to the simulator's bag layout.

A sequence folder (``dataset/sequences/08``) holds:

- ``velodyne/NNNNNN.bin``: float32 x, y, z, remission per point.
- ``labels/NNNNNN.label``: uint32 per point, low 16 bits raw semantic id, high 16 bits instance id (optional:
  the test sequences have none).
- ``poses.txt``: per scan, the 3x4 row-major pose of the left camera in the first camera frame (optional).
- ``calib.txt``: ``Tr:`` the 3x4 velodyne -> camera transform (needed with poses.txt).
- ``times.txt``: seconds per scan (optional; 0.1 s steps otherwise, the HDL-64's 10 Hz).

Raw semantic ids become ontology ids through the ontology's ``semantic_kitti_map`` (moving classes fold into
their static class); ids it does not map become 0, instance ids are kept. Sensor poses are
``inv(Tr) @ pose_cam @ Tr``: the velodyne's motion expressed in the first scan's velodyne frame, so the
converted bag's ``odom`` frame is the first scan's sensor frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from css_perception.core.errors import OntologyError
from css_perception.core.ontology import Ontology
from css_training.data.errors import BagError, KittiError
from css_training.data.messages import cloud_message, odometry, tf_message
from css_training.data.records import SEMANTIC_MASK, LidarScan

__all__ = ['KittiSequence', 'kitti_to_bag', 'read_semantic_kitti']

_SCAN_PERIOD_NS = 100_000_000
_POINT_FIELDS = ('x', 'y', 'z', 'intensity')
_STORAGE = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}


class KittiSequence(Sequence[LidarScan]):
    """The scans of one sequence folder, each read from its files on indexing (nothing is held in memory)."""

    def __init__(
        self,
        scans: list[Path],
        labels: list[Path] | None,
        lut: np.ndarray,
        stamps_ns: np.ndarray,
        poses: np.ndarray | None,
    ) -> None:
        self._scans = scans
        self._labels = labels
        self._lut = lut
        self._stamps = stamps_ns
        self._poses = poses

    @property
    def stamps_ns(self) -> np.ndarray:
        """(K,) int64 scan stamps."""
        return self._stamps

    @property
    def poses(self) -> np.ndarray | None:
        """(K, 4, 4) velodyne -> first-scan velodyne poses, or None without poses.txt."""
        return self._poses

    def __len__(self) -> int:
        return len(self._scans)

    @overload
    def __getitem__(self, index: int) -> LidarScan: ...

    @overload
    def __getitem__(self, index: slice) -> KittiSequence: ...

    def __getitem__(self, index: int | slice) -> LidarScan | KittiSequence:
        if isinstance(index, slice):
            return KittiSequence(
                self._scans[index],
                None if self._labels is None else self._labels[index],
                self._lut,
                self._stamps[index],
                None if self._poses is None else self._poses[index],
            )
        i = range(len(self._scans))[index]
        points = np.fromfile(self._scans[i], '<f4').reshape(-1, 4)
        labels = None
        if self._labels is not None:
            raw = np.fromfile(self._labels[i], '<u4')
            labels = self._lut[raw & SEMANTIC_MASK] | (raw & ~np.uint32(SEMANTIC_MASK))
        pose = None if self._poses is None else self._poses[i].copy()
        return LidarScan(int(self._stamps[i]), points, labels, pose)


def read_semantic_kitti(
    seq_dir: Path, ontology: Ontology | None = None, label_map_yaml: Path | None = None
) -> KittiSequence:
    """The scans of a SemanticKITTI sequence folder, with ontology labels, stamps and sensor poses.

    Args:
        seq_dir: the sequence folder (holding ``velodyne/``).
        ontology: the classes; the package's ``config/classes.yaml`` when None.
        label_map_yaml: a YAML file whose ``semantic_kitti_map`` (or ``learning_map``) maps raw ids to
            ontology ids, replacing the ontology's own map. The ``learning_map`` of SemanticKITTI's own
            ``semantic-kitti.yaml`` maps to training indices instead; it is refused, as most of its values are
            not ontology ids.

    Raises:
        KittiError: a missing or malformed file, counts that disagree, or a map to unknown ontology ids.
    """
    seq_dir = Path(seq_dir)
    scans = sorted((seq_dir / 'velodyne').glob('*.bin'))
    if not scans:
        msg = f'{seq_dir} has no velodyne/*.bin scans; is it a SemanticKITTI sequence folder?'
        raise KittiError(msg)
    for scan in scans:
        if scan.stat().st_size % 16:
            msg = f'{scan} is {scan.stat().st_size} bytes, not a whole number of 16-byte points'
            raise KittiError(msg)
    labels = _label_files(seq_dir, scans)
    stamps = _stamps(seq_dir, len(scans))
    poses = _poses(seq_dir, len(scans))
    return KittiSequence(scans, labels, _label_lut(ontology, label_map_yaml), stamps, poses)


def kitti_to_bag(
    seq_dir: Path,
    out: Path,
    storage: Literal['mcap', 'sqlite3'] = 'mcap',
    ontology: Ontology | None = None,
    label_map_yaml: Path | None = None,
) -> Path:
    """Write a sequence folder as a rosbag2 recording in the simulator's layout; returns ``out``.

    Topics: ``/points`` (x, y, z, intensity float32, label uint32 with the ontology id in the low bits and the
    instance id kept; no label field without labels/), ``/tf`` (odom -> base_link per scan), ``/tf_static``
    (base_link -> velodyne, identity) and ``/odom`` (odom -> base_link); no pose topics without poses.txt.
    :func:`css_training.data.bags.read_lidar_scans` returns the same scans as :func:`read_semantic_kitti`.

    Raises:
        KittiError: the folder is not readable (see :func:`read_semantic_kitti`).
        BagError: ``out`` exists or cannot be written.
    """
    if storage not in _STORAGE:
        msg = f'storage must be one of {sorted(_STORAGE)}, not {storage!r}'
        raise BagError(msg)
    sequence = read_semantic_kitti(seq_dir, ontology, label_map_yaml)
    ts = get_typestore(Stores.ROS2_JAZZY)
    try:
        with Writer(out, version=9, storage_plugin=_STORAGE[storage]) as writer:
            topics = {
                '/points': writer.add_connection('/points', 'sensor_msgs/msg/PointCloud2', typestore=ts),
            }
            if sequence.poses is not None:
                for topic, msgtype in [
                    ('/tf_static', 'tf2_msgs/msg/TFMessage'),
                    ('/tf', 'tf2_msgs/msg/TFMessage'),
                    ('/odom', 'nav_msgs/msg/Odometry'),
                ]:
                    topics[topic] = writer.add_connection(topic, msgtype, typestore=ts)
                first = int(sequence.stamps_ns[0])
                static = tf_message(ts, first, [('base_link', 'velodyne', np.eye(4))])
                writer.write(topics['/tf_static'], first, ts.serialize_cdr(static, static.__msgtype__))
            for scan in sequence:
                for topic, msg in _scan_messages(ts, scan):
                    writer.write(topics[topic], scan.stamp_ns, ts.serialize_cdr(msg, msg.__msgtype__))
    except WriterError as err:
        msg = f'cannot write {out}: {err}'
        raise BagError(msg) from err
    return Path(out)


def _label_files(seq_dir: Path, scans: list[Path]) -> list[Path] | None:
    folder = seq_dir / 'labels'
    if not folder.is_dir():
        return None
    labels = [folder / f'{scan.stem}.label' for scan in scans]
    for scan, label in zip(scans, labels, strict=True):
        if not label.is_file():
            msg = f'{label} is missing; every scan in velodyne/ needs its label file'
            raise KittiError(msg)
        if label.stat().st_size * 4 != scan.stat().st_size:
            points = scan.stat().st_size // 16
            msg = f'{label} holds {label.stat().st_size // 4} labels for the {points} points of {scan.name}'
            raise KittiError(msg)
    return labels


def _stamps(seq_dir: Path, count: int) -> np.ndarray:
    path = seq_dir / 'times.txt'
    if not path.exists():
        return np.arange(count, dtype=np.int64) * _SCAN_PERIOD_NS
    seconds = _table(path, 1).reshape(-1)
    if seconds.size != count:
        msg = f'{path} has {seconds.size} times for {count} scans'
        raise KittiError(msg)
    return np.round(seconds * 1e9).astype(np.int64)


def _poses(seq_dir: Path, count: int) -> np.ndarray | None:
    path = seq_dir / 'poses.txt'
    if not path.exists():
        return None
    cam = _homogeneous(_table(path, 12))
    if len(cam) != count:
        msg = f'{path} has {len(cam)} poses for {count} scans'
        raise KittiError(msg)
    calib = _calibration(seq_dir / 'calib.txt')
    return np.linalg.inv(calib) @ cam @ calib


def _table(path: Path, columns: int) -> np.ndarray:
    """(rows, columns) float64 from a whitespace-separated text file."""
    try:
        table = np.loadtxt(path, ndmin=2)
    except ValueError as err:
        msg = f'{path}: {err}'
        raise KittiError(msg) from err
    if table.shape[1] != columns:
        msg = f'{path} has {table.shape[1]} numbers per line, expected {columns}'
        raise KittiError(msg)
    return table


def _homogeneous(rows: np.ndarray) -> np.ndarray:
    """(K, 4, 4) from (K, 12) row-major 3x4 matrices."""
    out = np.zeros((len(rows), 4, 4))
    out[:, :3, :] = rows.reshape(-1, 3, 4)
    out[:, 3, 3] = 1.0
    return out


def _calibration(path: Path) -> np.ndarray:
    """The ``Tr:`` velodyne -> camera transform of calib.txt."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        msg = f'{path} is needed with poses.txt (its Tr: line): {err}'
        raise KittiError(msg) from err
    values = next((line.split(':', 1)[1].split() for line in lines if line.startswith('Tr:')), None)
    try:
        return _homogeneous(np.array(values, np.float64).reshape(1, 12))[0]
    except (TypeError, ValueError) as err:
        msg = f'{path} has no Tr: line of 12 numbers'
        raise KittiError(msg) from err


def _label_lut(ontology: Ontology | None, label_map_yaml: Path | None) -> np.ndarray:
    """(65536,) uint32 raw semantic id -> ontology id; unmapped ids -> 0."""
    try:
        ontology = ontology if ontology is not None else Ontology.load()
    except OntologyError as err:
        msg = f'cannot load the ontology to map SemanticKITTI ids: {err}'
        raise KittiError(msg) from err
    mapping = ontology.semantic_kitti_map if label_map_yaml is None else _yaml_map(Path(label_map_yaml))
    known = {c.id for c in ontology.classes}
    unknown = sorted({v for v in mapping.values() if v not in known})
    if unknown:
        msg = f'the label map sends raw ids to {unknown}, which are not ontology ids ({sorted(known)})'
        raise KittiError(msg)
    lut = np.zeros(SEMANTIC_MASK + 1, np.uint32)
    raw = np.fromiter(mapping.keys(), np.int64, len(mapping))
    if np.any((raw < 0) | (raw > SEMANTIC_MASK)):
        msg = f'the label map has raw ids outside 0..{SEMANTIC_MASK}'
        raise KittiError(msg)
    lut[raw] = np.fromiter(mapping.values(), np.int64, len(mapping))
    return lut


def _yaml_map(path: Path) -> Mapping[int, int]:
    try:
        content = yaml.safe_load(path.read_text())
        table = content.get('semantic_kitti_map', content.get('learning_map'))
        return {int(k): int(v) for k, v in table.items()}
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError) as err:
        msg = f'{path}: expected a semantic_kitti_map or learning_map of raw id -> ontology id ({err})'
        raise KittiError(msg) from err


def _scan_messages(ts: Typestore, scan: LidarScan) -> list[tuple[str, Any]]:
    """(topic, message) for one scan: its cloud, and its pose on /tf and /odom when it has one."""
    label_field = [] if scan.labels is None else [('label', '<u4')]
    arr = np.zeros(len(scan.points), [*((name, '<f4') for name in _POINT_FIELDS), *label_field])
    for i, name in enumerate(_POINT_FIELDS):
        arr[name] = scan.points[:, i]
    if scan.labels is not None:
        arr['label'] = scan.labels
    points = cloud_message(ts, arr, scan.stamp_ns, 'velodyne')
    if scan.pose is None:
        return [('/points', points)]
    return [
        ('/points', points),
        ('/tf', tf_message(ts, scan.stamp_ns, [('odom', 'base_link', scan.pose)])),
        ('/odom', odometry(ts, scan.stamp_ns, scan.pose)),
    ]
