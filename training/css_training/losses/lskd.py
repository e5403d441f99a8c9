"""LSKD (Wang et al., IEEE TIP 2024): layer-specific distillation for class-incremental segmentation.

Three parts, as read from the authors' train.py (``shared/methods.md``):

- mask-guided distillation (MD): the frozen teacher is run on the input, on a copy with the old-labelled
  positions zeroed and on a copy with the new-labelled positions zeroed; how much a position's teacher feature
  changes says whether it depends on old or on new content; deeper-layer distillation is restricted to the
  old-relevant positions (:func:`md_mask`);
- layer distillation with PLOP's local POD (:func:`local_pod`, :func:`pod_distillation`) and mask-guided context
  distillation with second-order pooling on the penultimate features (:func:`second_order_pool`,
  :func:`context_distillation`);
- trade-off weights learned by regularised gradient equilibrium (:class:`GradientEquilibrium`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

__all__ = [
    'GradientEquilibrium',
    'context_distillation',
    'local_pod',
    'mask_positions',
    'md_mask',
    'pod_distillation',
    'second_order_pool',
]


def _distance(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...] = (1,)) -> torch.Tensor:
    """Euclidean (Frobenius) distance over ``dims``; the epsilon keeps its gradient finite where a == b
    (a student that starts as a copy of its teacher).
    """
    return ((a - b).pow(2).sum(dim=dims) + 1e-12).sqrt()


def mask_positions(x: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) with every channel zeroed where ``drop`` (B, H, W) is True (an image or a range image)."""
    return x * (~drop).unsqueeze(1).to(x.dtype)


def md_mask(
    full: torch.Tensor,
    without_old: torch.Tensor,
    without_new: torch.Tensor,
    old_fraction: torch.Tensor,
    new_fraction: torch.Tensor,
) -> torch.Tensor:
    """(B, H, W) bool: positions whose teacher feature depends on old content.

    d_old = 1 - cos(f(x), f(x without old)), d_new = 1 - cos(f(x), f(x without new)), per position. Per image,
    a position is old-relevant if d_old is above its (1 - old_fraction) quantile, or if d_new is not above its
    (1 - new_fraction) quantile (it does not hinge on new content); the union is kept. A position that changes
    only when new-class content is removed passes neither test.
    """
    squared = full.pow(2).sum(1)

    def cosine_distance(other: torch.Tensor) -> torch.Tensor:
        # From sums of squares: on the CPU a norm over the channel axis (F.cosine_similarity, F.normalize) took
        # ~20x as long, and the four masks of a camera batch cost more than its POD and context terms.
        return 1.0 - (full * other).sum(1) / (squared * other.pow(2).sum(1)).clamp(min=1e-16).sqrt()

    d_old, d_new = cosine_distance(without_old), cosine_distance(without_new)
    flat_old, flat_new = d_old.flatten(1), d_new.flatten(1)
    q_old = torch.stack([torch.quantile(v, 1.0 - float(f)) for v, f in zip(flat_old, old_fraction, strict=True)])
    q_new = torch.stack([torch.quantile(v, 1.0 - float(f)) for v, f in zip(flat_new, new_fraction, strict=True)])
    shape = (-1,) + (1,) * (d_old.dim() - 1)
    return (d_old > q_old.view(shape)) | (d_new <= q_new.view(shape))


