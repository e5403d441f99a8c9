"""The node's ROS parameters: one table gives name, default, description, check and whether it is live;
``NodeConfig`` is its value.

Live parameters (the overlay, ``min_score``, the label encoding, the diagnostics' levels and period) take effect when
set on the running node (``ros2 param set``). The others shape subscriptions, models and threads, so they are declared
read-only: rclpy refuses to set them after start instead of accepting a value the node would ignore.
``config/segment.yaml`` repeats the defaults for users to edit; a test keeps the two identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from css_perception.runtime.model import DEFAULT_PROVIDERS

__all__ = ['PARAMETERS', 'NodeConfig', 'ParameterSpec', 'declare_and_read']


class ConfigError(ValueError):
    """A parameter value the node cannot run with."""


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    check: Callable[[Any], bool] = lambda _v: True
    expected: str = ''
    live: bool = False


def _positive(v: float) -> bool:
    return v > 0


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec('enable_lidar', True, 'segment PointCloud2 scans from the `points` topic'),
    ParameterSpec('enable_camera', True, 'segment camera frames from the `image` topic'),
    ParameterSpec(
        'image_transport',
        'raw',
        "camera input: 'raw' (Image on `image`) or 'compressed' (jpeg/png CompressedImage on `image`/compressed)",
        lambda v: v in ('raw', 'compressed'),
        "'raw' or 'compressed'",
    ),
    ParameterSpec('model_dir', 'models', 'model registry root: <model_dir>/<modality>/CURRENT'),
    ParameterSpec('lidar_model', '', 'explicit LiDAR .onnx path; empty = the registry CURRENT (hot swap on)'),
    ParameterSpec('camera_model', '', 'explicit camera .onnx path; empty = the registry CURRENT (hot swap on)'),
    ParameterSpec(
        'providers',
        list(DEFAULT_PROVIDERS),
        'ONNX Runtime execution providers, in preference order',
        lambda v: len(v) > 0,
        'a non-empty list',
    ),
    ParameterSpec(
        'tensorrt_cache_dir',
        '~/.ros/css_perception/tensorrt',
        "TensorRT's engine cache, one directory per model content ('' = build engines at every load)",
    ),
    ParameterSpec(
        'output_reliability',
        'reliable',
        'QoS reliability of the outputs',
        lambda v: v in ('reliable', 'best_effort'),
        "'reliable' or 'best_effort'",
    ),
    ParameterSpec(
        'overlay_alpha',
        0.5,
        'weight of the class colours in the overlay',
        lambda v: 0.0 <= v <= 1.0,
        'in [0, 1]',
        live=True,
    ),
    ParameterSpec(
        'min_score',
        0.0,
        'outputs label points and pixels whose class probability is below this as unlabelled (0); scores are kept',
        lambda v: 0.0 <= v <= 1.0,
        'in [0, 1]',
        live=True,
    ),
    ParameterSpec(
        'label_image_encoding',
        'mono16',
        'encoding of the label image (ontology ids)',
        lambda v: v in ('mono8', 'mono16'),
        "'mono8' or 'mono16'",
        live=True,
    ),
    *(
        ParameterSpec(
            f'{modality}_latency_{level.lower()}_ms',
            default,
            f'{label} p95 latency above which diagnostics {level}',
            _positive,
            '> 0',
            live=True,
        )
        for modality, label in (('lidar', 'LiDAR'), ('camera', 'camera'))
        for level, default in (('WARN', 80.0), ('ERROR', 200.0))
    ),
    ParameterSpec(
        'missed_frames_warn_fraction',
        0.2,
        'share of recent input frames missed (from stamp gaps) above which diagnostics WARN',
        lambda v: 0.0 < v <= 1.0,
        'in (0, 1]',
        live=True,
    ),
    ParameterSpec('diagnostics_period_s', 1.0, 'period of /diagnostics', _positive, '> 0', live=True),
    ParameterSpec('watch_registry', True, 'watch the registry CURRENT files and hot-swap new models'),
    ParameterSpec(
        'registry_poll_s', 1.0, 'registry polling interval (a file-system watch also wakes it)', _positive, '> 0'
    ),
)


@dataclass(frozen=True)
class NodeConfig:
    enable_lidar: bool
    enable_camera: bool
    image_transport: str
    model_dir: str
    lidar_model: str
    camera_model: str
    providers: tuple[str, ...]
    tensorrt_cache_dir: str
    output_reliability: str
    overlay_alpha: float
    min_score: float
    label_image_encoding: str
    lidar_latency_warn_ms: float
    lidar_latency_error_ms: float
    camera_latency_warn_ms: float
    camera_latency_error_ms: float
    missed_frames_warn_fraction: float
    diagnostics_period_s: float
    watch_registry: bool
    registry_poll_s: float

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeConfig:
        """Check every value against the table; the error lists every bad parameter."""
        bad = [
            f'{spec.name}={values[spec.name]!r} (expected {spec.expected})'
            for spec in PARAMETERS
            if not spec.check(values[spec.name])
        ]
        if not (values['enable_lidar'] or values['enable_camera']):
            bad.append('enable_lidar and enable_camera are both false (nothing to do)')
        for modality in ('lidar', 'camera'):
            warn, error = values[f'{modality}_latency_warn_ms'], values[f'{modality}_latency_error_ms']
            if warn >= error:
                bad.append(f'{modality}_latency_warn_ms={warn!r} is not below {modality}_latency_error_ms={error!r}')
        if bad:
            raise ConfigError('invalid parameters: ' + '; '.join(bad))
        return cls(**{**values, 'providers': tuple(values['providers'])})

    @property
    def tensorrt_cache(self) -> Path | None:
        return Path(self.tensorrt_cache_dir) if self.tensorrt_cache_dir else None

    def changed(self, values: dict[str, Any]) -> NodeConfig:
        """This configuration with ``values`` set, checked as a whole (a WARN level must stay below its ERROR)."""
        return NodeConfig.from_values({**asdict(self), **values})


def declare_and_read(node: Node) -> NodeConfig:
    """Declare every parameter on ``node`` (with its description; read-only unless live) and return the checked
    configuration."""
    values = {}
    for spec in PARAMETERS:
        descriptor = ParameterDescriptor(description=spec.description, read_only=not spec.live)
        param = node.declare_parameter(spec.name, spec.default, descriptor)
        values[spec.name] = param.value
    return NodeConfig.from_values(values)
