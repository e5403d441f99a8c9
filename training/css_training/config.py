"""Typed run configuration: a YAML file plus ``--set key=value`` overrides, resolved once, saved with the run.

Sections are dataclasses, so a misspelt key fails at load time with the list of known keys instead of being
ignored, and the resolved copy (``runs/<name>/config.yaml``) reproduces the run by itself.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from css_perception.core.errors import MetadataError
from css_perception.core.metadata import CameraInputSpec, LidarInputSpec, Modality
from css_training.models import ModelConfig

__all__ = [
    'AugmentConfig',
    'ConfigError',
    'ContinualSection',
    'DataConfig',
    'ModelSection',
    'OptimConfig',
    'RunConfig',
    'apply_overrides',
    'load_config',
    'plain_values',
    'read_mapping',
    'read_values',
]


class ConfigError(ValueError):
    """A run config is malformed: unknown key, wrong type, bad value or an unreadable file."""


@dataclass
class ModelSection:
    """The net to train; input channels and class count come from ``input`` and ``data.classes``."""

    arch: str = 'rangenet'
    preset: str = 'lite'
    channels: tuple[int, ...] | None = None
    blocks: tuple[int, ...] | None = None
    dropout: float = 0.1


@dataclass
class DataConfig:
    """Where samples come from and which classes the model learns.

    Attributes:
        train: bags (rosbag2 dir, .mcap, .db3, ROS 1 .bag) or SemanticKITTI sequence folders (with
            ``velodyne/``); read together.
        val: the same, for the per-epoch validation (skipped when empty).
        classes: ontology names learnt besides ``unlabeled``; channel order is ``unlabeled`` + these. Ids not
            listed are background (channel 0).
        ontology: classes.yaml; the package's when None.
        cache_dir: decoded-bag cache (``css_training.data.cache``); none when None.
        topics: ``BagTopics`` fields overriding the defaults (``points``, ``image``, ``image_labels``, ...).
        sim_config: a simulator YAML (``config/sim/``); when set and ``train`` is empty, a simulated split is
            generated under ``sim_dir`` (or reused when its settings match) and its train/val parts are used.
        sim_dir: where the simulated split lives.
        sim_scans: scans per split part, or a list of counts: that many sequences (``generate_split``).
        max_samples: use at most this many samples per split (quick runs); all when None.
    """

    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    ontology: str | None = None
    cache_dir: str | None = None
    topics: dict[str, Any] = field(default_factory=dict)
    sim_config: str | None = None
    sim_dir: str = 'out/sim'
    sim_scans: dict[str, int | list[int]] = field(default_factory=lambda: {'train': 400, 'val': 100, 'test': 100})
    max_samples: int | None = None


@dataclass
class AugmentConfig:
    """Training-time augmentation; off means projections are computed once and cached.

    Attributes:
        enabled: augment the training split at all.
        flip: LiDAR: probability of mirroring y -> -y; camera: probability of a horizontal flip.
        rotate_deg: LiDAR: yaw drawn uniformly from [-rotate_deg, rotate_deg].
        scale: LiDAR: xyz scale factor range.
        point_dropout: LiDAR: the fraction of points dropped is drawn from [0, point_dropout].
        colour_jitter: camera: brightness, contrast and saturation factors drawn from [1 - j, 1 + j].
        crop_scale: camera: area fraction range of the random crop (resized back to the input size).
    """

    enabled: bool = True
    flip: float = 0.5
    rotate_deg: float = 180.0
    scale: tuple[float, float] = (0.95, 1.05)
    point_dropout: float = 0.1
    colour_jitter: float = 0.3
    crop_scale: tuple[float, float] = (0.5, 1.0)


@dataclass
class OptimConfig:
    """AdamW with a per-step OneCycle or cosine schedule; loss = weighted CE + ``lovasz_weight`` * Lovász."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = 'onecycle'
    warmup: float = 0.1
    lovasz_weight: float = 1.0
    class_weight_power: float = 0.5
    grad_clip: float | None = None


