"""The continual-learning losses on hand-computed cases and the properties listed in shared/methods.md."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from css_training.losses.lgkd import lgkd_loss, lgkd_target
from css_training.losses.lskd import (
    GradientEquilibrium,
    context_distillation,
    local_pod,
    mask_positions,
    md_mask,
    pod_distillation,
    second_order_pool,
)
from css_training.losses.m2skd import affinity_kd, feature_kd, logit_kd
from css_training.losses.mib import mib_extend_classifier, unbiased_cross_entropy, unbiased_kd


def logits_of(probs: list[list[float]]) -> torch.Tensor:
    """(1, K, 1, N) logits whose softmax over K is the given (N, K) probabilities."""
    return torch.log(torch.tensor(probs, dtype=torch.float64)).T[None, :, None, :]


# --- MiB ------------------------------------------------------------------------------------------------


def test_unbiased_ce_on_a_hand_computed_case() -> None:
    # Old model: background + 1 old class (C_old = 2); one new class (index 2).
    q = [[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.7, 0.2, 0.1]]
    target = torch.tensor([[[0, 2, 255]]])
    loss = unbiased_cross_entropy(logits_of(q), target, old_classes=2)
    expected = (-math.log(0.2 + 0.3) - math.log(0.3)) / 2  # the ignored position is left out
    assert float(loss) == pytest.approx(expected)
    # An old-class label is folded into background: same as label 0.
    assert float(unbiased_cross_entropy(logits_of(q), torch.tensor([[[1, 2, 255]]]), 2)) == pytest.approx(expected)


def test_unbiased_ce_with_only_background_old_is_plain_ce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5)
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 0, 0] = 255
    assert torch.allclose(
        unbiased_cross_entropy(logits, target, old_classes=1), F.cross_entropy(logits, target, ignore_index=255)
    )
    weight = torch.tensor([0.5, 1.0, 3.0, 2.0])
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert torch.allclose(unbiased_cross_entropy(logits, target, old_classes=1, weight=weight), expected)


def test_unbiased_kd_on_a_hand_computed_case_and_no_teacher_gradient() -> None:
    q = [[0.2, 0.3, 0.5]]  # new model: bg, old, new
    p = [[0.6, 0.4]]  # old model: bg, old
    old_logits = logits_of(p).requires_grad_(True)
    loss = unbiased_kd(logits_of(q), old_logits)
    expected = -(0.6 * math.log(0.2 + 0.5) + 0.4 * math.log(0.3)) / 2
    assert float(loss) == pytest.approx(expected)
    new_logits = logits_of(q).requires_grad_(True)
    unbiased_kd(new_logits, old_logits).backward()
    assert old_logits.grad is None
    assert new_logits.grad is not None


def test_mib_init_reproduces_the_old_output() -> None:
    torch.manual_seed(1)
    old = nn.Conv2d(8, 4, 1)
    grown = mib_extend_classifier(old, new_classes=3)
    x = torch.randn(2, 8, 5, 6)
    p_old = torch.softmax(old(x), dim=1)
    q = torch.softmax(grown(x), dim=1)
    merged = torch.cat([q[:, :1] + q[:, 4:].sum(1, keepdim=True), q[:, 1:4]], dim=1)
    assert torch.allclose(merged, p_old, atol=1e-6)
    assert torch.equal(grown.weight[4:], old.weight[:1].expand(3, -1, -1, -1))
    assert torch.allclose(grown.bias[4:], old.bias[0] - math.log(4))


# --- LGKD -----------------------------------------------------------------------------------------------


def test_lgkd_target_expands_and_transplants() -> None:
    torch.manual_seed(2)
    old_logits = torch.randn(2, 3, 4, 5)  # C_old = 3
    target = torch.randint(0, 3, (2, 4, 5))
    target = torch.where(target == 1, torch.tensor(3), target)  # some positions of new class 3
    target = torch.where(target == 2, torch.tensor(4), target)  # and new class 4
    target[0, 0, 0] = 255
    soft = lgkd_target(old_logits, target, new_classes=2)
    p = torch.softmax(old_logits, dim=1)
    assert soft.shape == (2, 5, 4, 5)
    assert torch.allclose(soft.sum(1), torch.ones(2, 4, 5))
    bg = target == 0
    assert torch.equal(soft[:, :3].permute(0, 2, 3, 1)[bg], p.permute(0, 2, 3, 1)[bg])
    assert (soft[:, 3:].permute(0, 2, 3, 1)[bg] == 0).all()
    for c in (3, 4):
        at = target == c
        moved = soft.permute(0, 2, 3, 1)[at]
        assert torch.equal(moved[:, c], p[:, 0][at])
        assert (moved[:, 0] == 0).all()
        assert torch.equal(moved[:, 1:3], p.permute(0, 2, 3, 1)[at][:, 1:3])


def test_lgkd_loss_weights_and_ignore() -> None:
    torch.manual_seed(3)
    logits = torch.randn(1, 4, 2, 3, requires_grad=True)
    old_logits = torch.randn(1, 3, 2, 3, requires_grad=True)
    target = torch.tensor([[[0, 0, 3], [255, 0, 3]]])
    loss = lgkd_loss(logits, old_logits, target, prev_kd=10.0, novel_kd=1.0)
    soft = lgkd_target(old_logits, target, 1)
    per = -(soft * torch.log_softmax(logits, 1)).sum(1)[0]
    weights = torch.tensor([[10.0, 10.0, 1.0], [0.0, 10.0, 1.0]])
    assert float(loss.detach()) == pytest.approx(float((per * weights).sum().detach() / 5))
    loss.backward()
    assert old_logits.grad is None
    # All background: KD towards the padded old distribution, weighted by prev_kd.
    zeros = torch.zeros(1, 2, 3, dtype=torch.long)
    padded = torch.cat([torch.softmax(old_logits, 1), torch.zeros(1, 1, 2, 3)], 1)
    expected = -(padded * torch.log_softmax(logits, 1)).sum(1).mean() * 10
    assert float(lgkd_loss(logits, old_logits, zeros).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


# --- M2SKD ----------------------------------------------------------------------------------------------


def test_logit_kd_is_zero_for_equal_logits_and_positive_otherwise() -> None:
    torch.manual_seed(4)
    logits = torch.randn(2, 5, 3, 4)
    valid = torch.ones(2, 3, 4, dtype=torch.bool)
    assert float(logit_kd(logits, logits.clone(), valid)) == 0.0
    student = (logits + torch.randn_like(logits) * 3).requires_grad_(True)
    teacher = logits.clone().requires_grad_(True)
    loss = logit_kd(student, teacher, valid)
    assert loss.item() > 0.01
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None
    # Hand-computed at one position: p = softmax(0.3 * l).
    t, s = torch.tensor([[[[2.0]], [[0.0]]]]), torch.tensor([[[[0.0]], [[0.0]]]])
    pt = torch.softmax(0.3 * torch.tensor([2.0, 0.0]), 0)
    expected = float((pt * (pt.log() - math.log(0.5)).abs()).sum())
    assert float(logit_kd(s, t, torch.ones(1, 1, 1, dtype=torch.bool))) == pytest.approx(expected)


def test_affinity_kd_is_invariant_to_feature_scale_and_counts_groups() -> None:
    torch.manual_seed(5)
    feats = torch.randn(1, 6, 4, 4)
    groups = torch.zeros(1, 4, 4, dtype=torch.long)
    groups[0, :2, :2] = 1
    groups[0, 2:, 2:] = 2
    assert float(affinity_kd(feats * 7.5, feats, groups)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(1, 6, 4, 4)
    assert float(affinity_kd(other, feats, groups)) > 0
    changed_outside = feats.clone()
    changed_outside[0, :, 0, 3] += 100.0  # a position in no group
    assert float(affinity_kd(changed_outside, feats, groups)) == pytest.approx(0.0, abs=1e-6)
    assert float(affinity_kd(other, feats, torch.zeros_like(groups))) == 0.0


def test_feature_kd_counts_only_valid_positions() -> None:
    s, t = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    s[0, :, 0, 0] = torch.tensor([3.0, 4.0])
    s[0, :, 1, 1] = 100.0
    valid = torch.tensor([[[True, True], [False, False]]])
    assert float(feature_kd(s, t, valid)) == pytest.approx(25.0 / 2)


# --- LSKD -----------------------------------------------------------------------------------------------


def test_md_mask_drops_positions_that_hinge_on_new_content_only() -> None:
    # Hand-built teacher features over 1 x 6 positions: 0-1 react to removing old content, 4-5 only to removing
    # new content, 2-3 to neither.
    full = torch.ones(1, 2, 1, 6)
    without_old = full.clone()
    without_old[0, 0, 0, :2] = -1.0
    without_new = full.clone()
    without_new[0, 0, 0, 4:] = -1.0
    keep = md_mask(full, without_old, without_new, torch.tensor([2 / 6]), torch.tensor([2 / 6]))
    assert keep[0, 0].tolist() == [True, True, True, True, False, False]
    x = torch.ones(1, 3, 1, 6)
    assert mask_positions(x, ~keep)[0, :, 0].sum(0).tolist() == [3, 3, 3, 3, 0, 0]


def test_pod_is_zero_for_identical_features_and_sees_spatial_change() -> None:
    torch.manual_seed(6)
    f = torch.randn(2, 4, 8, 8)
    assert float(pod_distillation([f], [f.clone()], [None], 10, 2)) == pytest.approx(0.0, abs=1e-5)
    # Within the 1x1 cell the width-pooled part ignores column order; the 2x2 and 4x4 cells do not.
    swapped = f[..., torch.tensor([7, 1, 2, 3, 4, 5, 6, 0])]
    assert not torch.allclose(local_pod(swapped), local_pod(f))
    assert torch.allclose(local_pod(f, scales=(1,))[:, : 4 * 8], local_pod(swapped, scales=(1,))[:, : 4 * 8])
    s = f.clone().requires_grad_(True)
    t = torch.randn_like(f).requires_grad_(True)
    loss = pod_distillation([s], [t], [torch.ones(2, 8, 8, dtype=torch.bool)], seen_classes=8, new_classes=2)
    loss.backward()
    assert t.grad is None
    assert s.grad is not None
    plain = pod_distillation([f], [t.detach()], [None], 8, 2)
    assert loss.item() == pytest.approx(plain.item())
    assert float(pod_distillation([f], [t.detach()], [None], 2, 2)) == pytest.approx(float(plain) / 2)


def _pod_by_cells(feature: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """PLOP's local POD written cell by cell, as the definition reads."""
    x = feature.pow(2)
    height, width = x.shape[-2:]
    parts = []
    for s in scales:
        rows = torch.linspace(0, height, s + 1).round().long().tolist()
        cols = torch.linspace(0, width, s + 1).round().long().tolist()
        for r0, r1 in itertools.pairwise(rows):
            for c0, c1 in itertools.pairwise(cols):
                r0, c0 = min(r0, height - 1), min(c0, width - 1)
                cell = x[..., r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)]
                parts += [cell.mean(dim=3).flatten(1), cell.mean(dim=2).flatten(1)]
    return F.normalize(torch.cat(parts, dim=1), dim=1)


