"""Segmentation losses of base training: class-weighted cross-entropy and Lovász-softmax."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

__all__ = ['IGNORE_INDEX', 'SegmentationLoss', 'class_weights', 'lovasz_softmax']

IGNORE_INDEX = 255


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Lovász-softmax loss (Berman et al. 2018), averaged over the classes present in ``target``.

    The Lovász extension of the Jaccard loss: per class, the errors |fg - p| sorted in decreasing order,
    dotted with the gradient of the Jaccard index along that order. All classes are sorted at once (one
    column each), so the cost is one sort of a (pixels, K) matrix.

    Args:
        probs: (B, K, ...) class probabilities (softmax of the logits).
        target: (B, ...) class indices; ``ignore_index`` pixels are left out.
        ignore_index: label of pixels without a target.
    """
    num_classes = probs.shape[1]
    probs = probs.movedim(1, -1).reshape(-1, num_classes)
    target = target.reshape(-1)
    valid = target != ignore_index
    probs, target = probs[valid], target[valid]
    if target.numel() == 0:
        return probs.sum() * 0.0
    fg = F.one_hot(target, num_classes).to(probs.dtype)
    errors, order = (fg - probs).abs().sort(dim=0, descending=True, stable=True)
    fg_sorted = fg.gather(0, order)
    gts = fg_sorted.sum(0)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    per_class = (errors * grad).sum(0)
    return per_class[gts > 0].mean()


def class_weights(counts: Sequence[int] | np.ndarray, power: float = 0.5) -> torch.Tensor:
    """Cross-entropy weights ``frequency ** -power`` (0.5: inverse square root), normalised so the average
    weight over the labelled pixels is 1. Classes absent from the counts get the largest present weight.
    """
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    present = counts > 0
    if not present.any():
        return torch.ones(len(counts))
    freq = counts / counts.sum()
    weights = torch.zeros_like(freq)
    weights[present] = freq[present] ** -power
    weights[~present] = weights[present].max()
    return (weights / (freq * weights).sum()).float()


class SegmentationLoss(nn.Module):
    """Weighted cross-entropy + ``lovasz_weight`` x Lovász-softmax; returns the total and its parts."""

    def __init__(self, weight: torch.Tensor | None = None, lovasz_weight: float = 1.0) -> None:
        super().__init__()
        self.register_buffer('weight', weight)
        self.lovasz_weight = lovasz_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = logits.float()
        ce = F.cross_entropy(logits, target, weight=self.weight, ignore_index=IGNORE_INDEX)
        out = {'ce': ce}
        loss = ce
        if self.lovasz_weight:
            out['lovasz'] = lovasz_softmax(logits.softmax(1), target)
            loss = loss + self.lovasz_weight * out['lovasz']
        out['loss'] = loss
        return out