@dataclass
class ContinualSection:
    """A continual step (``css-train add-classes``); ``data.classes`` are the new classes.

    Attributes:
        method: ``+``-joined methods (finetune, joint, mib, lgkd, lskd, m2skd); None: the modality's default
            (``css_training.continual.DEFAULT_METHODS``: lgkd+m2skd for LiDAR, lgkd alone on scans without
            poses; lgkd+lskd for camera).
        kd_weight: weight of MiB's unbiased KD.
        lgkd_prev, lgkd_novel: LGKD's weights of background and new-class positions: 5 and 1, the values of the
            reference's two-step script (``scripts/voc/lgkd_15-5.sh``; its loss class defaults to 10). With 10 no
            new class was learned here (docs/lab-notebook.md). A continual step's config takes the modality's
            ``lgkd_prev`` when unset (``css_training.continual.DEFAULT_LGKD_PREV``: 2 on camera).
        pod_weight, context_weight: LSKD's base factors of the layer (POD) and context terms; the learned
            trade-off weights multiply them.
        lskd_alpha, lskd_gamma, lskd_beta: the gradient-equilibrium objective's settings (the reference's 0.5);
            gamma ties w_CE to MiB's KD only, not to LGKD's (``css_training.continual``).
        m2_logit_weight, m2_affinity_weight, m2_feature_weight: M2SKD terms (the reference's 5, 1 and 0).
        m2_teacher: ``frozen`` (a multi-scan teacher trained first, then frozen; the paper) or ``shared`` (one
            network on both inputs, the multi-scan output detached as target; the released code).
        m2_teacher_weight: segmentation-loss weight of the multi-scan branch in ``shared`` mode (0.2).
        m2_window: neighbouring scans fused on each side.
        m2_teacher_scale: the teacher's range image has this many times the student's rows and columns (1: the
            same image size; the frozen teacher starts from the parent's weights either way, the nets being fully
            convolutional).
        m2_teacher_epochs: epochs of the ``frozen`` teacher; None: the step's own ``optim.epochs``. The paper
            trains the teacher fully before distilling it. A step cut short for time is not enough for it: after
            the ``small`` preset's 3 LiDAR epochs the teacher was no better than its student (docs/lab-notebook.md).
        hard_classes: classes fused and grouped by M2SKD; None: the labelled classes with < 0.5 % of the points.
    """

    method: str | None = None
    kd_weight: float = 10.0
    lgkd_prev: float = 5.0
    lgkd_novel: float = 1.0
    pod_weight: float = 0.01
    context_weight: float = 0.01
    lskd_alpha: float = 0.5
    lskd_gamma: float = 0.5
    lskd_beta: float = 0.5
    m2_logit_weight: float = 5.0
    m2_affinity_weight: float = 1.0
    m2_feature_weight: float = 0.0
    m2_teacher: str = 'frozen'
    m2_teacher_weight: float = 0.2
    m2_window: int = 2
    m2_teacher_scale: int = 1
    m2_teacher_epochs: int | None = None
    hard_classes: tuple[str, ...] | None = None