def _cells(length: int, cells: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``cells`` equal cells along an axis of ``length``: a (length, cells) matrix whose column j averages
    cell j, and the positions of every cell in order (grids finer than the axis reuse its edge positions).
    """
    edges = torch.linspace(0, length, cells + 1).round().long()
    starts = edges[:-1].clamp(max=length - 1)
    ends = torch.maximum(edges[1:], starts + 1)
    position = torch.arange(length).unsqueeze(1)
    inside = (position >= starts) & (position < ends)
    average = inside.to(like.dtype) / (ends - starts).to(like.dtype)
    index = torch.cat([torch.arange(int(a), int(b)) for a, b in zip(starts, ends, strict=True)])
    return average.to(like.device), index.to(like.device)


def local_pod(feature: torch.Tensor, scales: Sequence[int] = (1, 2, 4)) -> torch.Tensor:
    """PLOP's local POD embedding (B, D) of a (B, C, H, W) feature: squared, then for an s x s grid of cells at
    each scale, each cell's means over width and over height, concatenated and L2-normalised per sample.

    The cells' means of every scale come from two matrix products (means over each column group, over each row
    group) instead of slicing every cell, whose backward filled a zero map per cell; per scale the embedding
    holds every cell's width means, then every cell's height means (a fixed order: the POD distance between
    two embeddings does not depend on it). The feature is made contiguous first: the nets train channels-last,
    and on that layout the products copied it for every scale (a LiDAR lskd batch took 2.29x an lgkd batch
    instead of 2.04x: bench/bench_step_loss.py, docs/lab-notebook.md, sixteenth session).
    """
    x = feature.contiguous().pow(2)
    height, width = x.shape[-2:]
    rows = [_cells(height, s, x) for s in scales]
    cols = [_cells(width, s, x) for s in scales]
    width_means = x @ torch.cat([average for average, _ in cols], dim=1)  # (B, C, H, column cells of all scales)
    height_means = torch.cat([average for average, _ in rows], dim=1).T @ x  # (B, C, row cells of all scales, W)
    parts, start = [], 0
    for s, (_, row_index), (_, col_index) in zip(scales, rows, cols, strict=True):
        per_row, per_col = width_means[..., start : start + s], height_means[..., start : start + s, :]
        # Only a grid finer than the axis repeats positions (its cells reuse the edge ones).
        if len(row_index) > height:
            per_row = per_row[..., row_index, :]
        if len(col_index) > width:
            per_col = per_col[..., col_index]
        parts += [per_row.flatten(1), per_col.flatten(1)]
        start += s
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def pod_distillation(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
    seen_classes: int,
    new_classes: int,
) -> torch.Tensor:
    """Per layer, the Frobenius distance between the POD embeddings of student and teacher features (each
    multiplied by its MD mask, resized to the layer, where one is given), mean over the batch; summed over layers
    and scaled by sqrt(seen_classes / new_classes).
    """
    total = student[0].new_zeros(())
    for s, t, mask in zip(student, teacher, masks, strict=True):
        t = t.detach()
        if mask is not None:
            m = F.interpolate(mask[:, None].float(), size=s.shape[-2:], mode='nearest')
            s, t = s * m, t * m
        total = total + _distance(local_pod(s), local_pod(t)).mean()
    return total * math.sqrt(seen_classes / max(new_classes, 1))


def second_order_pool(feature: torch.Tensor, groups: int = 8, kernel: int = 5, stride: int = 2) -> torch.Tensor:
    """Local channel Gram matrices (B, G, c, c, H', W'): channels split into ``groups``, average-pooled
    (kernel x kernel, ``stride``), and the outer product of each group's channel vector taken at each position.
    """
    b, c = feature.shape[:2]
    groups = math.gcd(groups, c)
    # Contiguous: on a channels-last feature the pooling and its backward took ~1.8x as long (see local_pod).
    pooled = F.avg_pool2d(feature.contiguous(), kernel, stride, padding=kernel // 2)
    v = pooled.view(b, groups, c // groups, *pooled.shape[-2:])
    return v.unsqueeze(3) * v.unsqueeze(2)


def context_distillation(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None, groups: int = 8
) -> torch.Tensor:
    """Frobenius distance between second-order pooled student and teacher features (masked by MD), averaged
    over positions and the batch.
    """
    teacher = teacher.detach()
    if mask is not None:
        m = mask[:, None].to(student.dtype)
        student, teacher = student * m, teacher * m
    return _distance(second_order_pool(student, groups), second_order_pool(teacher, groups), dims=(2, 3)).mean()


class GradientEquilibrium(nn.Module):
    """Learned trade-off weights w_i of the loss terms, trained by a regularised GradNorm objective.

    For term i acting on shared parameter W_i: G_i = w_i * mean_j |dL_i/dW_ij|, the weighted gradient's size per
    element (the reference's train.py takes the per-element mean of w_i * dL_i/dW, signed; the absolute value
    keeps it a size). Targets mean(G) * r_i^alpha per group of terms (output terms, layer terms),
    r_i = (L_i / L_i(0)) normalised to mean 1 in its group. Objective:
    ``scale`` * sum_i |G_i - target_i| + gamma * |w_ce - ratio * w_kd| + beta * sum_l relu(1.25 * w_l - w_{l+1})
    over ``layer_order`` (shallow to deep); scale 10 and alpha = gamma = beta = 0.5 are the reference's.

    The update follows the reference's schedule, not GradNorm's paper: there the weights are parameters of the
    model's optimizer (SGD, momentum 0.9, Nesterov, weight decay 1e-4), so they step at the model's learning
    rate (:attr:`lr`, set by the training loop); L_i(0) are the losses of the first epoch's last batch (r_i = 1
    during the first epoch); the weights are renormalised to sum to the number of terms at the end of each epoch
    (:meth:`end_epoch`), not after every update. An earlier version stepped them with Adam at 0.025 and
    renormalised after every update: Adam's sign-sized steps let the balancing term move every weight by ~lr per
    batch however small its gradient, and w_ce / w_kd fell to ~0.003 / 0.02 in lgkd+lskd steps (docs/lab-notebook.md).
    """

    def __init__(
        self,
        groups: Mapping[str, str],
        alpha: float = 0.5,
        gamma: float = 0.5,
        beta: float = 0.5,
        ce_kd: tuple[str, str, float] | None = None,
        layer_order: Sequence[str] = (),
        scale: float = 10.0,
        lr: float = 0.0,
    ) -> None:
        super().__init__()
        self.names = list(groups)
        self.groups = dict(groups)
        self.alpha, self.gamma, self.beta, self.scale = alpha, gamma, beta, scale
        self.ce_kd = ce_kd
        self.layer_order = list(layer_order)
        self.lr = lr
        self.weights = nn.Parameter(torch.ones(len(self.names)))
        self.register_buffer('initial', torch.zeros(len(self.names)))
        self.register_buffer('started', torch.zeros((), dtype=torch.bool))
        self.optimizer = torch.optim.SGD([self.weights], lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)

    def weight(self, name: str) -> torch.Tensor:
        return self.weights[self.names.index(name)]

    def weighted(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """sum_i w_i L_i, the weights detached: the model's loss (weights learn only through :meth:`update`)."""
        return sum(self.weights[i].detach() * losses[n] for i, n in enumerate(self.names))  # type: ignore[return-value]

    def update(self, losses: Mapping[str, torch.Tensor], shared: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One step on the weights; ``shared[name]`` is the parameter term ``name`` acts on. Call before the
        model's backward (the graphs are kept). Returns the objective's value.
        """
        values = torch.stack([losses[n].detach() for n in self.names])
        if not bool(self.started):  # the first epoch: its last batch's losses become L(0)
            self.initial.copy_(values.clamp(min=1e-12))
        norms = []
        for n in self.names:
            (grad,) = torch.autograd.grad(losses[n], shared[n], retain_graph=True, allow_unused=True)
            norms.append(grad.abs().mean() if grad is not None else values.new_zeros(()))
        g = self.weights * torch.stack(norms).detach()
        ratio = values / self.initial
        objective = g.new_zeros(())
        for group in sorted(set(self.groups.values())):
            idx = [i for i, n in enumerate(self.names) if self.groups[n] == group]
            r = ratio[idx] / ratio[idx].mean()
            target = (g[idx].mean() * r.pow(self.alpha)).detach()
            objective = objective + self.scale * (g[idx] - target).abs().sum()
        if self.ce_kd is not None:
            ce, kd, scale = self.ce_kd
            objective = objective + self.gamma * (self.weight(ce) - scale * self.weight(kd)).abs()
        for shallow, deep in itertools.pairwise(self.layer_order):
            objective = objective + self.beta * F.relu(1.25 * self.weight(shallow) - self.weight(deep))
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward(inputs=[self.weights])
        for group in self.optimizer.param_groups:
            group['lr'] = self.lr
        self.optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
        return objective.detach()

    def end_epoch(self) -> None:
        """Renormalises the weights to sum to the number of terms and fixes L(0) after the first epoch."""
        with torch.no_grad():
            self.weights.mul_(len(self.names) / self.weights.sum())
        self.started.fill_(True)
