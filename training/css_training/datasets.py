"""Torch datasets over decoded records: LiDAR scans -> range images, camera frames -> resized images.

Inputs are built exactly as the node builds them (``css_perception.core.projection.project_scan`` for LiDAR,
bilinear resize + mean/std for camera), so a trained model sees the same numbers onboard. Targets are channel
indices of the model's class subset: ontology ids outside the subset become 0 (background), range-image pixels
that no point hit become :data:`IGNORE_INDEX`.

Augmentation draws from a generator seeded by ``(seed, epoch, index)``, so a sample's augmentation does not
depend on worker count, data order or whether the run was resumed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch.utils.data import ConcatDataset, Dataset, Subset

from css_perception.core.metadata import CameraInputSpec, Modality
from css_perception.core.ontology import Ontology
from css_perception.core.projection import RangeProjection, project_scan
from css_training.config import AugmentConfig, RunConfig
from css_training.data.bags import BagTopics, read_camera_frames, read_lidar_scans
from css_training.data.fusion import fuse_hard_instances
from css_training.data.kitti import read_semantic_kitti
from css_training.data.records import SEMANTIC_MASK, CameraFrame, LidarScan
from css_training.losses.segmentation import IGNORE_INDEX

__all__ = [
    'IGNORE_INDEX',
    'CameraDataset',
    'DatasetError',
    'LidarDataset',
    'MultiScanDataset',
    'ProjectedScan',
    'augment_image',
    'augment_points',
    'class_lut',
    'normalise_image',
    'read_records',
    'recording_spans',
    'run_dataset',
]

_log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A sample cannot be used: unlabelled, or a class list the label images cannot encode."""


class ProjectedScan(NamedTuple):
    """An unaugmented scan as the node sees it, plus what point-level evaluation needs.

    ``input`` (C, H, W) float32, ``target`` (H, W) int64 channel indices (255 where no point),
    ``projection`` the core projection (for ``back_project``), ``point_labels`` (N,) uint16 ontology ids (the
    evaluation may use another class list than the model).
    """

    input: torch.Tensor
    target: torch.Tensor
    projection: RangeProjection
    point_labels: np.ndarray


def read_records(
    paths: Sequence[str | Path],
    modality: Modality | str,
    topics: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    ontology: Ontology | None = None,
    max_samples: int | None = None,
) -> Sequence[LidarScan] | Sequence[CameraFrame]:
    """The labelled samples of several recordings, read lazily and concatenated in the order given.

    Each path is a bag (``css_training.data.bags``) or, for LiDAR, a SemanticKITTI sequence folder (one with
    ``velodyne/``). Recordings are read one by one rather than as one merged bag, so stamps of unrelated
    recordings never interleave. Unlabelled samples are dropped with one warning.

    Raises:
        DatasetError: no paths, or no labelled sample in them.
    """
    modality = Modality(modality)
    if not paths:
        msg = f'no {modality.value} recordings given'
        raise DatasetError(msg)
    bag_topics = BagTopics(**(topics or {}))
    cache = Path(cache_dir) if cache_dir is not None else None
    parts = []
    for path in map(Path, paths):
        if modality is Modality.CAMERA:
            parts.append(read_camera_frames(path, bag_topics, cache))
        elif (path / 'velodyne').is_dir():
            parts.append(read_semantic_kitti(path, ontology))
        else:
            parts.append(read_lidar_scans(path, bag_topics, cache))
    records = ConcatDataset(parts)
    labelled = [i for i in range(len(records)) if records[i].labels is not None]
    if len(labelled) < len(records):
        _log.warning('%d of %d samples have no labels and are skipped', len(records) - len(labelled), len(records))
    if not labelled:
        msg = f'no labelled {modality.value} samples in {[str(p) for p in paths]}'
        raise DatasetError(msg)
    return Subset(records, labelled[:max_samples])


def recording_spans(samples: Sequence[Any]) -> np.ndarray:
    """(N, 2) int64: per sample, the [start, end) sample indices of its own recording.

    ``samples`` as :func:`read_records` makes them (a subset of concatenated recordings); any other sequence is
    one recording.
    """
    if isinstance(samples, Subset) and isinstance(samples.dataset, ConcatDataset):
        ends = np.asarray(samples.dataset.cumulative_sizes)
        recording = np.searchsorted(ends, np.asarray(samples.indices, np.int64), side='right')
    else:
        recording = np.zeros(len(samples), np.int64)
    start, end = (np.searchsorted(recording, recording, side=side) for side in ('left', 'right'))
    return np.column_stack([start, end]).astype(np.int64)


