"""Evaluation: confusion matrix, IoU per class, mIoU, and reports (JSON, markdown, PNG).

LiDAR is scored per point over every point of each scan, the way the node labels them: project, argmax,
back-project (points outside the field of view get background, as onboard). An ONNX model is scored through
the node's own ``LidarSegmenter`` / ``CameraSegmenter``. Camera is scored per pixel at the label resolution.

mIoU excludes background (channel 0) and classes absent from both labels and predictions (their IoU is
undefined, not 0), so a subset evaluation (old / new classes) is not dragged down by classes it never saw.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from matplotlib.figure import Figure
from torch import nn

from css_perception.core.metadata import CameraInputSpec, ClassInfo, LidarInputSpec
from css_perception.core.projection import back_project
from css_training.data.records import SEMANTIC_MASK, CameraFrame, LidarScan
from css_training.datasets import CameraDataset, LidarDataset, class_lut, normalise_image

__all__ = [
    'ConfusionMatrix',
    'EvaluationError',
    'Metrics',
    'evaluate_camera',
    'evaluate_lidar',
    'evaluate_net',
    'write_report',
]

_log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """Evaluation cannot run: no labelled samples, or a torch model without its input spec."""


class ConfusionMatrix:
    """(K, K) counts, rows = ground truth, columns = prediction, accumulated with one ``bincount`` per update."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    def update(self, target: torch.Tensor | np.ndarray, pred: torch.Tensor | np.ndarray) -> None:
        """Count (target, pred) pairs; targets outside [0, K) (e.g. 255 = ignore) are skipped."""
        target = torch.as_tensor(target).reshape(-1).to(torch.int64).cpu()
        pred = torch.as_tensor(pred).reshape(-1).to(torch.int64).cpu()
        n = self.num_classes
        keep = (target >= 0) & (target < n)
        index = n * target[keep] + pred[keep]
        self.mat += torch.bincount(index, minlength=n * n).reshape(n, n)

    def reset(self) -> None:
        self.mat.zero_()

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(overall accuracy, per-class recall, per-class IoU); NaN where a class has no support."""
        h = self.mat.double()
        diag = torch.diag(h)
        acc_global = diag.sum() / h.sum()
        acc = diag / h.sum(1)
        iou = diag / (h.sum(1) + h.sum(0) - diag)
        return acc_global, acc, iou

    def metrics(self, classes: Sequence[ClassInfo]) -> Metrics:
        return Metrics(tuple(classes), self.mat.numpy().copy())


@dataclass(frozen=True)
class Metrics:
    """Scores derived from one confusion matrix (rows ground truth, columns prediction) over ``classes``."""

    classes: tuple[ClassInfo, ...]
    confusion: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """(K,) IoU per class; NaN where the class is in neither labels nor predictions."""
        h = self.confusion.astype(np.float64)
        union = h.sum(0) + h.sum(1) - np.diag(h)
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, np.diag(h) / union, np.nan)

    @property
    def miou(self) -> float:
        """Mean IoU over non-background classes with a defined IoU."""
        return self.mean_iou(c.name for c in self.classes[1:])

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else math.nan

    @property
    def support(self) -> np.ndarray:
        """(K,) labelled points (pixels) per class."""
        return self.confusion.sum(1)

    def mean_iou(self, names: Iterable[str]) -> float:
        """Mean IoU over the named classes (e.g. the old or the new ones of a continual step)."""
        wanted = set(names)
        values = [v for c, v in zip(self.classes, self.iou, strict=True) if c.name in wanted and not np.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        return {
            'miou': _json_float(self.miou),
            'accuracy': _json_float(self.accuracy),
            'classes': [
                {'id': c.id, 'name': c.name, 'iou': _json_float(v), 'support': int(s)}
                for c, v, s in zip(self.classes, self.iou, self.support, strict=True)
            ],
            'confusion': self.confusion.tolist(),
        }


class _Segmenter(Protocol):
    """The runtime pipelines' shape: ``segment(...)`` returns a result whose ``labels`` are ontology ids."""

    def segment(self, *args: Any) -> Any: ...


