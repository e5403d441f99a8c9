"""A continual step (``css-train add-classes``): a deployed model learns new classes from recordings in which
only the new classes are labelled, without its old data.

The previous model is the frozen teacher; the student is a copy with a classifier grown by MiB's
initialisation. Methods (``+``-joined) pick the loss terms of ``shared/methods.md``:

- ``finetune``: plain CE on the new labels (forgets; the lower bound). ``joint``: plain CE on every class's
  labels (the data's full annotation; the upper bound, not available in real use). Each stands alone.
- ``mib``: unbiased CE + unbiased KD. ``lgkd``: unbiased CE + LGKD (replaces the unbiased KD).
- ``lskd``: POD layer distillation and context distillation, both masked by MD, with learned trade-off weights
  (:class:`css_training.losses.lskd.GradientEquilibrium`) over every term; adds MiB's KD unless ``lgkd`` is on.
  The equilibrium's tie w_CE = (C_new / C_old) w_KD is the reference's for MiB's KD, a mean over the old
  channels; LGKD's KD is a sum over all channels that already weighs background positions ``lgkd_prev`` times
  the new ones, so with ``lgkd`` the tie is left out: kept, it held w_CE at 0.39 against w_KD 1.02 and the
  camera step learned no new class; without it they end at ~1.1 and ~0.3 (docs/lab-notebook.md, sixth session).
- ``m2skd`` (LiDAR): a multi-scan teacher that sees the scan with the hard-class instances of its neighbours
  fused in, distilled into the student by logit, affinity (and feature) terms. It needs a pose for every scan.

The defaults are the issue's combinations: ``lgkd+m2skd`` for LiDAR, ``lgkd+lskd`` for camera (docs/results.md
has how they compare). A LiDAR recording without poses cannot feed M2SKD's teacher, so there the LiDAR default
runs as ``lgkd`` alone, with a warning; any other method with ``m2skd`` is refused on such a recording.
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from css_perception.core.metadata import ClassInfo, Modality
from css_perception.core.ontology import Ontology
from css_training.checkpoint import get_rng_state, save_checkpoint
from css_training.config import ConfigError, ContinualSection, RunConfig, plain_values
from css_training.data.errors import DataError
from css_training.data.fusion import rare_classes
from css_training.datasets import MultiScanDataset, read_records, run_dataset
from css_training.evaluate import Metrics, evaluate_net
from css_training.losses.lgkd import lgkd_loss
from css_training.losses.lskd import (
    GradientEquilibrium,
    context_distillation,
    mask_positions,
    md_mask,
    pod_distillation,
)
from css_training.losses.m2skd import affinity_kd, at_student_pixels, feature_kd, logit_kd
from css_training.losses.mib import mib_extend_classifier, unbiased_cross_entropy, unbiased_kd
from css_training.losses.segmentation import IGNORE_INDEX, class_weights
from css_training.models import ModelConfig, SegmentationNet, build_model
from css_training.train import TrainError, choose_device, place_model, seed_everything

__all__ = [
    'DEFAULT_LGKD_PREV',
    'DEFAULT_METHODS',
    'METHODS',
    'StepLoss',
    'add_classes',
    'grow_model',
    'parse_methods',
    'step_config',
]

_log = logging.getLogger(__name__)

METHODS = ('finetune', 'joint', 'mib', 'lgkd', 'lskd', 'm2skd')
DEFAULT_METHODS = {Modality.LIDAR: 'lgkd+m2skd', Modality.CAMERA: 'lgkd+lskd'}
# LGKD's background-position weight (``continual.lgkd_prev``) unless a config sets it: the reference's two-step
# script's 5 on LiDAR; 2 on camera, whose base gives more of the new objects to old classes (background
# probability 0.22-0.37 at their pixels, LiDAR's 0.48-0.90), so that LGKD's target there holds them on those
# classes: at 5 the camera step learned 21.5 new-class mIoU, at 2 28.4, with the old classes kept within a point
# (docs/lab-notebook.md, seventeenth session; thirteenth before sky was a class).
DEFAULT_LGKD_PREV = {Modality.LIDAR: 5.0, Modality.CAMERA: 2.0}
Batch = Sequence[torch.Tensor]
LossFn = Callable[[SegmentationNet, Batch], dict[str, torch.Tensor]]


def parse_methods(text: str | None, modality: Modality) -> frozenset[str]:
    """The set of methods in a ``+``-joined list (the modality's default when None).

    Raises:
        ConfigError: an unknown method, finetune/joint combined with another, or m2skd on camera.
    """
    names = frozenset((text or DEFAULT_METHODS[modality]).split('+'))
    unknown = sorted(names - set(METHODS))
    if unknown:
        msg = f'unknown method(s) {unknown}; known: {list(METHODS)} joined with +'
        raise ConfigError(msg)
    if names & {'finetune', 'joint'} and len(names) > 1:
        raise ConfigError('finetune and joint are baselines: use each on its own')
    if 'm2skd' in names and modality is not Modality.LIDAR:
        raise ConfigError('m2skd needs LiDAR scans with poses (its teacher fuses neighbouring scans)')
    return names


def step_config(
    settings: Mapping[str, Any],
    parent: Mapping[str, Any],
    new_classes: Sequence[str],
    train: Sequence[str | Path],
    val: Sequence[str | Path] = (),
    method: str | None = None,
    **run: Any,
) -> RunConfig:
    """A step's run config: ``settings`` (a step config file's values, e.g. ``config/train/continual_lidar.yaml``)
    with the parent checkpoint's modality, input and net, training on ``train`` with only ``new_classes``
    labelled, scored on ``val``; ``method`` None keeps the settings' (else the modality's default), and so does an
    unset ``continual.lgkd_prev`` (:data:`DEFAULT_LGKD_PREV`); ``run`` sets
    top-level keys (name, out_dir, seed). ``css-train add-classes``, the benchmark and the demo all build it here.

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    values = {**plain_values(settings), **run}
    values.update(modality=parent['modality'], input=parent['input_spec'])
    values['model'] = {k: parent['model_config'][k] for k in ('arch', 'preset')}
    values['data'] = {**values.get('data', {}), 'train': [str(p) for p in train], 'val': [str(p) for p in val],
                      'classes': list(new_classes)}  # fmt: skip
    continual = values.get('continual', {})
    # The defaults are written out, so a run records what it ran and a changed default is a changed config.
    modality = Modality(parent['modality'])
    values['continual'] = {'lgkd_prev': DEFAULT_LGKD_PREV[modality], **continual,
                           'method': method or continual.get('method') or DEFAULT_METHODS[modality]}  # fmt: skip
    return RunConfig.from_dict(values)


