"""Spherical range-image projection of a LiDAR scan, and the way back from pixels to every input point.

The node and the training code build model inputs here, so a model sees at run time exactly what it saw in
training. Every point keeps its own pixel, including points hidden behind a nearer one in the same pixel and
points outside the vertical field of view (clipped to the first or last row), so every point gets a label back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from css_perception.core.errors import ProjectionError
from css_perception.core.metadata import LidarInputSpec

__all__ = ['RangeProjection', 'back_project', 'project_scan']


@dataclass(frozen=True)
class RangeProjection:
    """A projected scan.

    ``image`` is the normalised model input (C, H, W); empty pixels are 0 in every channel. ``rows``/``cols`` give
    each input point's pixel, ``valid`` marks points with finite coordinates and a range in (0, max_range], and
    ``in_fov`` those inside the vertical field of view. ``winner`` (H, W) is the index of the point that fills
    each pixel (the nearest), -1 where none does: training reads its targets through it.
    """

    image: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    valid: np.ndarray
    in_fov: np.ndarray
    winner: np.ndarray

    @property
    def occupied(self) -> np.ndarray:
        return self.winner >= 0


def project_scan(xyz: np.ndarray, intensity: np.ndarray | None, spec: LidarInputSpec) -> RangeProjection:
    """Project (N, 3) points (+ (N,) intensity) into the range image ``spec`` describes; the nearest point wins.

    Raises:
        ProjectionError: ``xyz`` is not (N, 3) or ``intensity`` has a different length.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ProjectionError(f'points must be (N, 3), got shape {xyz.shape}')
    n = len(xyz)
    if intensity is None:
        intensity = np.zeros(n, np.float32)
    intensity = np.asarray(intensity, np.float32).reshape(-1)
    if len(intensity) != n:
        raise ProjectionError(f'{len(intensity)} intensities for {n} points')
    height, width = spec.height, spec.width
    xyz = xyz.astype(np.float32, copy=False)
    with np.errstate(invalid='ignore', over='ignore'):
        rng = np.linalg.norm(xyz, axis=1)
        valid = np.isfinite(rng) & (rng > 0) & (rng <= spec.max_range)
        safe = np.where(valid, rng, 1.0)
        safe_xyz = np.where(valid[:, None], xyz, 0.0)
        yaw = np.arctan2(safe_xyz[:, 1], safe_xyz[:, 0])
        pitch = np.arcsin(np.clip(safe_xyz[:, 2] / safe, -1.0, 1.0))
    fov_up, fov_down = np.radians(spec.fov_up_deg), np.radians(spec.fov_down_deg)
    in_fov = valid & (pitch <= fov_up) & (pitch >= fov_down)
    cols = np.clip(np.floor(0.5 * (1.0 - yaw / np.pi) * width), 0, width - 1).astype(np.int32)
    rows = np.clip(np.floor((1.0 - (pitch - fov_down) / (fov_up - fov_down)) * height), 0, height - 1)
    rows = rows.astype(np.int32)
    rows[~valid] = -1
    cols[~valid] = -1

    channels = {'range': rng, 'x': xyz[:, 0], 'y': xyz[:, 1], 'z': xyz[:, 2], 'intensity': intensity}
    values = np.stack([channels[c] for c in spec.channels]).astype(np.float32)
    mean = np.asarray(spec.mean, np.float32)[:, None]
    std = np.asarray(spec.std, np.float32)[:, None]
    values = (values - mean) / std

    # The nearest point of each pixel fills it: one sort by (pixel, range), keep each pixel's first point.
    # Positive float32 ranges order like their bit patterns, so both keys fit in one int64.
    idx = np.flatnonzero(in_fov)
    pixel = (rows[idx] * width + cols[idx]).astype(np.int64)
    key = (pixel << 32) | rng[idx].astype(np.float32).view(np.uint32).astype(np.int64)
    order = idx[np.argsort(key)]
    pixel_sorted = rows[order] * width + cols[order]
    first = np.ones(len(order), bool)
    first[1:] = pixel_sorted[1:] != pixel_sorted[:-1]
    flat, winners = pixel_sorted[first], order[first]
    image = np.zeros((len(spec.channels), height * width), np.float32)
    image[:, flat] = values[:, winners]
    winner = np.full(height * width, -1, np.int64)
    winner[flat] = winners
    return RangeProjection(
        image=image.reshape(len(spec.channels), height, width),
        rows=rows,
        cols=cols,
        valid=valid,
        in_fov=in_fov,
        winner=winner.reshape(height, width),
    )


def back_project(pixel_values: np.ndarray, projection: RangeProjection, fill: float = 0) -> np.ndarray:
    """Per-point values (N, ...) read from a per-pixel array (H, W, ...); invalid points get ``fill``."""
    out = np.full((len(projection.rows), *pixel_values.shape[2:]), fill, dtype=pixel_values.dtype)
    valid = projection.valid
    out[valid] = pixel_values[projection.rows[valid], projection.cols[valid]]
    return out