def evaluate_lidar(
    model_or_segmenter: nn.Module | _Segmenter,
    scans: Sequence[LidarScan] | LidarDataset,
    classes: Sequence[ClassInfo],
    *,
    input_spec: LidarInputSpec | None = None,
    model_classes: Sequence[ClassInfo] | None = None,
    device: str | torch.device = 'cpu',
) -> Metrics:
    """Point-level scores over every point of every scan.

    Args:
        model_or_segmenter: a torch net (its channels are ``model_classes``) or a ``LidarSegmenter``.
        scans: labelled scans, or a :class:`LidarDataset` whose cached projections are reused.
        classes: the classes scored, channel 0 background; ids outside them count as background, so a model
            can be scored on more classes than it knows.
        input_spec: the torch net's input layout (taken from the dataset when one is given).
        model_classes: the torch net's output channels; ``classes`` when None.
        device: where the torch net runs.

    Raises:
        EvaluationError: a torch net without an input spec, or no scans.
    """
    eval_lut = class_lut([c.id for c in classes])
    confmat = ConfusionMatrix(len(classes))
    indices = range(len(scans))
    if isinstance(model_or_segmenter, nn.Module):
        model_ids = np.array([c.id for c in (model_classes or classes)], np.int64)
        dataset = _lidar_dataset(scans, input_spec, model_ids)
        model = model_or_segmenter.eval()
        for i in indices:
            sample = dataset.projected(i)
            with torch.inference_mode():
                pixels = model(sample.input[None].to(device)).argmax(1)[0].cpu().numpy()
            pred_ids = model_ids[back_project(pixels, sample.projection, fill=0)]
            confmat.update(eval_lut[sample.point_labels], eval_lut[pred_ids])
    else:
        raw = scans.scans if isinstance(scans, LidarDataset) else scans
        for i in indices:
            scan = raw[i]
            if scan.labels is None:
                continue
            result = model_or_segmenter.segment(scan.points[:, :3], scan.points[:, 3])
            confmat.update(eval_lut[np.asarray(scan.labels) & SEMANTIC_MASK], eval_lut[result.labels])
    return confmat.metrics(classes)


def evaluate_camera(
    model_or_segmenter: nn.Module | _Segmenter,
    frames: Sequence[CameraFrame] | CameraDataset,
    classes: Sequence[ClassInfo],
    *,
    input_spec: CameraInputSpec | None = None,
    model_classes: Sequence[ClassInfo] | None = None,
    device: str | torch.device = 'cpu',
) -> Metrics:
    """Pixel-level scores at the label images' resolution (logits are resized bilinearly to it).

    Arguments as :func:`evaluate_lidar`, with frames and a ``CameraSegmenter``.
    """
    eval_lut = class_lut([c.id for c in classes])
    confmat = ConfusionMatrix(len(classes))
    if isinstance(frames, CameraDataset):
        input_spec = input_spec or frames.spec
        frames = frames.frames
    if isinstance(model_or_segmenter, nn.Module):
        if input_spec is None:
            raise EvaluationError('a torch model needs its CameraInputSpec to be evaluated')
        model_ids = np.array([c.id for c in (model_classes or classes)], np.int64)
        model = model_or_segmenter.eval()
    for i in range(len(frames)):
        frame = frames[i]
        if frame.labels is None:
            continue
        if isinstance(model_or_segmenter, nn.Module):
            rgb = torch.from_numpy(np.array(frame.image)).permute(2, 0, 1).float() / 255.0
            with torch.inference_mode():
                logits = model(normalise_image(rgb, input_spec)[None].to(device))
                logits = F.interpolate(logits, size=frame.labels.shape, mode='bilinear', align_corners=False)
            pred_ids = model_ids[logits.argmax(1)[0].cpu().numpy()]
        else:
            pred_ids = model_or_segmenter.segment(frame.image).labels
        confmat.update(eval_lut[frame.labels], eval_lut[pred_ids])
    return confmat.metrics(classes)


