"""LiDAR range-image segmentation net: a SalsaNext/CENet-style residual, dilated encoder-decoder.

Input (B, C, H, W) is the projected scan (``css_perception.core.projection``), output (B, K, H, W) logits at
the full range-image resolution, so every pixel (and, back-projected, every point) gets a class.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from css_training.models.blocks import (
    ContextBlock,
    DilatedResBlock,
    FeatureInfo,
    ModelConfig,
    SegmentationNet,
)

__all__ = ['RangeNet']


class RangeNet(SegmentationNet):
    """Context stem at full resolution, three pooled dilated stages, a U-Net decoder back to full resolution.

    Pooling is 2x2 average pooling (SalsaNext): on a 64-row image three poolings leave 8 rows, enough for
    context while the dilated blocks keep the receptive field wide. The decoder concatenates each encoder
    stage, so thin objects (poles, people) keep their full-resolution evidence.
    """

    PRESETS: ClassVar[dict[str, dict[str, tuple[int, ...]]]] = {
        'lite': {'channels': (16, 32, 48, 64), 'blocks': (1, 1, 1, 1)},
        'full': {'channels': (32, 64, 128, 256), 'blocks': (1, 2, 2, 2)},
    }

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = self.widths
        stem: list[nn.Module] = [ContextBlock(config.in_channels, c[0])]
        stem += [ContextBlock(c[0], c[0]) for _ in range(self.depths[0] - 1)]
        self.stages = nn.ModuleList([nn.Sequential(*stem)])
        for i in range(1, len(c)):
            blocks = [DilatedResBlock(c[i - 1] if j == 0 else c[i], c[i]) for j in range(self.depths[i])]
            self.stages.append(nn.Sequential(nn.AvgPool2d(2), *blocks))
        self._build_decoder()
        self.feature_info = [
            *(FeatureInfo(f'stage{i + 1}', w, 2**i) for i, w in enumerate(c)),
            FeatureInfo('decoder', c[0], 1),
            FeatureInfo('penultimate', c[0], 1),
        ]

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self._encode_decode(x)
        features['penultimate'] = self.head(features['decoder'])
        return features
