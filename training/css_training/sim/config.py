"""Simulator settings: sensors, scene and recording, from YAML or keyword overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from css_perception.core.image import COMPRESSED_FORMATS

__all__ = ['DEFAULT_CLASSES', 'CameraConfig', 'LidarConfig', 'SceneConfig', 'SimConfig', 'SimConfigError']

# The classes an urban street holds (ontology names); rare ones get few points, as in real driving data.
DEFAULT_CLASSES = (
    'car',
    'bicycle',
    'motorcycle',
    'truck',
    'person',
    'bicyclist',
    'motorcyclist',
    'road',
    'parking',
    'sidewalk',
    'building',
    'fence',
    'vegetation',
    'trunk',
    'terrain',
    'pole',
    'traffic-sign',
)


class SimConfigError(ValueError):
    """A simulator setting is unknown or out of range."""


@dataclass(frozen=True)
class LidarConfig:
    """A rotating multi-beam LiDAR; the defaults are an HDL-64E's geometry."""

    beams: int = 64
    fov_up_deg: float = 2.0
    fov_down_deg: float = -24.8
    azimuth_steps: int = 2048
    rate_hz: float = 10.0
    min_range: float = 1.0
    max_range: float = 80.0
    range_noise: float = 0.02
    dropout: float = 0.02
    mount: tuple[float, float, float] = (0.0, 0.0, 1.73)


@dataclass(frozen=True)
class CameraConfig:
    """A forward-looking pinhole; ``cx``/``cy`` default to the image centre.

    ``compression`` 'jpeg' or 'png' writes the frames as ``CompressedImage`` on ``/camera/image_raw/compressed``,
    as robots often record them; 'none' writes rgb8 ``Image`` on ``/camera/image_raw``. Labels stay lossless.
    """

    enabled: bool = True
    width: int = 320
    height: int = 240
    fx: float = 220.0
    fy: float = 220.0
    cx: float | None = None
    cy: float | None = None
    rate_hz: float = 5.0
    mount: tuple[float, float, float] = (1.0, 0.0, 1.6)
    pitch_deg: float = 4.0
    compression: str = 'none'


@dataclass(frozen=True)
class SceneConfig:
    """What the street holds. ``density`` scales the count of every object kind; ``ego_speed`` is in m/s."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    density: float = 1.0
    ego_speed: float = 8.0


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    scans: int = 100
    storage: str = 'mcap'
    lidar: LidarConfig = field(default_factory=LidarConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        checks = [
            (self.scans >= 1, 'scans must be >= 1'),
            (0 <= self.seed < 2**32, f'seed must be in [0, 2**32), not {self.seed}'),
            (self.storage in ('mcap', 'sqlite3'), f"storage must be 'mcap' or 'sqlite3', not {self.storage!r}"),
            (self.lidar.beams >= 1 and self.lidar.azimuth_steps >= 1, 'lidar beams and azimuth_steps must be >= 1'),
            (self.lidar.fov_up_deg > self.lidar.fov_down_deg, 'lidar fov_up_deg must exceed fov_down_deg'),
            (0 < self.lidar.min_range < self.lidar.max_range, 'lidar needs 0 < min_range < max_range'),
            (0 <= self.lidar.dropout < 1, 'lidar dropout must be in [0, 1)'),
            (self.lidar.rate_hz > 0 and self.camera.rate_hz > 0, 'sensor rates must be > 0'),
            (self.camera.width >= 1 and self.camera.height >= 1, 'camera width and height must be >= 1'),
            (
                self.camera.compression in ('none', *COMPRESSED_FORMATS),
                f"camera compression must be 'none', 'jpeg' or 'png', not {self.camera.compression!r}",
            ),
            (self.scene.density >= 0 and self.scene.ego_speed >= 0, 'density and ego_speed must be >= 0'),
        ]
        for ok, msg in checks:
            if not ok:
                raise SimConfigError(msg)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimConfig:
        """A config from nested plain values (as in YAML); unknown keys are an error, not ignored."""
        try:
            parts = {
                name: _build(kind, values.get(name, {}))
                for name, kind in (('lidar', LidarConfig), ('camera', CameraConfig), ('scene', SceneConfig))
            }
            top = {k: v for k, v in values.items() if k not in parts}
            return _build(cls, top, **parts)
        except TypeError as err:
            raise SimConfigError(str(err)) from err

    @classmethod
    def load(cls, path: Path) -> SimConfig:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            msg = f'cannot read simulator config {path}: {err}'
            raise SimConfigError(msg) from err
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _build(kind: type, values: Any, **nested: Any) -> Any:
    if not isinstance(values, dict):
        msg = f'{kind.__name__} expects a mapping, got {values!r}'
        raise SimConfigError(msg)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        msg = f'unknown {kind.__name__} keys {unknown}; known: {sorted(names)}'
        raise SimConfigError(msg)
    tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
    return kind(**{**values, **tuples, **nested})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
