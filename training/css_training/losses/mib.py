"""MiB (Cermelli et al., CVPR 2020): the background shift handled in the loss and in the classifier's init.

Notation of ``shared/methods.md``: the old model has C_old channels (0 = background), the new one C_old + C_new,
old channels first. Labels are 0 (background, which now also covers every old class), a new class index
>= C_old, or ``ignore_index``. Losses are per position (pixel, or range-image pixel for LiDAR) and averaged over
valid positions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from css_training.losses.segmentation import IGNORE_INDEX

__all__ = ['mib_extend_classifier', 'unbiased_cross_entropy', 'unbiased_kd']


def _valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return values[valid].sum() / valid.sum().clamp(min=1)


def unbiased_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    old_classes: int,
    ignore_index: int = IGNORE_INDEX,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """MiB's unbiased CE: where y < C_old, loss = -log sum_{k < C_old} q_k; where y = c (new), -log q_c.

    Labels of old classes are folded into background, as the reference does (their data is not supposed to
    carry them). With ``old_classes`` = 1 this is plain cross-entropy. ``weight`` (C,) weighs positions by
    their class (background's weight for the folded group) and normalises by the summed weights, as
    ``F.cross_entropy`` does: rare new classes need it here as much as in base training.
    """
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_norm = torch.logsumexp(logits, dim=1)
    log_old = torch.logsumexp(logits[:, :old_classes], dim=1) - log_norm
    log_picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1) - log_norm
    log_prob = torch.where(safe < old_classes, log_old, log_picked)
    if weight is None:
        return _valid_mean(-log_prob, valid)
    w = weight[torch.where(safe < old_classes, torch.zeros_like(safe), safe)] * valid
    return (-log_prob * w).sum() / w.sum().clamp(min=1e-12)


def unbiased_kd(
    logits: torch.Tensor, old_logits: torch.Tensor, valid: torch.Tensor | None = None, alpha: float = 1.0
) -> torch.Tensor:
    """MiB's unbiased KD: -(1/C_old) sum_{k < C_old} p_k log q~_k, with q~_0 = q_0 + sum_{c new} q_c.

    ``old_logits`` come from the frozen old model (detached here, so no gradient reaches it); ``alpha`` scales
    them before the softmax. ``valid`` (B, ...) bool restricts the mean (e.g. to range-image pixels with a point).
    """
    old_classes = old_logits.shape[1]
    p = torch.softmax(alpha * old_logits.detach(), dim=1)
    log_norm = torch.logsumexp(logits, dim=1, keepdim=True)
    background = torch.cat([logits[:, :1], logits[:, old_classes:]], dim=1)
    log_bg = torch.logsumexp(background, dim=1, keepdim=True) - log_norm
    log_q = torch.cat([log_bg, logits[:, 1:old_classes] - log_norm], dim=1)
    per_position = -(p * log_q).sum(dim=1) / old_classes
    if valid is None:
        valid = torch.ones_like(per_position, dtype=torch.bool)
    return _valid_mean(per_position, valid)


def mib_extend_classifier(classifier: nn.Conv2d, new_classes: int) -> nn.Conv2d:
    """A 1x1 classifier with ``new_classes`` more output channels, initialised as MiB does.

    New channels copy the background's weights; their biases and the background's become
    b_0 - log(C_new + 1). The background's probability mass is then split evenly over itself and the new
    channels, so softmax over (old channels, with the new ones summed into background) equals the old model's.
    """
    old = classifier.out_channels
    grown = nn.Conv2d(classifier.in_channels, old + new_classes, 1, bias=True)
    with torch.no_grad():
        weight, bias = classifier.weight, classifier.bias
        if bias is None:
            bias = torch.zeros(old, dtype=weight.dtype, device=weight.device)
        grown.weight[:old] = weight
        grown.weight[old:] = weight[:1]
        shifted = bias[0] - math.log(new_classes + 1)
        grown.bias[:old] = bias
        grown.bias[0] = shifted
        grown.bias[old:] = shifted
    return grown.to(classifier.weight.device)