def class_lut(class_ids: Sequence[int], labelled: Sequence[int] | None = None) -> np.ndarray:
    """(65536,) uint8 table from ontology id to output channel; ids outside ``class_ids`` map to 0.

    ``labelled`` (a continual step's new classes) keeps only those ids: every other id becomes background,
    as in a recording where only the new classes were annotated.

    Raises:
        DatasetError: the class list does not start with id 0 or has more channels than uint8 labels allow.
    """
    ids = np.asarray(class_ids, np.int64)
    if ids.size == 0 or ids[0] != 0 or ids.size >= IGNORE_INDEX:
        msg = f'class ids must start with 0 (background) and number < {IGNORE_INDEX}, got {list(class_ids)}'
        raise DatasetError(msg)
    lut = np.zeros(SEMANTIC_MASK + 1, np.uint8)
    lut[ids] = np.arange(ids.size, dtype=np.uint8)
    if labelled is not None:
        keep = np.zeros_like(lut)
        keep[np.asarray(labelled, np.int64)] = 1
        lut *= keep
    return lut


def augment_points(
    points: np.ndarray, labels: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Random point dropout, y-mirror, yaw and scale of an (N, 4) x, y, z, intensity scan.

    Every random number is drawn every time, in a fixed order, so one seed gives one augmentation.
    """
    drop = rng.uniform(0.0, cfg.point_dropout)
    keep = rng.random(len(points)) >= drop
    mirror = rng.random() < cfg.flip
    yaw = np.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    scale = rng.uniform(*cfg.scale)
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    transform = scale * rotation @ np.diag([1.0, -1.0 if mirror else 1.0, 1.0])
    points = points[keep]
    out = np.empty_like(points)
    out[:, :3] = points[:, :3] @ transform.T.astype(points.dtype)
    out[:, 3:] = points[:, 3:]  # intensity, and any per-point columns a caller carries along
    return out, labels[keep]


def augment_image(
    rgb: torch.Tensor, target: torch.Tensor, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop (area fraction from ``crop_scale``, same aspect), horizontal flip and colour jitter.

    ``rgb`` (3, H, W) in [0, 1], ``target`` (H, W); both come back cropped (resizing is the caller's).
    """
    height, width = rgb.shape[-2:]
    area = rng.uniform(*cfg.crop_scale)
    crop_h, crop_w = max(1, round(height * area**0.5)), max(1, round(width * area**0.5))
    top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
    flip = rng.random() < cfg.flip
    brightness, contrast, saturation = rng.uniform(1.0 - cfg.colour_jitter, 1.0 + cfg.colour_jitter, 3)
    rgb = rgb[:, top : top + crop_h, left : left + crop_w]
    target = target[top : top + crop_h, left : left + crop_w]
    if flip:
        rgb, target = rgb.flip(-1), target.flip(-1)
    rgb = rgb * brightness
    grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    rgb = (rgb - grey.mean()) * contrast + grey.mean()
    grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    rgb = (rgb - grey) * saturation + grey
    return rgb.clamp(0.0, 1.0), target


class _LabelledDataset(Dataset):
    """What the LiDAR and camera datasets share: samples, input spec, the class table and the epoch's seed.

    ``class_ids`` are the output channels' ontology ids (channel 0 = id 0); ``labelled`` restricts the labels
    kept (:func:`class_lut`); augmentation draws from ``(seed, epoch, index)``.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        spec: Any,
        class_ids: Sequence[int],
        augment: AugmentConfig | None = None,
        seed: int = 0,
        labelled: Sequence[int] | None = None,
    ) -> None:
        self.samples = samples
        self.spec = spec
        self.class_ids = tuple(int(i) for i in class_ids)
        self.lut = class_lut(self.class_ids, labelled)
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations this epoch (call before iterating, as with ``DistributedSampler``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)


class LidarDataset(_LabelledDataset):
    """Labelled scans -> (range-image input (C, H, W) float32, target (H, W) int64).

    Without augmentation each scan is projected once and kept in memory; with augmentation it is augmented and
    projected on every access. :meth:`projected` gives the unaugmented projection and per-point targets that
    point-level evaluation needs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: dict[int, ProjectedScan] = {}

    @property
    def scans(self) -> Sequence[LidarScan]:
        return self.samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment is None:
            sample = self.projected(index)
            return sample.input, sample.target
        scan = self._scan(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        points, labels = augment_points(scan.points, self._point_target(scan), rng, self.augment)
        proj = project_scan(points[:, :3], points[:, 3], self.spec)
        return torch.from_numpy(proj.image), self._target(proj, labels)

    def projected(self, index: int) -> ProjectedScan:
        """The unaugmented scan, projected once and cached."""
        if index not in self._cache:
            scan = self._scan(index)
            proj = project_scan(scan.points[:, :3], scan.points[:, 3], self.spec)
            target = self._target(proj, self._point_target(scan))
            labels = (np.asarray(scan.labels) & SEMANTIC_MASK).astype(np.uint16)
            self._cache[index] = ProjectedScan(torch.from_numpy(proj.image), target, proj, labels)
        return self._cache[index]

    def label_counts(self) -> np.ndarray:
        """(K,) int64 labelled points per channel over the whole set (for class weights)."""
        counts = np.zeros(len(self.class_ids), np.int64)
        for index in range(len(self)):
            counts += np.bincount(self._point_target(self._scan(index)), minlength=len(self.class_ids))
        return counts

    def _scan(self, index: int) -> LidarScan:
        scan = self.scans[index]
        if scan.labels is None:
            msg = f'scan {index} (stamp {scan.stamp_ns}) has no labels; drop unlabelled scans first'
            raise DatasetError(msg)
        return scan

    def _point_target(self, scan: LidarScan) -> np.ndarray:
        return self.lut[np.asarray(scan.labels) & SEMANTIC_MASK]

    @staticmethod
    def _target(proj: RangeProjection, point_target: np.ndarray) -> torch.Tensor:
        winner = proj.winner
        target = np.full(winner.shape, IGNORE_INDEX, np.int64)
        hit = winner >= 0
        target[hit] = point_target[winner[hit]]
        return torch.from_numpy(target)


def normalise_image(rgb: torch.Tensor, spec: CameraInputSpec) -> torch.Tensor:
    """(3, h, w) float RGB in [0, 1] -> resized to the spec (bilinear) and (v - mean) / std, as onboard."""
    size = (spec.height, spec.width)
    if rgb.shape[-2:] != size:
        rgb = F.interpolate(rgb[None], size=size, mode='bilinear', align_corners=False)[0]
    mean = torch.tensor(spec.mean, dtype=rgb.dtype).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=rgb.dtype).view(3, 1, 1)
    return (rgb - mean) / std


class CameraDataset(_LabelledDataset):
    """Labelled frames -> (normalised image (3, H, W) float32, target (H, W) int64) at the spec's size.

    Augmentation: a random crop (area fraction from ``crop_scale``, the input's aspect ratio) resized back to
    the input size, a horizontal flip, and brightness / contrast / saturation jitter.
    """

    @property
    def frames(self) -> Sequence[CameraFrame]:
        return self.samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frame = self._frame(index)
        rgb = torch.from_numpy(np.array(frame.image)).permute(2, 0, 1).float() / 255.0
        target = torch.from_numpy(self.lut[frame.labels].astype(np.int64))
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            rgb, target = augment_image(rgb, target, rng, self.augment)
        size = (self.spec.height, self.spec.width)
        if target.shape != size:
            target = F.interpolate(target[None, None].float(), size=size, mode='nearest')[0, 0].long()
        return normalise_image(rgb, self.spec), target

    def label_counts(self) -> np.ndarray:
        """(K,) int64 labelled pixels per channel over the whole set (for class weights)."""
        counts = np.zeros(len(self.class_ids), np.int64)
        for index in range(len(self)):
            counts += np.bincount(self.lut[self._frame(index).labels].ravel(), minlength=len(self.class_ids))
        return counts

    def _frame(self, index: int) -> CameraFrame:
        frame = self.frames[index]
        if frame.labels is None:
            msg = f'frame {index} (stamp {frame.stamp_ns}) has no labels; drop unlabelled frames first'
            raise DatasetError(msg)
        return frame


class MultiScanDataset(Dataset):
    """M2SKD samples: (student input, target, teacher input, teacher target, groups, teacher pixel, seen) from a
    LidarDataset's scans.

    The teacher input is the scan with the hard-class instances of its neighbours fused in
    (:func:`css_training.data.fusion.fuse_hard_instances`), augmented with the same draw as the student's points
    and projected with the student's field of view at ``teacher_scale`` times its rows and columns: at the
    student's size the fused points mostly land in pixels the scan already fills (docs/results.md), a finer
    teacher image keeps more of them. ``groups`` (H, W) int64 names, per student pixel, the hard-class instance
    of the point that fills it (its packed label), 0 elsewhere: the groups of M2SKD's affinity term.
    ``teacher pixel`` (H, W) int64 is, per student pixel, the flat index of the teacher pixel that the same point
    falls in (the pixel's own scaled position where it holds no point): the distillation terms compare student
    and teacher at the student's points, as the paper does. ``seen`` (H, W) bool marks the student points that
    the teacher sees there: its pixel shows that point or one of the same instance (class for stuff). Elsewhere
    a nearer fused point hides it (a point network keeps both; a range image keeps the nearest), the teacher's
    output there describes another object, and the terms leave the point out.
    """

    def __init__(self, base: LidarDataset, hard_ids: Sequence[int], window: int = 2, teacher_scale: int = 1) -> None:
        self.base = base
        self.hard = np.zeros(SEMANTIC_MASK + 1, bool)
        self.hard[np.asarray(hard_ids, np.int64)] = True
        self.window = window
        spec = base.spec
        self.teacher_spec = dataclasses.replace(
            spec, height=spec.height * teacher_scale, width=spec.width * teacher_scale
        )
        self.scale = teacher_scale
        self.spans = recording_spans(base.scans)
        self._fused: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def fused(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(points (N, 5) with an origin column, 1 for fused points; packed labels), computed once per scan."""
        if index not in self._fused:
            span = (int(self.spans[index, 0]), int(self.spans[index, 1]))
            points, labels = fuse_hard_instances(self.base.scans, index, np.flatnonzero(self.hard), self.window, span)
            origin = np.zeros((len(points), 1), np.float32)
            origin[len(self.base.scans[index].points) :] = 1.0
            self._fused[index] = (np.hstack([points, origin]), labels)
        return self._fused[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        points, labels = self.fused(index)
        if self.base.augment is not None:
            rng = np.random.default_rng((self.base.seed, self.base.epoch, index))
            points, labels = augment_points(points, labels, rng, self.base.augment)
        mine = points[:, 4] == 0
        student = project_scan(points[mine, :3], points[mine, 3], self.base.spec)
        teacher = project_scan(points[:, :3], points[:, 3], self.teacher_spec)
        own = labels[mine]
        target = LidarDataset._target(student, self.base.lut[own & SEMANTIC_MASK])
        in_group = self.hard[own & SEMANTIC_MASK] & (self.base.lut[own & SEMANTIC_MASK] > 0) & (own >> 16 > 0)
        winner = student.winner
        groups = np.zeros(winner.shape, np.int64)
        hit = winner >= 0
        point = winner[hit]  # the point that fills each student pixel
        filling = own[point]  # its packed label
        groups[hit] = np.where(in_group[point], filling, 0)
        teacher_target = LidarDataset._target(teacher, self.base.lut[labels & SEMANTIC_MASK])
        pixel = self._teacher_pixel(student, teacher, np.flatnonzero(mine))
        shown = teacher.winner.reshape(-1)[pixel]  # the point the teacher sees where each student point falls
        seen = np.zeros(winner.shape, bool)
        seen[hit] = labels[shown[hit]] == filling
        return (
            torch.from_numpy(student.image),
            target,
            torch.from_numpy(teacher.image),
            teacher_target,
            torch.from_numpy(groups),
            torch.from_numpy(pixel),
            torch.from_numpy(seen),
        )

    def _teacher_pixel(self, student: RangeProjection, teacher: RangeProjection, mine: np.ndarray) -> np.ndarray:
        height, width = student.winner.shape
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
        pixel = (rows * self.scale) * (width * self.scale) + cols * self.scale
        hit = student.winner >= 0
        point = mine[student.winner[hit]]  # the student's points, indexed among all (fused) points
        pixel[hit] = teacher.rows[point].astype(np.int64) * (width * self.scale) + teacher.cols[point]
        return pixel


def run_dataset(
    cfg: RunConfig,
    paths: Sequence[str | Path],
    class_ids: Sequence[int],
    ontology: Ontology,
    augment: bool = True,
    labelled: Sequence[int] | None = None,
) -> LidarDataset | CameraDataset:
    """The run's dataset of the recordings ``paths`` (its modality's kind, its input, augmentation and seed);
    ``labelled`` as in :func:`class_lut`.
    """
    data = cfg.data
    records = read_records(paths, cfg.modality, data.topics, data.cache_dir, ontology, data.max_samples)
    kind = LidarDataset if cfg.modality == Modality.LIDAR.value else CameraDataset
    return kind(records, cfg.input_spec(), class_ids, cfg.augment if augment else None, cfg.seed, labelled)
