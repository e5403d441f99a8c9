"""Camera segmentation net: a light ResNet-style encoder with a U-Net decoder (not an ImageNet classifier).

Input (B, 3, H, W) normalised RGB, output (B, K, H, W) logits at the input resolution.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from css_training.models.blocks import (
    BasicBlock,
    FeatureInfo,
    ModelConfig,
    SegmentationNet,
    UpBlock,
    conv_bn_act,
)

__all__ = ['ImageNet']


class ImageNet(SegmentationNet):
    """Strided stem (1/2), three strided residual stages (1/4, 1/8, 1/16), decoder back to 1/2.

    Camera images are dense, so unlike the range net the stem downsamples at once; the head upsamples the
    1/2-resolution decoder output to the input size before its last conv, so 'penultimate' and the logits are
    per input pixel.
    """

    PRESETS: ClassVar[dict[str, dict[str, tuple[int, ...]]]] = {
        'lite': {'channels': (16, 32, 64, 96), 'blocks': (1, 1, 1, 1)},
        'full': {'channels': (32, 64, 128, 256), 'blocks': (1, 2, 2, 2)},
    }

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = self.widths
        stem: list[nn.Module] = [conv_bn_act(config.in_channels, c[0], stride=2)]
        stem += [BasicBlock(c[0], c[0]) for _ in range(self.depths[0])]
        self.stages = nn.ModuleList([nn.Sequential(*stem)])
        for i in range(1, len(c)):
            rest = (BasicBlock(c[i], c[i]) for _ in range(self.depths[i] - 1))
            self.stages.append(nn.Sequential(BasicBlock(c[i - 1], c[i], stride=2), *rest))
        self.ups = nn.ModuleList(UpBlock(c[i], c[i - 1], c[i - 1]) for i in range(len(c) - 1, 0, -1))
        self.head = nn.Sequential(conv_bn_act(c[0], c[0]), nn.Dropout2d(config.dropout))
        self.classifier = nn.Conv2d(c[0], config.num_classes, 1)
        self.feature_info = [
            *(FeatureInfo(f'stage{i + 1}', w, 2 ** (i + 1)) for i, w in enumerate(c)),
            FeatureInfo('decoder', c[0], 2),
            FeatureInfo('penultimate', c[0], 1),
        ]

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features: dict[str, torch.Tensor] = {}
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[f'stage{i + 1}'] = x
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        features['decoder'] = x
        features['penultimate'] = self.head(F.interpolate(x, size=size, mode='bilinear', align_corners=False))
        return features
