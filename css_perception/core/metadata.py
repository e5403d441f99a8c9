"""The self-describing model contract: what an ONNX model carries in ``metadata_props``.

A node needs nothing but the ONNX file to run a model, so everything the pipeline must know (classes, colours,
input layout, normalisation) travels inside it. Each value is stored as JSON under a ``css.`` key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from css_perception.core.errors import MetadataError

__all__ = [
    'LIDAR_CHANNELS',
    'CameraInputSpec',
    'ClassInfo',
    'LidarInputSpec',
    'Modality',
    'ModelMetadata',
]

PREFIX = 'css.'
REQUIRED_KEYS = ('modality', 'version', 'classes', 'input_spec')
LIDAR_CHANNELS = ('range', 'x', 'y', 'z', 'intensity')


class Modality(str, Enum):
    LIDAR = 'lidar'
    CAMERA = 'camera'


@dataclass(frozen=True)
class ClassInfo:
    """One output channel: the ontology id it predicts, its name and RGB colour."""

    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class LidarInputSpec:
    """Spherical range-image layout; ``mean``/``std`` normalise each channel: (value - mean) / std."""

    height: int
    width: int
    fov_up_deg: float
    fov_down_deg: float
    channels: tuple[str, ...] = LIDAR_CHANNELS
    mean: tuple[float, ...] = (12.0, 0.0, 0.0, -1.0, 0.3)
    std: tuple[float, ...] = (12.0, 12.0, 12.0, 1.5, 0.2)
    max_range: float = 80.0

    def __post_init__(self) -> None:
        unknown = set(self.channels) - set(LIDAR_CHANNELS)
        if unknown:
            msg = f'unknown LiDAR input channels {sorted(unknown)}; known: {list(LIDAR_CHANNELS)}'
            raise MetadataError(msg)
        if not (len(self.mean) == len(self.std) == len(self.channels)):
            msg = f'mean/std need one value per channel ({len(self.channels)})'
            raise MetadataError(msg)
        if self.height < 1 or self.width < 1 or self.fov_up_deg <= self.fov_down_deg:
            msg = f'bad range-image spec: {self.height}x{self.width}, fov {self.fov_down_deg}..{self.fov_up_deg}'
            raise MetadataError(msg)
        if any(s <= 0 for s in self.std):
            raise MetadataError('std values must be positive')


@dataclass(frozen=True)
class CameraInputSpec:
    """RGB input resized to ``height`` x ``width``, scaled to [0, 1], then (value - mean) / std per channel."""

    height: int
    width: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1 or len(self.mean) != 3 or len(self.std) != 3:
            msg = f'bad camera input spec: {self.height}x{self.width}, mean {self.mean}, std {self.std}'
            raise MetadataError(msg)
        if any(s <= 0 for s in self.std):
            raise MetadataError('std values must be positive')


InputSpec = LidarInputSpec | CameraInputSpec


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a model says about itself. ``classes[k]`` describes output channel k; channel 0 is id 0."""

    modality: Modality
    version: str
    classes: tuple[ClassInfo, ...]
    input_spec: InputSpec
    parent_version: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes or self.classes[0].id != 0:
            raise MetadataError('output channel 0 must be class id 0 (unlabelled / background)')
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            msg = f'duplicate class ids in {ids}'
            raise MetadataError(msg)
        expected = LidarInputSpec if self.modality is Modality.LIDAR else CameraInputSpec
        if not isinstance(self.input_spec, expected):
            msg = f'{self.modality.value} model needs a {expected.__name__}, got {type(self.input_spec).__name__}'
            raise MetadataError(msg)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes)

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` (str -> str)."""
        values: dict[str, Any] = {
            'modality': self.modality.value,
            'version': self.version,
            'parent_version': self.parent_version,
            'classes': [asdict(c) for c in self.classes],
            'input_spec': asdict(self.input_spec),
            'provenance': dict(self.provenance),
        }
        return {PREFIX + key: json.dumps(value) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        """Parse ONNX ``metadata_props``; the error names every missing key."""
        missing = [PREFIX + key for key in REQUIRED_KEYS if PREFIX + key not in props]
        if missing:
            msg = f'model metadata is missing {", ".join(missing)} (not a css_perception model?)'
            raise MetadataError(msg)
        try:
            raw = {key[len(PREFIX) :]: json.loads(value) for key, value in props.items() if key.startswith(PREFIX)}
            modality = Modality(raw['modality'])
            classes = tuple(
                ClassInfo(int(c['id']), str(c['name']), tuple(int(v) for v in c['color'])) for c in raw['classes']
            )
            spec_cls = LidarInputSpec if modality is Modality.LIDAR else CameraInputSpec
            spec_raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw['input_spec'].items()}
            input_spec = spec_cls(**spec_raw)
        except MetadataError:
            raise
        except (ValueError, KeyError, TypeError) as err:
            msg = f'model metadata is malformed: {err}'
            raise MetadataError(msg) from err
        return cls(
            modality=modality,
            version=str(raw['version']),
            classes=classes,
            input_spec=input_spec,
            parent_version=raw.get('parent_version'),
            provenance=raw.get('provenance') or {},
        )
