"""Export a trained net to a self-describing ONNX model, prove it matches torch, and publish it.

The parity check runs the exported file in ONNX Runtime through the node's own loader, so a model that passes
here is one the node accepts.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from css_perception.core.metadata import CameraInputSpec, ClassInfo, LidarInputSpec, Modality, ModelMetadata
from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry, RegistryEntry

__all__ = ['ExportError', 'export_and_publish', 'export_onnx', 'metadata_from_checkpoint', 'parity']

_log = logging.getLogger(__name__)
OPSET = 17
MIN_AGREEMENT = 0.999


class ExportError(ValueError):
    """The exported model does not reproduce the torch model."""


def metadata_from_checkpoint(ckpt: dict[str, Any]) -> ModelMetadata:
    """The self-description of a trained net (version left for the registry to assign)."""
    modality = Modality(ckpt['modality'])
    spec_cls = LidarInputSpec if modality is Modality.LIDAR else CameraInputSpec
    spec = spec_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt['input_spec'].items()})
    classes = tuple(ClassInfo(c['id'], c['name'], tuple(c['color'])) for c in ckpt['classes'])
    run = ckpt.get('run_config', {})
    provenance = {
        'run': run.get('name'),
        'method': ckpt.get('method', 'base'),
        'epochs': ckpt.get('epoch'),
        'model': ckpt['model_config'],
        'data': ckpt.get('data'),
        'val_miou': (ckpt.get('metrics') or {}).get('miou'),
        'val_scores': ckpt.get('scores'),
        'new_classes': ckpt.get('new_classes'),
    }
    return ModelMetadata(modality, 'draft', classes, spec, ckpt.get('parent_version'), provenance)


def _input_shape(metadata: ModelMetadata) -> tuple[int, int, int, int]:
    spec = metadata.input_spec
    channels = len(spec.channels) if metadata.modality is Modality.LIDAR else 3
    return (1, channels, spec.height, spec.width)


class _HalfPrecision(nn.Module):
    """A float16 copy of a net behind float32 input and output, as the node feeds and reads models."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def export_onnx(net: nn.Module, metadata: ModelMetadata, path: str | Path, *, fp16: bool = False) -> Path:
    """Write ``net`` as ONNX (opset 17, input ``input``, output ``logits``) with ``metadata`` in its props.

    ``fp16`` stores weights and activations in half precision for GPUs; input and output stay float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _HalfPrecision(net).eval() if fp16 else net.eval()
    dummy = torch.zeros(_input_shape(metadata))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net, (dummy,), str(path), input_names=['input'], output_names=['logits'], opset_version=OPSET, dynamo=False
        )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, metadata.to_props())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def parity(net: nn.Module, path: str | Path, inputs: Iterable[np.ndarray]) -> dict[str, float]:
    """Run torch and ONNX Runtime (the node's loader) on the same inputs: max |logit diff|, argmax agreement."""
    model = SegmentationModel.load(path, providers=['CPUExecutionProvider'])
    net = net.eval()
    max_diff, agree, total = 0.0, 0, 0
    with torch.no_grad():
        for x in inputs:
            ours = model.infer(x)
            theirs = net(torch.from_numpy(x)).numpy()
            max_diff = max(max_diff, float(np.abs(ours - theirs).max()))
            agree += int((ours.argmax(1) == theirs.argmax(1)).sum())
            total += ours.shape[0] * ours.shape[2] * ours.shape[3]
    return {'max_abs_diff': max_diff, 'argmax_agreement': agree / max(total, 1), 'pixels': total}


def export_and_publish(
    net: nn.Module,
    metadata: ModelMetadata,
    registry_root: str | Path,
    samples: Iterable[np.ndarray],
    *,
    provenance: dict[str, Any] | None = None,
    make_current: bool = True,
) -> tuple[RegistryEntry, dict[str, float]]:
    """Export as the registry's next version, check parity on ``samples``, publish and make it CURRENT.

    Raises:
        ExportError: ONNX Runtime's argmax agrees with torch's on fewer than 99.9 % of pixels.
    """
    registry = Registry(registry_root)
    version = registry.next_version(metadata.modality)
    with tempfile.TemporaryDirectory() as tmp:
        draft = export_onnx(net, replace(metadata, version=version), Path(tmp) / f'{version}.onnx')
        check = parity(net, draft, samples)
        if check['argmax_agreement'] < MIN_AGREEMENT:
            raise ExportError(f'ONNX argmax agrees with torch on {check["argmax_agreement"]:.4%} < 99.9 %')
        final = replace(metadata, version=version, provenance={**(provenance or {}), 'export_parity': check})
        export_onnx(net, final, draft)
        entry = registry.publish(draft, metadata.modality, version, make_current=make_current)
    _log.info('published %s %s (parity %s)', metadata.modality.value, version, check)
    return entry, check
