"""Segmentation nets by name: ``MODELS`` maps an architecture to its class, each with presets (lite, full).

A net is rebuilt from its :class:`ModelConfig` alone (stored in every checkpoint), so adding an architecture
is one module plus one line here; the contract tests run over every entry.
"""

from __future__ import annotations

from css_training.models.blocks import FeatureInfo, ModelConfig, ModelConfigError, SegmentationNet
from css_training.models.imagenet import ImageNet
from css_training.models.rangenet import RangeNet

__all__ = [
    'MODELS',
    'FeatureInfo',
    'ImageNet',
    'ModelConfig',
    'ModelConfigError',
    'RangeNet',
    'SegmentationNet',
    'build_model',
    'list_models',
]

MODELS: dict[str, type[SegmentationNet]] = {'rangenet': RangeNet, 'imagenet': ImageNet}


def build_model(cfg: ModelConfig) -> SegmentationNet:
    """A freshly initialised net for ``cfg``.

    Raises:
        ModelConfigError: unknown architecture or preset, or stage lists of the wrong length.
    """
    if cfg.arch not in MODELS:
        msg = f'unknown model architecture {cfg.arch!r}; known: {sorted(MODELS)}'
        raise ModelConfigError(msg)
    return MODELS[cfg.arch](cfg)


def list_models() -> list[tuple[str, str]]:
    """Every registered (architecture, preset) pair."""
    return [(arch, preset) for arch, cls in MODELS.items() for preset in cls.PRESETS]
