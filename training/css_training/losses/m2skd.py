"""M2SKD (Qiu et al., ICRA 2023): distilling a multi-scan teacher into the single-scan student.

Our adaptation to range images: teacher and student outputs are compared at the student's points: at student
pixels that hold a point (``valid``), against the teacher pixel the same point falls in (:func:`at_student_pixels`;
the same pixel where the teacher image has the student's size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

__all__ = ['affinity_kd', 'at_student_pixels', 'feature_kd', 'logit_kd']


def at_student_pixels(teacher: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) values of a (B, C, H', W') teacher map at the flat teacher pixels ``pixel`` (B, H, W)."""
    b, c = teacher.shape[:2]
    index = pixel.flatten(1).unsqueeze(1).expand(b, c, -1)
    return teacher.flatten(2).gather(2, index).view(b, c, *pixel.shape[1:])


def logit_kd(
    student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, scale: float = 0.3, floor: float = 0.01
) -> torch.Tensor:
    """Per position sum_k p^T_k |log(p^T_k / p^S_k)| with p = softmax(scale * logits); positions whose loss is
    <= ``floor`` are dropped (the reference's 0.3 and 0.01); mean over the rest. Only the student gets gradients.
    """
    log_t = torch.log_softmax(scale * teacher.detach(), dim=1)
    log_s = torch.log_softmax(scale * student, dim=1)
    per_position = (log_t.exp() * (log_t - log_s).abs()).sum(dim=1)
    keep = valid & (per_position > floor)
    return per_position[keep].sum() / keep.sum().clamp(min=1)


def feature_kd(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared L2 distance between (B, C, H, W) features at valid positions (feature maps of equal size)."""
    if student.shape[-2:] != valid.shape[-2:]:
        valid = F.interpolate(valid[:, None].float(), size=student.shape[-2:], mode='nearest')[:, 0].bool()
    squared = (student - teacher.detach()).pow(2).sum(dim=1)
    return squared[valid].sum() / valid.sum().clamp(min=1)


def affinity_kd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    groups: torch.Tensor,
    max_points: int = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Instance-aware affinity: for each group (an instance of a hard class; ids > 0 in ``groups`` (B, H, W)),
    the cosine-similarity matrix among its positions' (B, C, H, W) feature vectors, for student and teacher;
    mean L1 difference, averaged over groups. Groups larger than ``max_points`` are subsampled.
    """
    losses = []
    for b in range(groups.shape[0]):
        ids = groups[b]
        for group in torch.unique(ids[ids > 0]):  # a loop over objects, not points
            where = torch.nonzero(ids == group, as_tuple=True)
            if len(where[0]) < 2:
                continue
            if len(where[0]) > max_points:
                pick = torch.randperm(len(where[0]), generator=generator)[:max_points]
                where = (where[0][pick], where[1][pick])
            s = F.normalize(student[b][:, where[0], where[1]].T, dim=1)
            t = F.normalize(teacher[b][:, where[0], where[1]].T.detach(), dim=1)
            losses.append((s @ s.T - t @ t.T).abs().mean())
    return torch.stack(losses).mean() if losses else student.sum() * 0.0
