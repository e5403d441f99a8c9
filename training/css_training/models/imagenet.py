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
        self._build_decoder()
        self.feature_info = [
            *(FeatureInfo(f'stage{i + 1}', w, 2 ** (i + 1)) for i, w in enumerate(c)),
            FeatureInfo('decoder', c[0], 2),
            FeatureInfo('penultimate', c[0], 1),
        ]

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self._encode_decode(x)
        decoder = F.interpolate(features['decoder'], size=x.shape[-2:], mode='bilinear', align_corners=False)
        features['penultimate'] = self.head(decoder)
        return features
