"""Multi-scan input for the M2SKD teacher: a scan plus the hard-class instances of its neighbouring scans.

Points of hard classes in scans i - window .. i + window are moved into scan i's sensor frame with the poses
(inv(pose_i) @ pose_j). An instance that scan i also holds is then aligned to it by ICP (open3d), initialised
with the offset between the two centroids, so moving objects land on their current place; an instance that
scan i does not hold is left out (its current place is unknown). Points of hard classes without an instance id
(static things such as poles) follow the poses alone. Nothing of any other class is fused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import open3d as o3d

from css_training.data.errors import PoseError
from css_training.data.records import INSTANCE_SHIFT, SEMANTIC_MASK, LidarScan

__all__ = ['fuse_hard_instances', 'rare_classes']

_ICP_DISTANCE = 1.0


def rare_classes(counts: dict[int, int], share: float = 0.005) -> list[int]:
    """Classes holding less than ``share`` of the labelled points (id 0 excluded): the default hard classes."""
    total = sum(n for c, n in counts.items() if c != 0)
    return sorted(c for c, n in counts.items() if c != 0 and n > 0 and n < share * total)


def _icp(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """4x4 transform moving ``source`` (M, 3) onto ``target`` (K, 3), from a centroid-offset start."""
    init = np.eye(4)
    init[:3, 3] = target.mean(axis=0) - source.mean(axis=0)
    if len(source) < 3 or len(target) < 3:
        return init
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source.astype(np.float64)))
    dst = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(target.astype(np.float64)))
    result = o3d.pipelines.registration.registration_icp(
        src, dst, _ICP_DISTANCE, init, o3d.pipelines.registration.TransformationEstimationPointToPoint()
    )
    return np.asarray(result.transformation)


def fuse_hard_instances(
    scans: Sequence[LidarScan],
    index: int,
    hard_ids: Sequence[int],
    window: int = 2,
    span: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(points (N + M, 4), labels (N + M,) uint32): scan ``index`` followed by the fused hard-class points.

    Neighbours come from ``scans[span[0]:span[1]]``, the scan's own recording (all of ``scans`` when None):
    another recording's poses and instance ids mean nothing in this one's frame.

    Raises:
        PoseError: a scan in the window has no pose, or no labels.
    """
    current = scans[index]
    if current.pose is None or current.labels is None:
        msg = f'scan {index} needs a pose and labels to fuse neighbours into it'
        raise PoseError(msg)
    hard = np.zeros(SEMANTIC_MASK + 1, bool)
    hard[np.asarray(hard_ids, np.int64)] = True
    here_labels = np.asarray(current.labels, np.uint32)
    here_instances = {
        int(v): current.points[here_labels == v, :3] for v in np.unique(here_labels[_is_thing(here_labels, hard)])
    }
    to_current = np.linalg.inv(current.pose)
    extra_points, extra_labels = [current.points], [here_labels]
    lo, hi = span or (0, len(scans))
    for j in range(max(lo, index - window), min(hi, index + window + 1)):
        if j == index:
            continue
        other = scans[j]
        if other.pose is None or other.labels is None:
            msg = f'scan {j} needs a pose and labels to be fused into scan {index}'
            raise PoseError(msg)
        labels = np.asarray(other.labels, np.uint32)
        take = hard[labels & SEMANTIC_MASK]
        if not take.any():
            continue
        transform = to_current @ other.pose
        points = other.points[take].copy()
        points[:, :3] = points[:, :3] @ transform[:3, :3].T + transform[:3, 3]
        labels = labels[take]
        keep = np.ones(len(points), bool)
        for value in np.unique(labels[labels >> INSTANCE_SHIFT > 0]):  # a loop over instances, not points
            mine = labels == value
            if int(value) not in here_instances:
                keep &= ~mine
                continue
            fit = _icp(points[mine, :3], here_instances[int(value)])
            points[mine, :3] = points[mine, :3] @ fit[:3, :3].T + fit[:3, 3]
        extra_points.append(points[keep])
        extra_labels.append(labels[keep])
    return np.concatenate(extra_points).astype(np.float32), np.concatenate(extra_labels)


def _is_thing(labels: np.ndarray, hard: np.ndarray) -> np.ndarray:
    return hard[labels & SEMANTIC_MASK] & (labels >> INSTANCE_SHIFT > 0)