def evaluate_net(
    net: nn.Module, records: Sequence[Any], classes: Sequence[ClassInfo], spec: LidarInputSpec | CameraInputSpec
) -> Metrics:
    """Scores of a torch net on recorded scans or frames, by the modality its input spec names."""
    if isinstance(spec, LidarInputSpec):
        return evaluate_lidar(net, records, classes, input_spec=spec)
    return evaluate_camera(net, records, classes, input_spec=spec)


def _lidar_dataset(
    scans: Sequence[LidarScan] | LidarDataset, spec: LidarInputSpec | None, model_ids: np.ndarray
) -> LidarDataset:
    if isinstance(scans, LidarDataset) and scans.augment is None:
        return scans
    raw = scans.scans if isinstance(scans, LidarDataset) else scans
    spec = spec or (scans.spec if isinstance(scans, LidarDataset) else None)
    if spec is None:
        raise EvaluationError('a torch model needs its LidarInputSpec to be evaluated')
    return LidarDataset(raw, spec, model_ids.tolist())


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def write_report(metrics: Metrics, out_dir: str | Path, title: str = 'Evaluation') -> dict[str, Path]:
    """``metrics.json``, ``metrics.md`` (markdown table), ``iou.png`` and ``confusion.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ('metrics.json', 'metrics.md', 'iou.png', 'confusion.png')}
    paths['metrics.json'].write_text(json.dumps({'title': title, **metrics.to_dict()}, indent=2))
    paths['metrics.md'].write_text(markdown_table(metrics, title))
    _plot_iou(metrics, paths['iou.png'], title)
    _plot_confusion(metrics, paths['confusion.png'], title)
    return paths


def markdown_table(metrics: Metrics, title: str = 'Evaluation') -> str:
    """Per-class IoU and support as a markdown table, mIoU and accuracy underneath."""
    lines = [f'# {title}', '', '| class | id | IoU (%) | support |', '|---|---:|---:|---:|']
    for c, v, s in zip(metrics.classes, metrics.iou, metrics.support, strict=True):
        iou = '–' if np.isnan(v) else f'{100 * v:.1f}'
        lines.append(f'| {c.name}{" (excluded)" if c.id == 0 else ""} | {c.id} | {iou} | {int(s)} |')
    lines += ['', f'**mIoU**: {100 * metrics.miou:.1f} %  ', f'**accuracy**: {100 * metrics.accuracy:.1f} %', '']
    return '\n'.join(lines)


def _plot_iou(metrics: Metrics, path: Path, title: str) -> None:
    classes = metrics.classes[1:]
    iou = np.nan_to_num(metrics.iou[1:]) * 100
    fig = Figure(figsize=(7, 0.3 * len(classes) + 1.5), layout='constrained')
    ax = fig.add_subplot()
    y = np.arange(len(classes))
    ax.barh(y, iou, color=[np.array(c.color) / 255 for c in classes], edgecolor='black', linewidth=0.5)
    ax.axvline(100 * metrics.miou, color='black', linestyle='--', label=f'mIoU {100 * metrics.miou:.1f}')
    ax.set(yticks=y, yticklabels=[c.name for c in classes], xlim=(0, 100), xlabel='IoU (%)', title=title)
    ax.invert_yaxis()
    ax.legend(loc='lower right')
    fig.savefig(path, dpi=100)


def _plot_confusion(metrics: Metrics, path: Path, title: str) -> None:
    names = [c.name for c in metrics.classes]
    h = metrics.confusion.astype(np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        recall = np.nan_to_num(h / h.sum(1, keepdims=True))
    size = 0.45 * len(names) + 2
    fig = Figure(figsize=(size, size), layout='constrained')
    ax = fig.add_subplot()
    image = ax.imshow(recall, cmap='Blues', vmin=0, vmax=1)
    ticks = np.arange(len(names))
    ax.set(xticks=ticks, yticks=ticks, xlabel='predicted', ylabel='ground truth', title=f'{title} (row-normalised)')
    ax.set_xticklabels(names, rotation=90)
    ax.set_yticklabels(names)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=100)
