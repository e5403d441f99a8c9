"""Model config, the common net interface and the building blocks of the LiDAR and camera nets.

Every block is plain ``Conv2d``/``BatchNorm2d``/``LeakyReLU``/bilinear ``Resize``, so the nets export to ONNX
(opset 17) with static shapes and run on any ONNX Runtime execution provider.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

__all__ = [
    'BasicBlock',
    'ContextBlock',
    'DilatedResBlock',
    'FeatureInfo',
    'ModelConfig',
    'ModelConfigError',
    'SegmentationNet',
    'UpBlock',
    'conv_bn_act',
]

NEGATIVE_SLOPE = 0.1


class ModelConfigError(ValueError):
    """A model config names an unknown architecture or preset, or has impossible sizes."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a net; stored in every checkpoint as a plain dict (nanoGPT style).

    Attributes:
        arch: registered architecture (``css_training.models.MODELS``).
        preset: size preset of that architecture (``lite``, ``full``).
        in_channels: input channels (LiDAR: ``len(input_spec.channels)``; camera: 3).
        num_classes: output channels, background (channel 0) included.
        channels: per-stage widths overriding the preset's, or None.
        blocks: per-stage block counts overriding the preset's, or None.
        dropout: channel dropout before the classifier (training only).
    """

    arch: str
    preset: str = 'lite'
    in_channels: int = 5
    num_classes: int = 20
    channels: tuple[int, ...] | None = None
    blocks: tuple[int, ...] | None = None
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 2:
            msg = f'a model needs >= 1 input channel and >= 2 classes: {self.in_channels}, {self.num_classes}'
            raise ModelConfigError(msg)
        if not 0.0 <= self.dropout < 1.0:
            msg = f'dropout must be in [0, 1), got {self.dropout}'
            raise ModelConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), so ``torch.load(weights_only=True)`` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            msg = f'unknown model config keys {sorted(unknown)}; known: {sorted(known)}'
            raise ModelConfigError(msg)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self, **changes: Any) -> ModelConfig:
        return ModelConfig.from_dict({**self.to_dict(), **changes})


class FeatureInfo(NamedTuple):
    """A named output of ``forward_features``: its channel count and stride w.r.t. the input (timm style)."""

    name: str
    channels: int
    reduction: int


def conv_bn_act(
    in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """Conv (no bias: BN follows) -> BN -> LeakyReLU, padded so stride 1 keeps the size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, dilation * (kernel // 2), dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
    )


def _projection(in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """Residual shortcut: identity when shapes match, else a strided 1x1 conv + BN."""
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class ContextBlock(nn.Module):
    """Full-resolution context (SalsaNext's ResContextBlock): 1x1 to the width, then 3x3 and dilated 3x3.

    A range image is sparse and thin (64 rows), so the stem widens the receptive field before any pooling.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.reduce = conv_bn_act(in_channels, out_channels, kernel=1)
        self.branch = nn.Sequential(
            conv_bn_act(out_channels, out_channels), conv_bn_act(out_channels, out_channels, dilation=2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return x + self.branch(x)


class DilatedResBlock(nn.Module):
    """Residual block with parallel dilations 1, 2, 3 fused by a 1x1 conv (SalsaNext/CENet style).

    Dilations enlarge the receptive field on the range image without more pooling, which would merge
    neighbouring beams.
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()
        self.shortcut = _projection(in_channels, out_channels)
        self.branches = nn.ModuleList(
            conv_bn_act(in_channels if i == 0 else out_channels, out_channels, dilation=d)
            for i, d in enumerate(dilations)
        )
        fused = out_channels * len(dilations)
        self.fuse = nn.Sequential(nn.Conv2d(fused, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        y = x
        for branch in self.branches:  # chained: each branch sees the previous one's output (growing context)
            y = branch(y)
            outs.append(y)
        return self.act(self.fuse(torch.cat(outs, dim=1)) + self.shortcut(x))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), optionally strided: the camera encoder's unit."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(in_channels, out_channels, stride=stride),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _projection(in_channels, out_channels, stride)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class UpBlock(nn.Module):
    """Bilinear upsampling to the skip's size, concatenation with the skip, two 3x3 convs.

    Upsampling to the skip's exact size (not a fixed factor) keeps odd sizes (a 15-row map under a 30-row one)
    valid; with a fixed input shape the exported Resize has constant sizes.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(in_channels + skip_channels, out_channels), conv_bn_act(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return self.body(torch.cat([x, skip], dim=1))


class SegmentationNet(nn.Module, abc.ABC):
    """The interface every registered net implements (timm style).

    ``forward_features`` returns the named intermediates listed in ``feature_info`` ('stage1'..'stageN',
    'decoder', 'penultimate') plus 'logits'; ``forward`` returns the logits only, whatever the mode, so a
    distillation loss asks for features explicitly and export sees one output. ``classifier`` is a single 1x1
    conv so a continual step can grow it (weight (K, C, 1, 1), bias (K,)).
    """

    PRESETS: ClassVar[dict[str, dict[str, tuple[int, ...]]]] = {}

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.preset not in self.PRESETS:
            msg = f'{config.arch} has no preset {config.preset!r}; known: {sorted(self.PRESETS)}'
            raise ModelConfigError(msg)
        preset = self.PRESETS[config.preset]
        self.config = config
        self.widths = config.channels or preset['channels']
        self.depths = config.blocks or preset['blocks']
        if len(self.widths) != len(preset['channels']) or len(self.depths) != len(preset['blocks']):
            msg = (
                f'{config.arch} needs {len(preset["channels"])} stage widths and {len(preset["blocks"])} '
                f'block counts, got {self.widths} and {self.depths}'
            )
            raise ModelConfigError(msg)
        self.feature_info: list[FeatureInfo] = []
        self.stages: nn.ModuleList
        self.classifier: nn.Conv2d

    def _build_decoder(self) -> None:
        """The U-Net decoder of both nets, built after their ``stages``: from the deepest stage up, each step
        fuses the next shallower stage and takes its width; then the head and the 1x1 classifier."""
        c = self.widths
        self.ups = nn.ModuleList(UpBlock(c[i], c[i - 1], c[i - 1]) for i in range(len(c) - 1, 0, -1))
        self.head = nn.Sequential(conv_bn_act(c[0], c[0]), nn.Dropout2d(self.config.dropout))
        self.classifier = nn.Conv2d(c[0], self.config.num_classes, 1)

    def _encode_decode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """'stage1'..'stageN' and 'decoder': the stages in turn, then the decoder over their outputs."""
        features: dict[str, torch.Tensor] = {}
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[f'stage{i + 1}'] = x
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        features['decoder'] = x
        return features

    @abc.abstractmethod
    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stages, 'decoder' and 'penultimate' (everything up to the classifier)."""

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self._features(x)
        features['logits'] = self.forward_head(features['penultimate'])
        return features

    def forward_head(self, penultimate: torch.Tensor) -> torch.Tensor:
        """Logits from the classifier's input; a continual step calls it on its own features."""
        return self.classifier(penultimate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)['logits']
