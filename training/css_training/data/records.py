"""Decoded samples shared by readers, the simulator, training and fusion."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ['INSTANCE_SHIFT', 'SEMANTIC_MASK', 'CameraFrame', 'LidarScan', 'split_label']

SEMANTIC_MASK = 0xFFFF
INSTANCE_SHIFT = 16


class LidarScan(NamedTuple):
    """One scan in the sensor frame.

    ``points`` (N, 4) float32 x, y, z, intensity. ``labels`` (N,) uint32, SemanticKITTI convention
    (low 16 bits ontology id, high 16 bits instance id), or None when unlabelled. ``pose`` (4, 4) float64
    sensor -> odom at the scan stamp, or None when the recording has no poses.
    """

    stamp_ns: int
    points: np.ndarray
    labels: np.ndarray | None = None
    pose: np.ndarray | None = None


class CameraFrame(NamedTuple):
    """One RGB frame (H, W, 3) uint8 and its per-pixel ontology ids (H, W) uint16, or None when unlabelled."""

    stamp_ns: int
    image: np.ndarray
    labels: np.ndarray | None = None


def split_label(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(semantic ontology ids uint16, instance ids uint16) from packed uint32 labels."""
    labels = np.asarray(labels, np.uint32)
    return (labels & SEMANTIC_MASK).astype(np.uint16), (labels >> INSTANCE_SHIFT).astype(np.uint16)
