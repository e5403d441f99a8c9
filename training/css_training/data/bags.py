"""Recorded bags -> training samples: rosbag2 (mcap, sqlite3) and ROS 1 bags, read with rosbags' AnyReader.

A bag is a rosbag2 directory, a single ``.mcap`` or ``.db3`` file, or one or more ROS 1 ``.bag`` files (split
recordings are read as one). Layout (``docs/architecture.md``, "Labels in bags"):

- LiDAR: ``/points`` PointCloud2 with a ``label`` uint32 field (low 16 bits ontology id, high 16 bits
  instance), or labels on a separate topic: a PointCloud2 whose only needed field is the label field, with as
  many points as the scan, stamped like the scan (matched within ``label_tolerance_ns``). A cloud was chosen
  over ``UInt32MultiArray`` because it carries a header stamp and decodes through the node's own conversion.
  Points with a non-finite coordinate (NaN returns of organised clouds) are dropped with their labels.
- Camera: ``sensor_msgs/Image`` frames, or jpeg/png ``CompressedImage`` ones (as robots often record them),
  converted to rgb8; labels are mono8/mono16 images stamped like their frame (matched within
  ``label_tolerance_ns``).
- Poses: ``/tf`` (+ ``/tf_static``) from ``base_frame`` down to the cloud's frame, or ``nav_msgs/Odometry``
  plus the static transform to the sensor; interpolated at the scan stamp (:mod:`css_training.data.poses`).

Samples a recording cannot complete keep ``None`` (labels, pose) and the reader logs one warning with the
count, rather than dropping data or failing the whole bag: a scan before the first tf message has no pose, a
frame without a label image stays unlabelled. Consumers filter on ``is not None``.

Damaged recordings: an MCAP file cut short (a recorder killed, a full disk) has no footer, which rosbags
refuses. It is read in place up to its last complete record, behind a synthetic footer (no copy), and the
skipped bytes are logged; a rosbag2 directory without ``metadata.yaml`` is read from its storage files. A read
error in mid-stream stops the read and logs how many messages were read. Damaged sqlite3 and ROS 1 files raise
:class:`BagError` (repair them with ``ros2 bag reindex`` or ``rosbag reindex``).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import struct
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag1 import ReaderError as Rosbag1Error
from rosbags.rosbag2 import ReaderError as Rosbag2Error
from rosbags.typesys import Stores, get_typestore

from css_perception.core.errors import ConversionError
from css_perception.core.image import compressed_to_rgb8, image_to_array, to_rgb8
from css_perception.core.pointcloud import cloud_to_array, xyz_intensity
from css_training.data.cache import DiskStore, MemoryStore, SampleStore, content_key
from css_training.data.errors import (
    BagError,
    DataError,
    FieldNotFoundError,
    LabelMismatchError,
    PoseError,
    TopicNotFoundError,
    TopicTypeError,
)
from css_training.data.matching import match_stamps
from css_training.data.poses import TransformBuffer, stamp_to_ns
from css_training.data.records import CameraFrame, LidarScan

__all__ = [
    'BagTopics',
    'FrameSequence',
    'PoseSource',
    'ScanSequence',
    'bag_summary',
    'read_camera_frames',
    'read_lidar_scans',
]

_log = logging.getLogger(__name__)

PoseSource = Literal['tf', 'odom', 'none', 'auto']
BagPath = str | Path | Sequence[str | Path]

_CLOUD = ('sensor_msgs/msg/PointCloud2',)
_IMAGE = ('sensor_msgs/msg/Image',)
_FRAME = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
_TF = ('tf2_msgs/msg/TFMessage', 'tf/msg/tfMessage')
_ODOM = ('nav_msgs/msg/Odometry',)
_MCAP_MAGIC = b'\x89MCAP0\r\n'
# Footer record (opcode 0x02, 20 bytes: no summary section, no summary offsets, no CRC) and the closing magic.
_MCAP_FOOTER = b'\x02' + struct.pack('<QQQI', 20, 0, 0, 0) + _MCAP_MAGIC
# What rosbags raises while reading a damaged file (it parses with struct and reads past ends).
_READ_ERRORS = (AnyReaderError, Rosbag1Error, Rosbag2Error, OSError, EOFError, struct.error)


@dataclass(frozen=True)
class BagTopics:
    """Where a recording keeps its data, and how to read it. Part of the cache key.

    Attributes:
        points: PointCloud2 scans.
        label_field: uint32 label field of the labelled cloud; None reads scans without labels.
        label_topic: PointCloud2 carrying ``label_field`` per scan, matched by stamp; None: labels are in
            ``points`` itself.
        image: camera frames, ``sensor_msgs/Image`` or ``CompressedImage`` (e.g. ``/camera/image_raw/compressed``).
        image_labels: mono8/mono16 label images; None reads frames without labels.
        tf: dynamic transforms.
        tf_static: static transforms.
        odom: ``nav_msgs/Odometry``.
        pose_source: ``tf``, ``odom``, ``none``, or ``auto`` (tf if recorded and connected, else odom, else no
            poses with a warning).
        base_frame: frame the poses are expressed in (LidarScan.pose maps sensor -> base_frame).
        label_tolerance_ns: largest stamp distance when matching labels on their own topic (0: exact).
    """

    points: str = '/points'
    label_field: str | None = 'label'
    label_topic: str | None = None
    image: str = '/camera/image_raw'
    image_labels: str | None = '/camera/labels'
    tf: str = '/tf'
    tf_static: str = '/tf_static'
    odom: str = '/odom'
    pose_source: PoseSource = 'auto'
    base_frame: str = 'odom'
    label_tolerance_ns: int = 0

    def __post_init__(self) -> None:
        if self.pose_source not in ('tf', 'odom', 'none', 'auto'):
            msg = f"pose_source must be 'tf', 'odom', 'none' or 'auto', not {self.pose_source!r}"
            raise DataError(msg)
        if self.label_topic is not None and self.label_field is None:
            msg = f'label_topic {self.label_topic!r} needs label_field, the field that holds the labels'
            raise DataError(msg)
        if self.label_topic == self.points:
            msg = f'label_topic must differ from points ({self.points!r}); leave it None for labels in the scan'
            raise DataError(msg)


_T = TypeVar('_T')


class _Samples(Sequence[_T]):
    """Decoded samples in a store, loaded one at a time on indexing."""

    def __init__(self, store: SampleStore, samples: list[dict[str, Any]], decoded: int) -> None:
        self._store = store
        self._samples = samples
        #: Messages deserialised to build this sequence; 0 when it came from the cache.
        self.decoded = decoded

    @property
    def stamps_ns(self) -> np.ndarray:
        """(K,) int64 header stamps."""
        return np.array([s['stamp_ns'] for s in self._samples], np.int64)

    @property
    def cache_dir(self) -> Path | None:
        """The cache entry the samples are read from, or None when they are in memory."""
        return self._store.path

    def __len__(self) -> int:
        return len(self._samples)

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | Sequence[_T]:
        if isinstance(index, slice):
            return self._slice(index)
        return self._load(range(len(self._samples))[index])

    @abstractmethod
    def _slice(self, index: slice) -> Sequence[_T]:
        """The samples ``index`` selects, as a sequence of the same kind."""

    @abstractmethod
    def _load(self, i: int) -> _T:
        """Sample ``i`` (0 <= i < len)."""


class ScanSequence(_Samples[LidarScan]):
    """The scans of a recording; arrays are memory-mapped from the cache when there is one (read-only)."""

    def __init__(
        self, store: SampleStore, samples: list[dict[str, Any]], poses: np.ndarray | None, decoded: int
    ) -> None:
        super().__init__(store, samples, decoded)
        self._poses = poses

    @property
    def poses(self) -> np.ndarray | None:
        """(K, 4, 4) sensor -> base_frame poses, NaN where a scan has none; None: the recording has none."""
        return self._poses

    def _slice(self, index: slice) -> ScanSequence:
        poses = None if self._poses is None else self._poses[index]
        return ScanSequence(self._store, self._samples[index], poses, self.decoded)

    def _load(self, i: int) -> LidarScan:
        entry = self._samples[i]
        labels = None
        if entry['labels'] is not None:
            labels = self._store.get(entry['labels'])
            if entry['mask'] is not None:
                labels = labels[self._store.get(entry['mask'])]
        pose = None
        if self._poses is not None and np.isfinite(self._poses[i]).all():
            pose = np.array(self._poses[i])
        return LidarScan(entry['stamp_ns'], self._store.get(entry['points']), labels, pose)


class FrameSequence(_Samples[CameraFrame]):
    """The camera frames of a recording (rgb8); memory-mapped from the cache when there is one (read-only)."""

    def _slice(self, index: slice) -> FrameSequence:
        return FrameSequence(self._store, self._samples[index], self.decoded)

    def _load(self, i: int) -> CameraFrame:
        entry = self._samples[i]
        labels = None if entry['labels'] is None else self._store.get(entry['labels'])
        return CameraFrame(entry['stamp_ns'], self._store.get(entry['image']), labels)


def bag_summary(bag: BagPath) -> dict[str, tuple[str, int]]:
    """Topic -> (message type, message count) of a recording (of its readable part when damaged)."""
    with _Recording(_bag_paths(bag)) as recording:
        return recording.summary()


def read_lidar_scans(bag: BagPath, topics: BagTopics = BagTopics(), cache_dir: Path | None = None) -> ScanSequence:
    """Scans, labels and poses of a recording; decoded once into ``cache_dir`` when given, then reused.

    Raises:
        BagError: the bag cannot be opened.
        TopicNotFoundError: a needed topic is missing (the message lists the bag's topics).
        FieldNotFoundError: the cloud lacks x, y, z or the label field (the message lists its fields).
        LabelMismatchError: labels on their own topic have another point count than their scan.
        PoseError: ``pose_source`` 'tf' or 'odom' cannot pose the scans.
    """
    paths = _bag_paths(bag)
    store, index = _open_store(paths, 'lidar', topics, cache_dir)
    decoded = 0
    if index is None:
        with _Recording(paths) as recording:
            index = _decode_scans(recording, topics, store)
        decoded = recording.decoded
        _finish(store, index, decoded, 'scans')
    poses = None if index['poses'] is None else store.get(index['poses'])
    return ScanSequence(store, index['samples'], poses, decoded)


def read_camera_frames(bag: BagPath, topics: BagTopics = BagTopics(), cache_dir: Path | None = None) -> FrameSequence:
    """rgb8 frames of a recording and their label images; decoded once into ``cache_dir`` when given.

    Raises:
        BagError: the bag cannot be opened.
        TopicNotFoundError: a needed topic is missing (the message lists the bag's topics).
        LabelMismatchError: a label image is not single-channel or not the size of its frame.
    """
    paths = _bag_paths(bag)
    store, index = _open_store(paths, 'camera', topics, cache_dir)
    decoded = 0
    if index is None:
        with _Recording(paths) as recording:
            index = _decode_frames(recording, topics, store)
        decoded = recording.decoded
        _finish(store, index, decoded, 'frames')
    return FrameSequence(store, index['samples'], decoded)


def _bag_paths(bag: BagPath) -> list[Path]:
    paths = [Path(bag)] if isinstance(bag, str | Path) else [Path(p) for p in bag]
    if not paths:
        msg = 'no bag given'
        raise BagError(msg)
    return paths


def _storage_files(paths: list[Path]) -> list[Path]:
    """The files whose bytes make up the recording (a directory's files in name order)."""
    return [f for p in paths for f in (sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p])]


def _open_store(
    paths: list[Path], kind: str, topics: BagTopics, cache_dir: Path | None
) -> tuple[SampleStore, dict[str, Any] | None]:
    """The store to decode into, and the cached index when this recording was decoded with these options."""
    if cache_dir is None:
        return MemoryStore(), None
    missing = [p for p in paths if not p.exists()]
    if missing:
        msg = f'bag not found: {", ".join(map(str, missing))}'
        raise BagError(msg)
    key = content_key(_storage_files(paths), {'kind': kind, 'topics': dataclasses.asdict(topics)})
    store = DiskStore(Path(cache_dir) / key)
    index = store.read_index()
    if index is not None:
        _log.info('%s: %d samples from the cache %s', paths[0], len(index['samples']), store.path)
    return store, index


def _finish(store: SampleStore, index: dict[str, Any], decoded: int, what: str) -> None:
    store.write_index(index)
    where = f'into the cache {store.path}' if store.path is not None else 'in memory'
    _log.info('decoded %d messages: %d %s %s', decoded, len(index['samples']), what, where)


def _decode_scans(recording: _Recording, topics: BagTopics, store: SampleStore) -> dict[str, Any]:
    recording.require(topics.points, _CLOUD)
    if topics.label_topic is not None:
        recording.require(topics.label_topic, _CLOUD)
    sources = _pose_sources(recording, topics)
    wanted = {topics.points, topics.label_topic, *(topic for topic, _ in sources.values())}
    if sources:
        wanted.add(topics.tf_static)
    samples: list[dict[str, Any]] = []
    frames: list[str] = []
    topic_labels: list[tuple[int, str, int]] = []
    for topic, message in recording.messages(wanted):
        if topic == topics.points:
            samples.append(_store_scan(message, topics, store, len(samples)))
            frames.append(message.header.frame_id.lstrip('/'))
        elif topic == topics.label_topic:
            labels = _field(_cloud(message, topic), topics.label_field, topic)
            name = f'topic_labels_{len(topic_labels):06d}'
            store.put(name, labels)
            topic_labels.append((stamp_to_ns(message.header.stamp), name, labels.size))
        elif topic == topics.tf_static:
            for _, buffer in sources.values():
                buffer.add_tf_message(message, static=True)
        elif topic == topics.tf:
            sources['tf'][1].add_tf_message(message)
        else:
            sources['odom'][1].add_odometry(message)
    stamps = np.array([s['stamp_ns'] for s in samples], np.int64)
    if topics.label_topic is not None:
        _attach_topic_labels(samples, stamps, topic_labels, topics)
    poses = _scan_poses(stamps, np.array(frames), sources, topics)
    if poses is not None:
        store.put('poses', poses)
    return {'kind': 'lidar', 'samples': samples, 'poses': None if poses is None else 'poses'}


def _store_scan(message: Any, topics: BagTopics, store: SampleStore, i: int) -> dict[str, Any]:
    """Decode one cloud into (N, 4) points (+ labels), store them, return its index entry."""
    arr = _cloud(message, topics.points)
    missing = [n for n in 'xyz' if n not in (arr.dtype.names or ())]
    if missing:
        msg = f'{topics.points} has no field {", ".join(missing)}; it has: {_fields(arr)}'
        raise FieldNotFoundError(msg)
    xyz, intensity = xyz_intensity(arr)
    finite = np.isfinite(xyz).all(axis=1)
    mask = None if finite.all() else finite
    points = np.empty((int(finite.sum()), 4), np.float32)
    points[:, :3] = xyz[finite]
    points[:, 3] = 0.0 if intensity is None else intensity[finite]
    entry: dict[str, Any] = {
        'stamp_ns': stamp_to_ns(message.header.stamp),
        'points': f'points_{i:06d}',
        'labels': None,
        'mask': None,
        'raw_points': int(arr.size),
    }
    store.put(entry['points'], points)
    if topics.label_field is not None and topics.label_topic is None:
        labels = _field(arr, topics.label_field, topics.points)
        entry['labels'] = f'labels_{i:06d}'
        store.put(entry['labels'], labels if mask is None else labels[mask])
    elif topics.label_topic is not None and mask is not None:
        entry['mask'] = f'mask_{i:06d}'
        store.put(entry['mask'], mask)
    return entry


def _cloud(message: Any, topic: str) -> np.ndarray:
    """The cloud as a flat structured array, through the node's own conversion."""
    return _converted(message, topic, cloud_to_array).reshape(-1)


def _fields(arr: np.ndarray) -> str:
    return ', '.join(f'{name} ({arr.dtype[name]})' for name in arr.dtype.names or ())


def _field(arr: np.ndarray, name: str | None, topic: str) -> np.ndarray:
    """uint32 labels from a cloud's field."""
    if name not in (arr.dtype.names or ()):
        msg = f'{topic} has no field {name!r}; it has: {_fields(arr)} (label_field=None reads no labels)'
        raise FieldNotFoundError(msg)
    return arr[name].astype(np.uint32)


def _attach_topic_labels(
    samples: list[dict[str, Any]],
    stamps: np.ndarray,
    topic_labels: list[tuple[int, str, int]],
    topics: BagTopics,
) -> None:
    """Point each scan's entry at the label cloud with its stamp; check the point counts agree."""
    label_stamps = np.array([t for t, _, _ in topic_labels], np.int64)
    match = match_stamps(stamps, label_stamps, topics.label_tolerance_ns)
    for entry, j in zip(samples, match.tolist(), strict=True):
        if j < 0:
            continue
        _, name, size = topic_labels[j]
        if size != entry['raw_points']:
            msg = (
                f'{topics.label_topic} at {label_stamps[j]} ns has {size} labels for '
                f'{entry["raw_points"]} points of {topics.points}'
            )
            raise LabelMismatchError(msg)
        entry['labels'] = name
    if (unmatched := int((match < 0).sum())) > 0:
        _log.warning(
            '%d of %d scans have no labels on %s within %d ns; they stay unlabelled',
            unmatched,
            len(samples),
            topics.label_topic,
            topics.label_tolerance_ns,
        )


def _pose_sources(recording: _Recording, topics: BagTopics) -> dict[str, tuple[str, TransformBuffer]]:
    """Pose sources to try, in order: name -> (topic, buffer to fill)."""
    topic_of = {'tf': (topics.tf, _TF), 'odom': (topics.odom, _ODOM)}
    if topics.pose_source == 'none':
        return {}
    if topics.pose_source != 'auto':
        topic, types = topic_of[topics.pose_source]
        recording.require(topic, types)
        return {topics.pose_source: (topic, TransformBuffer())}
    present = recording.summary()
    return {name: (topic, TransformBuffer()) for name, (topic, _) in topic_of.items() if topic in present}


def _scan_poses(
    stamps: np.ndarray,
    frames: np.ndarray,
    sources: dict[str, tuple[str, TransformBuffer]],
    topics: BagTopics,
) -> np.ndarray | None:
    """(K, 4, 4) poses from the first source that connects base_frame to the scans' frames (NaN: no pose)."""
    if not sources or stamps.size == 0:
        return None
    errors = []
    for name, (topic, buffer) in sources.items():
        try:
            return _poses_from(buffer, stamps, frames, topics.base_frame, topic)
        except PoseError as err:
            errors.append(f'{name}: {err}')
    msg = f'cannot pose the scans of {topics.points} in {topics.base_frame!r}: {"; ".join(errors)}'
    if topics.pose_source != 'auto':
        raise PoseError(msg)
    _log.warning('%s; the scans have no poses', msg)
    return None


def _poses_from(
    buffer: TransformBuffer, stamps: np.ndarray, frames: np.ndarray, base_frame: str, topic: str
) -> np.ndarray:
    poses = np.full((stamps.size, 4, 4), np.nan)
    for frame in map(str, np.unique(frames)):
        span = buffer.time_range(base_frame, frame)
        ok = frames == frame
        if span is not None:
            ok &= (stamps >= span[0]) & (stamps <= span[1])
            if (outside := int((frames == frame).sum() - ok.sum())) > 0:
                _log.warning(
                    '%d of %d scans in %r are outside the poses recorded on %s, [%d, %d] ns: no pose',
                    outside,
                    stamps.size,
                    frame,
                    topic,
                    *span,
                )
        if ok.any():
            poses[ok] = buffer.lookup_many(base_frame, frame, stamps[ok])
    return poses


def _decode_frames(recording: _Recording, topics: BagTopics, store: SampleStore) -> dict[str, Any]:
    recording.require(topics.image, _FRAME)
    if topics.image_labels is not None:
        recording.require(topics.image_labels, _IMAGE)
    samples: list[dict[str, Any]] = []
    labels: list[tuple[int, str, tuple[int, ...]]] = []
    for topic, message in recording.messages({topics.image, topics.image_labels}):
        stamp = stamp_to_ns(message.header.stamp)
        if topic == topics.image:
            name = f'image_{len(samples):06d}'
            rgb = _converted(message, topic, _frame_rgb)
            store.put(name, rgb)
            samples.append({'stamp_ns': stamp, 'image': name, 'labels': None, 'shape': list(rgb.shape[:2])})
            continue
        ids = _converted(message, topic, image_to_array)
        if ids.ndim != 2:
            msg = f'{topic} at {stamp} ns is {message.encoding}; label images are mono8 or mono16'
            raise LabelMismatchError(msg)
        name = f'labels_{len(labels):06d}'
        store.put(name, ids.astype(np.uint16))
        labels.append((stamp, name, ids.shape))
    match = match_stamps(
        np.array([s['stamp_ns'] for s in samples], np.int64),
        np.array([t for t, _, _ in labels], np.int64),
        topics.label_tolerance_ns,
    )
    for entry, j in zip(samples, match.tolist(), strict=True):
        if j < 0:
            continue
        stamp, name, shape = labels[j]
        if list(shape) != entry['shape']:
            msg = f'{topics.image_labels} at {stamp} ns is {shape}, its frame {entry["shape"]}'
            raise LabelMismatchError(msg)
        entry['labels'] = name
    if topics.image_labels is not None and (unmatched := int((match < 0).sum())) > 0:
        _log.warning('%d of %d frames have no label image on %s', unmatched, len(samples), topics.image_labels)
    return {'kind': 'camera', 'samples': samples}


def _frame_rgb(message: Any) -> np.ndarray:
    if message.__msgtype__ == 'sensor_msgs/msg/CompressedImage':
        return compressed_to_rgb8(message.format, message.data)
    return to_rgb8(image_to_array(message), message.encoding)


def _converted(message: Any, topic: str, convert: Callable[[Any], np.ndarray]) -> np.ndarray:
    """``convert(message)`` through the node's own conversions; a message they refuse is named by topic and stamp."""
    try:
        return convert(message)
    except ConversionError as err:
        msg = f'{topic} at {stamp_to_ns(message.header.stamp)} ns: {err}'
        raise DataError(msg) from err


class _Recording:
    """An open recording: rosbags' AnyReader over the bag's files, salvaging truncated MCAP files."""

    def __init__(self, paths: list[Path]) -> None:
        self._name = ', '.join(map(str, paths))
        self._paths = paths
        self._reader: AnyReader | None = None
        self.decoded = 0

    def __enter__(self) -> _Recording:
        try:
            self._reader = AnyReader(_readable(self._paths), default_typestore=get_typestore(Stores.LATEST))
            self._reader.open()
        except _READ_ERRORS as err:
            msg = f'cannot read the bag {self._name}: {err}'
            raise BagError(msg) from err
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.close()

    def summary(self) -> dict[str, tuple[str, int]]:
        assert self._reader is not None
        return {name: (info.msgtype or '?', info.msgcount) for name, info in self._reader.topics.items()}

    def describe(self) -> str:
        listed = [f'{name} ({kind}, {count})' for name, (kind, count) in self.summary().items()]
        return ', '.join(listed) or 'no topics'

    def require(self, topic: str, msgtypes: tuple[str, ...]) -> None:
        """Fail with what the bag has when ``topic`` is absent or of another type."""
        found = self.summary().get(topic)
        if found is None:
            msg = f'{self._name} has no topic {topic}; it has: {self.describe()}'
            raise TopicNotFoundError(msg)
        if found[0] not in msgtypes:
            msg = f'{topic} in {self._name} is {found[0]}, expected {" or ".join(msgtypes)}'
            raise TopicTypeError(msg)

    def messages(self, topics: Collection[str | None]) -> Iterator[tuple[str, Any]]:
        """(topic, message) in log-time order; a damaged stream ends the iteration with a warning."""
        assert self._reader is not None
        connections = [c for c in self._reader.connections if c.topic in topics]
        if not connections:  # AnyReader reads every topic when given none
            return
        total = sum(c.msgcount for c in connections)
        stream = self._reader.messages(connections=connections)
        read = 0
        failed: list[str] = []
        while True:
            try:
                connection, _, raw = next(stream)
            except StopIteration:
                break
            except _READ_ERRORS as err:
                _log.warning('%s: read %d of %d messages, skipped the rest: %s', self._name, read, total, err)
                break
            read += 1
            try:
                message = self._reader.deserialize(raw, connection.msgtype)
            except AnyReaderError as err:
                failed.append(f'{connection.topic}: {err}')
                continue
            self.decoded += 1
            yield connection.topic, message
        if failed:
            _log.warning('%s: skipped %d undecodable messages, first %s', self._name, len(failed), failed[0])


def _readable(paths: list[Path]) -> list[Any]:
    """Paths for AnyReader: salvage views of truncated MCAP files, storage files of unfinished directories."""
    out: list[Path] = []
    for path in paths:
        if not path.exists():
            msg = f'{path} does not exist'
            raise BagError(msg)
        if not path.is_dir():
            out.append(path)
            continue
        storage = sorted(p for p in path.iterdir() if p.suffix in ('.mcap', '.db3'))
        cut = [p.name for p in storage if _is_truncated_mcap(p)]
        has_metadata = (path / 'metadata.yaml').exists()
        if has_metadata and not cut:
            out.append(path)
            continue
        if not storage:
            msg = f'{path} has no metadata.yaml and no .mcap or .db3 files; it is not a rosbag2 recording'
            raise BagError(msg)
        why = f'has truncated files {cut}' if cut else 'has no metadata.yaml (an interrupted recording?)'
        _log.warning('%s %s; reading its storage files directly', path, why)
        out.extend(storage)
    return [_SalvagedMcap.of(p) if _is_truncated_mcap(p) else p for p in out]


def _is_truncated_mcap(path: Path) -> bool:
    """An MCAP file (by its leading magic) that lacks the closing magic."""
    if path.suffix != '.mcap' or not path.is_file() or path.stat().st_size < 2 * len(_MCAP_MAGIC):
        return False
    with path.open('rb') as stream:
        head = stream.read(len(_MCAP_MAGIC))
        stream.seek(-len(_MCAP_MAGIC), io.SEEK_END)
        return head == _MCAP_MAGIC and stream.read() != _MCAP_MAGIC


@dataclass(frozen=True)
class _SalvagedMcap:
    """rosbags path view of a truncated MCAP file: its complete records and then a footer, read in place.

    rosbags then scans the records (no summary section), which is what an MCAP reader does for a file whose
    writer never finished. Implements the parts of ``rosbags.interfaces.typing.RPath`` its MCAP reader uses.
    """

    file: Path
    end: int

    @classmethod
    def of(cls, file: Path) -> _SalvagedMcap:
        size = file.stat().st_size
        end = _complete_records_end(file, size)
        _log.warning(
            '%s is truncated: reading its first %d bytes of complete records, skipping the last %d of %d',
            file,
            end,
            size - end,
            size,
        )
        return cls(file, end)

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def stem(self) -> str:
        return self.file.stem

    @property
    def suffix(self) -> str:
        return self.file.suffix

    def exists(self) -> bool:
        return True

    def is_dir(self) -> bool:
        return False

    def open(self, mode: str = 'rb') -> io.BufferedReader:
        if mode != 'rb':
            msg = f'{self.file}: a salvaged MCAP file is read-only'
            raise OSError(msg)
        return io.BufferedReader(_PrefixAndFooter(self.file, self.end))

    def __str__(self) -> str:
        return f'{self.file} (salvaged)'


def _complete_records_end(path: Path, size: int) -> int:
    """Offset just past the last complete MCAP record (opcode, uint64 length, body), before any footer."""
    pos = len(_MCAP_MAGIC)
    with path.open('rb') as stream:
        while True:
            stream.seek(pos)
            head = stream.read(9)
            if len(head) < 9 or head[0] == 0x02:
                return pos
            (length,) = struct.unpack_from('<Q', head, 1)
            if pos + 9 + length > size:
                return pos
            pos += 9 + length


class _PrefixAndFooter(io.RawIOBase):
    """Seekable raw stream: bytes [0, end) of a file followed by :data:`_MCAP_FOOTER`."""

    def __init__(self, path: Path, end: int) -> None:
        super().__init__()
        self._file = path.open('rb')
        self._end = end
        self._size = end + len(_MCAP_FOOTER)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            msg = f'negative seek position {base + offset}'
            raise OSError(msg)
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast('B')
        if self._pos < self._end:
            self._file.seek(self._pos)
            count = self._file.readinto(view[: min(len(view), self._end - self._pos)])
        else:
            tail = _MCAP_FOOTER[max(self._pos - self._end, 0) :][: len(view)]
            view[: len(tail)] = tail
            count = len(tail)
        self._pos += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()