def grow_model(parent: SegmentationNet, new_classes: int) -> SegmentationNet:
    """A copy of ``parent`` with ``new_classes`` more output channels, initialised as MiB does."""
    config = ModelConfig.from_dict({**parent.config.to_dict(), 'num_classes': parent.config.num_classes + new_classes})
    student = build_model(config)
    state = {k: v for k, v in parent.state_dict().items() if not k.startswith('classifier.')}
    student.load_state_dict(state, strict=False)
    student.classifier = mib_extend_classifier(parent.classifier, new_classes)
    return student


def _layer_names(net: SegmentationNet) -> list[str]:
    return [f.name for f in net.feature_info if f.name != 'penultimate']


def _shared_parameter(net: SegmentationNet, layer: str) -> torch.Tensor:
    """The parameter a term's gradient is measured at, as the reference's train.py picks them: a layer term's
    module's first parameter (a stage's first conv), the output terms' the weight of the last shared
    BatchNorm (``red_bn`` of its DeepLab head; ours ends the head before the classifier).
    """
    if layer.startswith('stage'):
        return next(net.stages[int(layer[5:]) - 1].parameters())
    if layer == 'decoder':
        return next(net.ups[-1].parameters())
    return [m for m in net.head.modules() if isinstance(m, nn.BatchNorm2d)][-1].weight


