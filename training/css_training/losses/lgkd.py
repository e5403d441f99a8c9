"""LGKD (Yang et al., ICCV 2023): the old model's output expanded to the new class set and transplanted where the
current label names a new class, then distilled into the new model (in place of MiB's unbiased KD).
"""

from __future__ import annotations

import torch

from css_training.losses.segmentation import IGNORE_INDEX

__all__ = ['lgkd_loss', 'lgkd_target']


def lgkd_target(
    old_logits: torch.Tensor,
    target: torch.Tensor,
    new_classes: int,
    alpha: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """The distillation target (B, C_old + C_new, ...): softmax(alpha * old logits) padded with C_new zeros;
    where y = c is a new class, target_c = p_0 and target_0 = 0 ("expand and transplant"). Sums to 1 everywhere.
    """
    old_classes = old_logits.shape[1]
    p = torch.softmax(alpha * old_logits.detach(), dim=1)
    shape = list(p.shape)
    shape[1] = new_classes
    padded = torch.cat([p, p.new_zeros(shape)], dim=1)
    is_new = (target >= old_classes) & (target != ignore_index)
    channel = torch.where(is_new, target, torch.zeros_like(target)).unsqueeze(1)
    moved = padded.scatter(1, channel, p[:, :1])
    moved[:, :1] = 0.0
    return torch.where(is_new.unsqueeze(1), moved, padded)


def lgkd_loss(
    logits: torch.Tensor,
    old_logits: torch.Tensor,
    target: torch.Tensor,
    prev_kd: float = 10.0,
    novel_kd: float = 1.0,
    alpha: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Soft cross-entropy -sum_k t_k log q_k against :func:`lgkd_target` over all channels; positions labelled
    background weigh ``prev_kd``, new-class positions ``novel_kd`` (the defaults of the reference's loss class are
    10 and 1; its 15-5 script passes 5 and 1); mean over valid positions. The reference's trainer applies it
    to DeepLab-v3's logits at output stride 16 (``sem_logits_small``, labels nearest-downsampled by 16), the
    logits its output is bilinearly upsampled from; the nets here make their logits at input resolution through
    a decoder, so the loss runs at that resolution.
    """
    old_classes = old_logits.shape[1]
    new_classes = logits.shape[1] - old_classes
    soft = lgkd_target(old_logits, target, new_classes, alpha, ignore_index)
    per_position = -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1)
    valid = target != ignore_index
    weight = torch.where(target >= old_classes, novel_kd, prev_kd) * valid
    return (per_position * weight).sum() / valid.sum().clamp(min=1)