@pytest.mark.parametrize('shape', [(2, 3, 8, 8), (2, 3, 6, 10), (1, 2, 3, 7)])
def test_pod_holds_every_cells_means(shape: tuple[int, ...]) -> None:
    """Same values as the cell-by-cell definition (a 3-row map under a 4 x 4 grid reuses its edge rows), and
    so the same distance between two features.
    """
    torch.manual_seed(9)
    a, b = torch.randn(shape), torch.randn(shape)
    scales = (1, 2, 4)
    fast, slow = local_pod(a, scales), _pod_by_cells(a, scales)
    assert fast.shape == slow.shape
    assert torch.allclose(fast.sort(dim=1).values, slow.sort(dim=1).values, atol=1e-6)
    # The nets train channels-last: the embedding does not depend on the layout.
    assert torch.allclose(local_pod(a.contiguous(memory_format=torch.channels_last), scales), fast, atol=1e-6)
    distance = (local_pod(a, scales) - local_pod(b, scales)).norm(dim=1)
    assert torch.allclose(distance, (slow - _pod_by_cells(b, scales)).norm(dim=1), atol=1e-5)


def test_second_order_pooling_of_a_rank_one_feature_is_rank_one() -> None:
    torch.manual_seed(7)
    direction = torch.randn(8)
    strength = torch.rand(1, 1, 6, 6) + 0.5
    feature = direction.view(1, 8, 1, 1) * strength  # rank 1: one channel vector everywhere
    gram = second_order_pool(feature, groups=1)  # (1, 1, 8, 8, 3, 3)
    per_position = gram[0, 0].permute(2, 3, 0, 1).reshape(-1, 8, 8)
    assert (torch.linalg.matrix_rank(per_position.double(), rtol=1e-6) == 1).all()
    assert float(context_distillation(feature, feature.clone())) == pytest.approx(0.0, abs=1e-5)
    assert float(context_distillation(feature, 2 * feature)) > 0