@dataclass
class RunConfig:
    """One training run. ``input`` holds the ``LidarInputSpec`` / ``CameraInputSpec`` fields of the modality.

    Attributes:
        name: run name; outputs go to ``<out_dir>/<name>/``.
        modality: ``lidar`` or ``camera``.
        seed: seeds python, numpy, torch and the data order.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (resume then reproduces weights exactly).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``.
        amp: mixed precision; only used on CUDA.
        threads: ``torch.set_num_threads``; torch's default when None.
        num_workers: DataLoader workers.
        progress: tqdm bars.
        eval_every: validate every this many epochs (and after the last).
    """

    name: str = 'run'
    modality: str = 'lidar'
    out_dir: str = 'runs'
    seed: int = 0
    deterministic: bool = False
    device: str = 'auto'
    amp: bool = True
    threads: int | None = None
    num_workers: int = 0
    progress: bool = True
    eval_every: int = 1
    model: ModelSection = field(default_factory=ModelSection)
    input: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    continual: ContinualSection = field(default_factory=ContinualSection)

    def __post_init__(self) -> None:
        try:
            Modality(self.modality)
        except ValueError as err:
            msg = f'modality must be one of {[m.value for m in Modality]}, got {self.modality!r}'
            raise ConfigError(msg) from err
        if not self.data.classes:
            raise ConfigError('data.classes is empty: list the ontology names the model learns')
        if self.optim.schedule not in ('onecycle', 'cosine'):
            msg = f"optim.schedule must be 'onecycle' or 'cosine', got {self.optim.schedule!r}"
            raise ConfigError(msg)
        if self.optim.epochs < 1 or self.optim.batch_size < 1:
            raise ConfigError('optim.epochs and optim.batch_size must be >= 1')
        o = self.optim
        out_of_range = [
            f'{key}={value!r} ({wanted})'
            for key, value, ok, wanted in (
                ('seed', self.seed, 0 <= self.seed < 2**32, 'in [0, 2**32)'),
                ('num_workers', self.num_workers, self.num_workers >= 0, '>= 0'),
                ('eval_every', self.eval_every, self.eval_every >= 1, '>= 1'),
                ('threads', self.threads, self.threads is None or self.threads >= 1, '>= 1, or unset'),
                ('optim.lr', o.lr, o.lr > 0, '> 0'),
                ('optim.weight_decay', o.weight_decay, o.weight_decay >= 0, '>= 0'),
                ('optim.warmup', o.warmup, o.schedule != 'onecycle' or 0 < o.warmup < 1, 'in (0, 1) for onecycle'),
                ('optim.grad_clip', o.grad_clip, o.grad_clip is None or o.grad_clip > 0, '> 0, or unset'),
            )
            if not ok
        ]
        c = self.continual
        out_of_range += [
            f'continual.{f.name}={getattr(c, f.name)!r} (>= 0)'
            for f in dataclasses.fields(c)
            if f.name.endswith(('_weight', '_prev', '_novel', '_alpha', '_beta', '_gamma', '_window'))
            and getattr(c, f.name) < 0
        ]
        if out_of_range:
            raise ConfigError('out of range: ' + '; '.join(out_of_range))
        if self.continual.m2_teacher not in ('frozen', 'shared'):
            msg = f"continual.m2_teacher must be 'frozen' or 'shared', not {self.continual.m2_teacher!r}"
            raise ConfigError(msg)
        if self.continual.m2_teacher_epochs is not None and self.continual.m2_teacher_epochs < 1:
            msg = f'continual.m2_teacher_epochs must be a positive integer, not {self.continual.m2_teacher_epochs!r}'
            raise ConfigError(msg)
        if self.continual.m2_teacher_scale < 1:
            msg = f'continual.m2_teacher_scale must be a positive integer, not {self.continual.m2_teacher_scale!r}'
            raise ConfigError(msg)
        self.input_spec()  # validate now, not after the data is loaded

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def input_spec(self) -> LidarInputSpec | CameraInputSpec:
        """The model's input layout, as written into the exported model."""
        cls = LidarInputSpec if self.modality == Modality.LIDAR.value else CameraInputSpec
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.input.items()}
        try:
            return cls(**values)
        except (TypeError, MetadataError) as err:
            msg = f'input: {err} (fields of {cls.__name__}: {[f.name for f in dataclasses.fields(cls)]})'
            raise ConfigError(msg) from err

    def model_config(self) -> ModelConfig:
        spec = self.input_spec()
        in_channels = len(spec.channels) if isinstance(spec, LidarInputSpec) else 3
        m = self.model
        num_classes = len(self.data.classes) + 1
        return ModelConfig(m.arch, m.preset, in_channels, num_classes, m.channels, m.blocks, m.dropout)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON types (lists, not tuples): saved with the run and inside checkpoints."""
        return plain_values(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        return _build(cls, data, '')

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """A run config from a YAML file (or the defaults when None) with ``key.sub=value`` overrides applied.

    Raises:
        ConfigError: unreadable file, malformed override, unknown key or bad value.
    """
    data = read_values(path) if path is not None else {}
    return RunConfig.from_dict(apply_overrides(data, overrides))


def read_values(path: str | Path) -> dict[str, Any]:
    """The mapping in a run config YAML file, before it is checked as a :class:`RunConfig` (a continual step's
    file holds only some sections; the parent model gives the rest).

    Raises:
        ConfigError: unreadable file, or not a mapping.
    """
    return read_mapping(path, 'run config')


def read_mapping(path: str | Path, kind: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path``, a ``kind`` (named in the errors).

    Raises:
        ConfigError: unreadable file, or not a mapping.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        msg = f'cannot read {kind} {path}: {err}'
        raise ConfigError(msg) from err
    if not isinstance(data, dict):
        msg = f'{path}: a {kind} is a mapping, got {type(data).__name__}'
        raise ConfigError(msg)
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b.c=value`` set; values are parsed as YAML (``1e-3``, ``[a, b]``)."""
    out = plain_values(data)
    for item in overrides:
        key, sep, raw = item.partition('=')
        if not sep or not key:
            msg = f'override {item!r} is not key=value (e.g. optim.lr=0.001)'
            raise ConfigError(msg)
        node = out
        *parents, leaf = key.strip().split('.')
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                msg = f'override {item!r}: {part!r} is not a section'
                raise ConfigError(msg)
        node[leaf] = yaml.safe_load(raw)
    return out


def plain_values(value: Any) -> Any:
    """Lists for tuples, str keys: what YAML, JSON and ``torch.load(weights_only=True)`` take back."""
    if isinstance(value, Mapping):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a mapping, each value coerced to its field's annotation."""
    if not isinstance(data, Mapping):
        msg = f'{where or "config"}: expected a mapping, got {data!r}'
        raise ConfigError(msg)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        msg = f'unknown key(s) {[where + k for k in unknown]}; known in {where or "the top level"}: {names}'
        raise ConfigError(msg)
    values = {k: _coerce(v, hints[k], f'{where}{k}') for k, v in data.items()}
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + '.')
    if origin is tuple:
        if not isinstance(value, list | tuple):
            msg = f'{key}: expected a list, got {value!r}'
            raise ConfigError(msg)
        inner = args[0]
        if args[-1] is not Ellipsis and len(args) != len(value):
            msg = f'{key}: expected {len(args)} values, got {value!r}'
            raise ConfigError(msg)
        return tuple(_coerce(v, inner, key) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            msg = f'{key}: expected a mapping, got {value!r}'
            raise ConfigError(msg)
        return dict(value)
    if hint is float and not isinstance(value, bool):
        try:
            return float(value)  # PyYAML reads 1e-3 (no dot) as a string
        except (TypeError, ValueError):
            pass
    elif hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    msg = f'{key}: expected {getattr(hint, "__name__", hint)}, got {value!r}'
    raise ConfigError(msg)
