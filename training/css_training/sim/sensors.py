"""The ego trajectory, the rotating LiDAR and the pinhole camera, as pure functions of the world and a time.

Frames: ``odom`` (the street), ``base_link`` (ego, on the ground, x forward), ``velodyne`` and ``camera_link``
(mounted on base_link), ``camera_optical_frame`` (z forward, x right, y down, as ROS cameras publish).
A scan is cast from the pose at its stamp (no motion distortion within a sweep).
"""

from __future__ import annotations

import numpy as np

from css_training.sim.config import CameraConfig, LidarConfig
from css_training.sim.world import World

__all__ = [
    'CLOUD_DTYPE',
    'OPTICAL_FROM_BODY',
    'camera_intrinsics',
    'camera_mount',
    'ego_pose',
    'lidar_mount',
    'render_camera',
    'scan_lidar',
]

CLOUD_DTYPE = np.dtype(
    [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'), ('label', '<u4'), ('ring', '<u2')]
)
# camera_optical_frame -> camera_link rotation: optical z is body x, optical x is body -y, optical y is body -z.
OPTICAL_FROM_BODY = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
_SUN = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
_SKY_HORIZON, _SKY_ZENITH = np.array([0.72, 0.80, 0.90]), np.array([0.35, 0.52, 0.82])


def ego_pose(time_s: float, speed: float) -> np.ndarray:
    """base_link -> odom: straight down the right lane with a gentle lateral weave."""
    period = 17.0
    y = -2.0 + 0.3 * np.sin(2 * np.pi * time_s / period)
    dy = 0.3 * 2 * np.pi / period * np.cos(2 * np.pi * time_s / period)
    yaw = np.arctan2(dy, speed) if speed > 0 else 0.0
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:3, 3] = (speed * time_s, y, 0.0)
    return pose


def lidar_mount(config: LidarConfig) -> np.ndarray:
    """velodyne -> base_link."""
    mount = np.eye(4)
    mount[:3, 3] = config.mount
    return mount


def camera_mount(config: CameraConfig) -> np.ndarray:
    """camera_link -> base_link: pitched down by ``pitch_deg``."""
    pitch = np.radians(config.pitch_deg)
    mount = np.eye(4)
    mount[:3, :3] = [[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]]
    mount[:3, 3] = config.mount
    return mount


def camera_intrinsics(config: CameraConfig) -> np.ndarray:
    cx = config.width / 2 if config.cx is None else config.cx
    cy = config.height / 2 if config.cy is None else config.cy
    return np.array([[config.fx, 0.0, cx], [0.0, config.fy, cy], [0.0, 0.0, 1.0]])


def _beam_directions(config: LidarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (beams * steps, 3) in the sensor frame, azimuth-major as a spinning head fires, and rings."""
    elevation = np.radians(np.linspace(config.fov_down_deg, config.fov_up_deg, config.beams))
    azimuth = np.linspace(np.pi, -np.pi, config.azimuth_steps, endpoint=False)
    el, az = np.meshgrid(elevation, azimuth)  # (steps, beams)
    directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    rings = np.broadcast_to(np.arange(config.beams, dtype=np.uint16), el.shape)
    return directions.reshape(-1, 3), rings.reshape(-1)


def scan_lidar(
    world: World, config: LidarConfig, pose: np.ndarray, time_s: float, rng: np.random.Generator
) -> np.ndarray:
    """The returns of one sweep from sensor pose ``pose`` (velodyne -> odom), in the sensor frame.

    Range noise is Gaussian; a return is lost with probability ``dropout``, more often for dark, far surfaces.
    Intensity grows with the class's reflectivity and the cosine of incidence, and falls with range.
    """
    local, rings = _beam_directions(config)
    directions = local @ pose[:3, :3].T
    hits = world.cast(np.broadcast_to(pose[:3, 3], directions.shape), directions, time_s)
    r = hits.t + rng.normal(0.0, config.range_noise, hits.t.shape)
    incidence = np.abs(np.einsum('ij,ij->i', hits.normal, directions))
    falloff = 1.0 - 0.35 * np.clip(r / config.max_range, 0.0, 1.0)
    clean = hits.reflectivity * (0.35 + 0.65 * incidence) * falloff
    intensity = np.clip(clean + rng.normal(0.0, 0.02, r.shape), 0.0, 1.0)
    lost = rng.random(r.shape) < config.dropout + 0.15 * (1.0 - clean) * np.clip(r / config.max_range, 0.0, 1.0)
    keep = np.isfinite(hits.t) & (r >= config.min_range) & (r <= config.max_range) & ~lost
    out = np.zeros(int(keep.sum()), CLOUD_DTYPE)
    xyz = local[keep] * r[keep, None]
    out['x'], out['y'], out['z'] = xyz.T
    out['intensity'] = intensity[keep]
    out['label'] = hits.semantic[keep].astype(np.uint32) | hits.instance[keep].astype(np.uint32) << 16
    out['ring'] = rings[keep]
    return out


def render_camera(
    world: World, config: CameraConfig, pose: np.ndarray, time_s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb8 image, mono16 ontology ids) seen from ``pose`` (camera_optical_frame -> odom).

    Colour is the class albedo with sun shading, a world-fixed texture, haze with distance and pixel noise;
    pixels that see nothing are sky (labelled ``world.sky_id``).
    """
    k = camera_intrinsics(config)
    v, u = np.mgrid[0 : config.height, 0 : config.width]
    optical = np.stack([(u + 0.5 - k[0, 2]) / k[0, 0], (v + 0.5 - k[1, 2]) / k[1, 1], np.ones(u.shape)], axis=-1)
    optical = optical.reshape(-1, 3) / np.linalg.norm(optical.reshape(-1, 3), axis=1, keepdims=True)
    directions = optical @ pose[:3, :3].T
    hits = world.cast(np.broadcast_to(pose[:3, 3], directions.shape), directions, time_s)
    hit = np.isfinite(hits.t)
    t = np.where(hit, hits.t, 0.0)
    points = pose[:3, 3] + directions * t[:, None]
    shade = 0.4 + 0.6 * np.clip(hits.normal @ _SUN, 0.0, 1.0)
    texture = 1.0 + 0.08 * np.sin(2.3 * points[:, 0]) * np.sin(2.9 * points[:, 1] + 1.7 * points[:, 2])
    elevation = np.clip(directions[:, 2], 0.0, 1.0)[:, None]
    sky = _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * elevation
    haze = (1.0 - np.exp(-t / 180.0))[:, None]
    surface = hits.albedo * (shade * texture)[:, None] * (1 - haze) + sky * haze
    colour = np.where(hit[:, None], surface, sky) + rng.normal(0.0, 0.02, directions.shape)
    image = np.clip(colour * 255.0, 0, 255).astype(np.uint8).reshape(config.height, config.width, 3)
    labels = np.where(hit, hits.semantic, world.sky_id).astype(np.uint16).reshape(config.height, config.width)
    return image, labels