class StepLoss:
    """The loss terms of the chosen methods for one batch; :meth:`__call__` returns them and their total."""

    def __init__(
        self,
        methods: frozenset[str],
        settings: ContinualSection,
        teacher: SegmentationNet | None,
        old_classes: int,
        new_classes: int,
        student: SegmentationNet,
        weight: torch.Tensor | None = None,
    ) -> None:
        self.methods, self.settings = methods, settings
        self.weight = weight
        self.teacher = teacher
        self.multi_scan_teacher: SegmentationNet | None = None  # set once trained (``frozen``); None: ``shared``
        self.old, self.new = old_classes, new_classes
        self.layers = _layer_names(student)
        self.balance: GradientEquilibrium | None = None
        self.shared: dict[str, torch.Tensor] = {}
        if 'lskd' in methods:
            names = ['ce', 'kd', 'context', *(f'pod_{n}' for n in self.layers)]
            names += [n for n in ('m2_logit', 'm2_affinity') if 'm2skd' in methods]
            groups = {n: 'layer' if n.startswith('pod_') else 'output' for n in names}
            self.balance = GradientEquilibrium(
                groups,
                alpha=settings.lskd_alpha,
                gamma=settings.lskd_gamma,
                beta=settings.lskd_beta,
                ce_kd=None if 'lgkd' in methods else ('ce', 'kd', new_classes / max(old_classes, 1)),
                layer_order=[f'pod_{n}' for n in self.layers],
            )
            self.shared = {n: _shared_parameter(student, n[4:] if n.startswith('pod_') else 'head') for n in names}

    def multi_scan_teacher_loss(self, net: SegmentationNet) -> LossFn:
        """The loss that trains ``net`` as the frozen multi-scan teacher on the fused samples: this step's loss,
        class weights included, without the M2SKD terms (they need the teacher) and without LSKD's.
        """
        loss = StepLoss(self.methods - {'m2skd', 'lskd'}, self.settings, self.teacher, self.old, self.new, net,
                        self.weight)  # fmt: skip
        return lambda fused_net, batch: loss(fused_net, (batch[2], batch[3]))

    def _segmentation(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.methods & {'finetune', 'joint'}:
            return F.cross_entropy(logits, target, weight=self.weight, ignore_index=IGNORE_INDEX)
        return unbiased_cross_entropy(logits, target, self.old, weight=self.weight)

    def __call__(self, student: SegmentationNet, batch: Batch) -> dict[str, torch.Tensor]:
        x, target = batch[0], batch[1]
        s = self.settings
        feats = student.forward_features(x)
        logits = feats['logits']
        valid = target != IGNORE_INDEX
        terms = {'ce': self._segmentation(logits, target)}
        old: dict[str, torch.Tensor] = {}
        if self.teacher is not None and self.methods & {'mib', 'lgkd', 'lskd'}:
            with torch.no_grad():
                old = self.teacher.forward_features(x)
            if 'lgkd' in self.methods:
                terms['kd'] = lgkd_loss(logits, old['logits'], target, s.lgkd_prev, s.lgkd_novel)
            else:
                terms['kd'] = s.kd_weight * unbiased_kd(logits, old['logits'], valid)
        if 'lskd' in self.methods and self.teacher is not None:
            terms.update(self._lskd(x, target, valid, feats, old))
        if 'm2skd' in self.methods:
            terms.update(self._m2skd(student, batch, feats, valid))
        if self.balance is not None:
            self.balance.update(terms, self.shared)
            terms['loss'] = self.balance.weighted(terms)
            terms.update({f'w_{n}': self.balance.weight(n).detach() for n in self.balance.names})
        else:
            terms['loss'] = sum(terms.values())  # type: ignore[assignment]
        return terms

    def _lskd(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        valid: torch.Tensor,
        feats: Mapping[str, torch.Tensor],
        old: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """MD masks from the teacher on the input without old and without new content, then POD per layer
        (masked on all but the first two) and context distillation on the penultimate features (masked).
        """
        assert self.teacher is not None
        drop_old = valid & (target < self.old)
        drop_new = valid & (target >= self.old)
        with torch.no_grad():
            without_old = self.teacher.forward_features(mask_positions(x, drop_old))
            without_new = self.teacher.forward_features(mask_positions(x, drop_new))
        frac_old = drop_old.flatten(1).float().mean(1)
        frac_new = drop_new.flatten(1).float().mean(1)

        def mask(name: str) -> torch.Tensor:
            return md_mask(old[name], without_old[name], without_new[name], frac_old, frac_new)

        seen = self.old + self.new
        terms = {}
        for i, name in enumerate(self.layers):
            layer_mask = mask(name) if i >= 2 else None
            pod = pod_distillation([feats[name]], [old[name]], [layer_mask], seen, self.new)
            terms[f'pod_{name}'] = self.settings.pod_weight * pod
        context = context_distillation(feats['penultimate'], old['penultimate'], mask('penultimate'))
        terms['context'] = self.settings.context_weight * context
        return terms

    def _m2skd(
        self, student: SegmentationNet, batch: Batch, feats: Mapping[str, torch.Tensor], valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        s = self.settings
        multi_input, multi_target, pixel, seen = batch[2], batch[3], batch[5], batch[6]
        valid = valid & seen
        groups = torch.where(seen, batch[4], 0)
        terms = {}
        if self.multi_scan_teacher is None:  # shared weights: the same net on the fused input
            multi = student.forward_features(multi_input)
            terms['m2_teacher_seg'] = s.m2_teacher_weight * self._segmentation(multi['logits'], multi_target)
            multi = {k: v.detach() for k, v in multi.items()}
        else:
            with torch.no_grad():
                multi = self.multi_scan_teacher.forward_features(multi_input)
        multi = {k: at_student_pixels(multi[k], pixel) for k in ('logits', 'penultimate')}
        terms['m2_logit'] = s.m2_logit_weight * logit_kd(feats['logits'], multi['logits'], valid)
        terms['m2_affinity'] = s.m2_affinity_weight * affinity_kd(feats['penultimate'], multi['penultimate'], groups)
        if s.m2_feature_weight:
            terms['m2_feature'] = s.m2_feature_weight * feature_kd(feats['penultimate'], multi['penultimate'], valid)
        return terms


def _fit(
    net: SegmentationNet,
    loss_fn: LossFn,
    dataset: Dataset,
    cfg: RunConfig,
    desc: str,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    balance: GradientEquilibrium | None = None,
) -> None:
    """AdamW + the configured schedule over ``dataset`` for ``cfg.optim.epochs``; ``on_epoch`` after each.
    ``balance`` (LSKD's learned weights) steps at the model's current learning rate, renormalised per epoch.
    """
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed)
    loader = DataLoader(
        dataset, batch_size=cfg.optim.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        drop_last=len(dataset) > cfg.optim.batch_size,  # type: ignore[arg-type]
    )  # fmt: skip
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    steps = cfg.optim.epochs * len(loader)
    if cfg.optim.schedule == 'onecycle':
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, cfg.optim.lr, total_steps=steps, pct_start=cfg.optim.warmup
        )
    else:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    for epoch in range(cfg.optim.epochs):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        net.train()
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(loader, desc=f'{desc} epoch {epoch}', disable=not cfg.progress, leave=False, dynamic_ncols=True)
        for batch in bar:
            if balance is not None:
                balance.lr = schedule.get_last_lr()[0]
            terms = loss_fn(net, batch)
            optimizer.zero_grad(set_to_none=True)
            terms['loss'].backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            schedule.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            bar.set_postfix(loss=f'{float(terms["loss"].detach()):.3f}')
        if balance is not None:
            balance.end_epoch()
        stats = {k: v / max(len(loader), 1) for k, v in sums.items()}
        stats['time_s'] = time.perf_counter() - start
        _log.info('%s epoch %d: %s', desc, epoch + 1, ', '.join(f'{k} {v:.4f}' for k, v in stats.items()))
        if on_epoch is not None:
            on_epoch(epoch, stats)


def add_classes(
    cfg: RunConfig, parent: SegmentationNet, parent_ckpt: Mapping[str, Any], parent_version: str | None
) -> Path:
    """Trains the student of one step as configured and writes ``best.pt``/``last.pt``/``metrics.csv`` in the
    run directory (returned). The checkpoint lists old + new classes in channel order and its parent's version.

    Raises:
        TrainError: the run directory holds a run.
        ConfigError: bad methods, or new classes the parent already knows.
        DataError: unreadable bags, or a new class that no training sample labels.
    """
    modality = Modality(cfg.modality)
    methods = parse_methods(cfg.continual.method, modality)
    run_dir = cfg.run_dir
    if (run_dir / 'last.pt').exists():
        msg = f'{run_dir} already holds a run; choose another name'
        raise TrainError(msg)
    started = time.perf_counter()
    seed_everything(cfg.seed, cfg.deterministic, cfg.threads)
    device = choose_device(cfg.device)
    ontology = Ontology.load(cfg.data.ontology)
    old_classes = tuple(ClassInfo(c['id'], c['name'], tuple(c['color'])) for c in parent_ckpt['classes'])
    known = {c.name for c in old_classes}
    repeated = sorted(known & set(cfg.data.classes))
    if repeated:
        msg = f'the parent model already knows {repeated}; new classes must be new'
        raise ConfigError(msg)
    new_classes = ontology.subset(cfg.data.classes)[1:]
    classes = (*old_classes, *new_classes)
    ids = [c.id for c in classes]
    new_ids = [c.id for c in new_classes]
    spec = cfg.input_spec()
    data = cfg.data
    base = run_dataset(cfg, data.train, ids, ontology, labelled=None if 'joint' in methods else new_ids)
    if 'm2skd' in methods:
        methods = _posed_methods(methods, modality, base.scans)  # type: ignore[attr-defined]
    counts = base.label_counts()  # type: ignore[attr-defined]
    unseen = [c.name for c, n in zip(new_classes, counts[len(old_classes) :], strict=True) if n == 0]
    if unseen:
        unit = 'point' if modality is Modality.LIDAR else 'pixel'
        msg = f'the training bags label no {unit} as {unseen}: a step cannot learn a class it never sees'
        raise DataError(msg)
    weight = class_weights(counts, cfg.optim.class_weight_power).to(device)
    _log.info('step labels per channel %s, class weights %s', counts.tolist(), [round(float(w), 2) for w in weight])
    teacher = place_model(copy.deepcopy(parent), device).eval().requires_grad_(False)
    student = place_model(grow_model(parent, len(new_classes)), device)
    loss = StepLoss(methods, cfg.continual, teacher, len(old_classes), len(new_classes), student, weight)
    dataset: Dataset = base
    hard: list[int] = []
    if 'm2skd' in methods:
        hard = _hard_ids(cfg, counts, ids, new_ids, ontology)
        _log.info('M2SKD hard classes: %s', [ontology.by_id(i).name for i in hard])
        continual = cfg.continual
        dataset = MultiScanDataset(base, hard, continual.m2_window, continual.m2_teacher_scale)  # type: ignore[arg-type]
        if cfg.continual.m2_teacher == 'frozen':
            fused_net = place_model(grow_model(parent, len(new_classes)), device)
            epochs = continual.m2_teacher_epochs or cfg.optim.epochs
            teacher_cfg = replace(cfg, optim=replace(cfg.optim, epochs=epochs))
            _fit(fused_net, loss.multi_scan_teacher_loss(fused_net), dataset, teacher_cfg, 'multi-scan teacher')
            loss.multi_scan_teacher = fused_net.eval().requires_grad_(False)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / 'config.yaml')
    writer = SummaryWriter(str(run_dir / 'tb'))
    val_records = read_records(data.val, modality, data.topics, data.cache_dir, ontology) if data.val else None
    best = -float('inf')
    static = {
        'model_config': student.config.to_dict(),
        'run_config': cfg.to_dict(),
        'modality': modality.value,
        'classes': [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in classes],
        'input_spec': plain_values(asdict(spec)),
        'method': '+'.join(sorted(methods)),
        'parent_version': parent_version,
        'old_classes': [c.name for c in old_classes[1:]],
        'new_classes': [c.name for c in new_classes],
        'hard_classes': [ontology.by_id(i).name for i in hard],
        'data': {'train': list(data.train), 'val': list(data.val)},
    }

    def on_epoch(epoch: int, stats: dict[str, float]) -> None:
        nonlocal best
        metrics = None
        if val_records is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs):
            metrics = evaluate_net(student, val_records, classes, spec)
            student.train()
        scores = _scores(metrics, static)
        score = scores['miou'] if metrics is not None else -stats['loss']
        state = {
            **static,
            'model': student.state_dict(),
            'epoch': epoch + 1,
            'best_metric': max(best, score),
            'metrics': metrics.to_dict() if metrics is not None else None,
            'scores': scores,
            'seconds': round(time.perf_counter() - started, 1),  # the step so far, its multi-scan teacher included
            'rng': get_rng_state(),
        }
        save_checkpoint(state, run_dir / 'last.pt')
        if score > best:
            best = score
            save_checkpoint(state, run_dir / 'best.pt')
        _log_row(run_dir / 'metrics.csv', writer, epoch + 1, stats, scores)

    _fit(student, loss, dataset, cfg, '+'.join(sorted(methods)), on_epoch, loss.balance)
    writer.close()
    return run_dir