def test_gradient_equilibrium_equalises_weighted_gradients() -> None:
    torch.manual_seed(8)
    shared = nn.Parameter(torch.randn(4))
    balance = GradientEquilibrium({'a': 'out', 'b': 'out'}, alpha=0.0, lr=1e-4)
    for _ in range(500):
        losses = {'a': (2 * shared).pow(2).sum(), 'b': shared.pow(2).sum()}
        balance.update(losses, {'a': shared, 'b': shared})
    balance.end_epoch()
    wa, wb = balance.weight('a').item(), balance.weight('b').item()
    ga = wa * (8 * shared).norm().item()  # d/ds (2s)^2 = 8s
    gb = wb * (2 * shared).norm().item()
    assert wb > 3 * wa  # equilibrium: wa = 0.4, wb = 1.6
    assert ga == pytest.approx(gb, rel=0.1)
    assert wa + wb == pytest.approx(2.0)


def test_gradient_equilibrium_orders_layer_weights_when_beta_is_large() -> None:
    torch.manual_seed(9)
    layers = [nn.Parameter(torch.randn(3)) for _ in range(3)]
    names = ['l1', 'l2', 'l3']
    balance = GradientEquilibrium(dict.fromkeys(names, 'layer'), beta=1000.0, layer_order=names, lr=1e-6)
    for _ in range(500):
        # The shallow layer's term has the smallest gradient: GradNorm alone would weight it most.
        losses = {n: (scale * p).pow(2).sum() for n, p, scale in zip(names, layers, (1.0, 2.0, 4.0), strict=True)}
        balance.update(losses, dict(zip(names, layers, strict=True)))
    balance.end_epoch()
    w = [balance.weight(n).item() for n in names]
    assert w[1] >= 1.25 * w[0] * 0.97
    assert w[2] >= 1.25 * w[1] * 0.97
    assert np.isclose(sum(w), 3.0)