def _posed_methods(methods: frozenset[str], modality: Modality, scans: Sequence[Any]) -> frozenset[str]:
    """``methods`` when every scan has a pose; else, for the modality's default, the same without m2skd (with a
    warning), and for any other combination an error: M2SKD's teacher fuses neighbouring scans with their poses.

    Raises:
        ConfigError: m2skd named and a scan without a pose.
    """
    unposed = sum(scan.pose is None for scan in scans)
    if not unposed:
        return methods
    why = (f'{unposed} of {len(scans)} step scans have no pose (record /tf or /odom, or set data.topics.'
           'pose_source)')  # fmt: skip
    if methods != parse_methods(None, modality):
        msg = f'm2skd needs a pose for every scan: {why}; leave it out of --method'
        raise ConfigError(msg)
    _log.warning('the default %s needs poses: %s; running %s', '+'.join(sorted(methods)), why,
                 '+'.join(sorted(methods - {'m2skd'})))  # fmt: skip
    return methods - {'m2skd'}


def _hard_ids(cfg: RunConfig, counts: np.ndarray, ids: list[int], new_ids: list[int], ontology: Ontology) -> list[int]:
    if cfg.continual.hard_classes is not None:
        wanted = [ontology.by_name(n).id for n in cfg.continual.hard_classes]
        return [i for i in wanted if i in new_ids]
    by_id = {ids[channel]: int(n) for channel, n in enumerate(counts)}
    rare = rare_classes(by_id)
    return [i for i in rare if i in new_ids] or list(new_ids)


def _scores(metrics: Metrics | None, static: Mapping[str, Any]) -> dict[str, float]:
    if metrics is None:
        return {}
    return {
        'miou': metrics.miou,
        'old_miou': metrics.mean_iou(static['old_classes']),
        'new_miou': metrics.mean_iou(static['new_classes']),
    }


def _log_row(
    path: Path, writer: SummaryWriter, epoch: int, stats: Mapping[str, float], scores: Mapping[str, float]
) -> None:
    row = {'epoch': epoch, **stats, **{f'val_{k}': v for k, v in scores.items()}}
    new = not path.exists()
    with path.open('a', newline='') as f:
        out = csv.DictWriter(f, list(row), restval='', extrasaction='ignore')
        if new:
            out.writeheader()
        out.writerow(row)
    for name, value in row.items():
        if name != 'epoch' and not np.isnan(value):
            writer.add_scalar(name, value, epoch)
    writer.flush()
