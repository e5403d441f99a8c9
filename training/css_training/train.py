"""Base training (``css-train base``): one modality, one class subset, from bags or SemanticKITTI folders.

The shape follows torchvision's segmentation reference (``train_one_epoch``, ``evaluate``); the command line is
:mod:`css_training.cli`. Loss is class-weighted cross-entropy (inverse-sqrt frequency weights from the training labels)
plus Lovász-softmax, which optimises the IoU the benchmark reports. Runs resume exactly: the checkpoint holds
model, optimizer, schedule, scaler and every generator's state, and the data order and augmentation are
functions of (seed, epoch), so 1 epoch + resume + 1 epoch gives the weights 2 epochs in a row give.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from css_perception.core.metadata import ClassInfo
from css_perception.core.ontology import Ontology
from css_training.checkpoint import get_rng_state, read_checkpoint, save_checkpoint, set_rng_state
from css_training.config import ConfigError, RunConfig, plain_values
from css_training.datasets import CameraDataset, LidarDataset, run_dataset
from css_training.evaluate import Metrics, evaluate_camera, evaluate_lidar
from css_training.losses.segmentation import SegmentationLoss, class_weights
from css_training.models import SegmentationNet, build_model
from css_training.sim.config import SimConfig
from css_training.sim.record import generate_split

__all__ = [
    'TrainError',
    'build_datasets',
    'choose_device',
    'evaluate',
    'finished_run',
    'seed_everything',
    'train',
    'train_one_epoch',
]

_log = logging.getLogger(__name__)

CSV_FIELDS = ('epoch', 'step', 'lr', 'loss', 'ce', 'lovasz', 'samples_per_s', 'val_miou', 'val_accuracy', 'time_s')


class TrainError(RuntimeError):
    """A run cannot start: its output directory holds another run, there is nothing to resume, or it names a
    device this machine does not have.
    """


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
    device: torch.device,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over ``loader``, stepping the schedule every batch; mean loss parts, last lr and samples/s."""
    model.train()
    use_amp = scaler is not None and scaler.is_enabled()
    sums: dict[str, float] = {}
    seen = batches = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f'epoch {epoch}', disable=not progress, dynamic_ncols=True, leave=False)
    for inputs, target in bar:
        inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(inputs)
        parts = criterion(logits, target)
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(parts['loss']).backward()
            scaler.unscale_(optimizer)
        else:
            parts['loss'].backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if use_amp:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr_scheduler.step()
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        seen += len(inputs)
        batches += 1
        rate = seen / (time.perf_counter() - start)
        bar.set_postfix(loss=f'{float(parts["loss"].detach()):.3f}', samples_s=f'{rate:.1f}')
    stats = {name: total / max(batches, 1) for name, total in sums.items()}
    stats['lr'] = optimizer.param_groups[0]['lr']
    stats['samples_per_s'] = seen / (time.perf_counter() - start)
    return stats


def evaluate(
    model: nn.Module, dataset: LidarDataset | CameraDataset, classes: Sequence[ClassInfo], device: torch.device
) -> Metrics:
    """Validation scores of ``model`` (unwrapped) on the model's own classes: points for LiDAR, pixels for camera."""
    if isinstance(dataset, LidarDataset):
        return evaluate_lidar(model, dataset, classes, device=device)
    return evaluate_camera(model, dataset, classes, device=device)


def build_datasets(
    cfg: RunConfig, class_ids: Sequence[int], ontology: Ontology
) -> tuple[LidarDataset | CameraDataset, LidarDataset | CameraDataset | None]:
    """(train, val or None) datasets of the config's recordings (a simulated split when ``data.sim_config``)."""
    data = cfg.data
    train_paths, val_paths = list(data.train), list(data.val)
    if data.sim_config and not train_paths:
        sim = SimConfig.load(Path(data.sim_config))
        split = generate_split(Path(data.sim_dir), sim, dict(data.sim_scans), progress=cfg.progress)
        train_paths, val_paths = split['train'], val_paths or split['val']
    train = run_dataset(cfg, train_paths, class_ids, ontology)
    return train, run_dataset(cfg, val_paths, class_ids, ontology, augment=False) if val_paths else None


def train(run_cfg: RunConfig, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train as configured; returns the run directory (``last.pt``, ``best.pt``, ``metrics.csv``, ``tb/``).

    ``stop_after`` ends this invocation after that many epochs (a time-boxed job); ``resume`` continues it
    with the schedule of the full run, as if it had never stopped.

    Raises:
        TrainError: the run directory holds a run and ``resume`` is False, or ``resume`` finds no ``last.pt``.
    """
    cfg = run_cfg
    device = choose_device(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic, cfg.threads)
    run_dir = cfg.run_dir
    last = run_dir / 'last.pt'
    if resume and not last.exists():
        msg = f'cannot resume: {last} does not exist'
        raise TrainError(msg)
    if not resume and last.exists():
        msg = f'{run_dir} already holds a run; pass --resume to continue it or choose another name'
        raise TrainError(msg)

    ontology = Ontology.load(cfg.data.ontology)
    classes = ontology.subset(cfg.data.classes)
    class_ids = [c.id for c in classes]
    train_set, val_set = build_datasets(cfg, class_ids, ontology)
    counts = train_set.label_counts()
    weights = class_weights(counts, cfg.optim.class_weight_power)
    _log.info('%d training samples, class weights %s', len(train_set), [round(float(w), 2) for w in weights])

    model_config = cfg.model_config()
    model = place_model(build_model(model_config), device)
    # A one-replica DistributedSampler: its order is a function of (seed, epoch), which exact resume needs.
    sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == 'cuda',
        drop_last=len(sampler) > cfg.optim.batch_size,  # avoid a last batch of one (BatchNorm)
    )
    criterion = SegmentationLoss(weights, cfg.optim.lovasz_weight).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    total_steps = cfg.optim.epochs * len(loader)
    if cfg.optim.schedule == 'onecycle':
        lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.optim.lr, total_steps=total_steps, pct_start=cfg.optim.warmup
        )
    else:
        lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == 'cuda')

    start_epoch, step, best = 0, 0, -float('inf')
    if resume:
        ckpt = read_checkpoint(last, map_location=device)
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        lr_scheduler.load_state_dict(ckpt['lr_scheduler'])
        scaler.load_state_dict(ckpt['scaler'])
        start_epoch, step, best = ckpt['epoch'], ckpt['step'], ckpt['best_metric']
        set_rng_state(ckpt['rng'])
        _log.info('resuming %s after epoch %d (step %d)', run_dir, start_epoch, step)

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / 'config.yaml')
    writer = SummaryWriter(str(run_dir / 'tb'), purge_step=step if resume else None)
    static = {
        'model_config': model_config.to_dict(),
        'run_config': cfg.to_dict(),
        'modality': cfg.modality,
        'classes': [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in classes],
        'input_spec': plain_values(dataclasses.asdict(cfg.input_spec())),
        'method': 'base',
        'parent_version': None,
        'data': {'train': [str(p) for p in cfg.data.train], 'val': [str(p) for p in cfg.data.val]},
        'class_counts': counts.tolist(),
    }
    end = cfg.optim.epochs if stop_after is None else min(cfg.optim.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end):
        begin = time.perf_counter()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        stats = train_one_epoch(
            model,
            criterion,
            optimizer,
            lr_scheduler,
            loader,
            device,
            epoch,
            scaler,
            cfg.optim.grad_clip,
            cfg.progress,
        )
        step += len(loader)
        metrics = None
        final = epoch + 1 == cfg.optim.epochs
        if val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or final):
            metrics = evaluate(model, val_set, classes, device)
        score = metrics.miou if metrics is not None else -stats['loss']
        improved = score > best
        best = max(best, score)
        state = {
            **static,
            'model': model.state_dict(),
            'optimizer': optimizer.state_dict(),
            'lr_scheduler': lr_scheduler.state_dict(),
            'scaler': scaler.state_dict(),
            'epoch': epoch + 1,
            'step': step,
            'best_metric': best,
            'metrics': metrics.to_dict() if metrics is not None else None,
            'rng': get_rng_state(),
        }
        save_checkpoint(state, last)
        if improved:
            save_checkpoint(state, run_dir / 'best.pt')
        row = {
            'epoch': epoch + 1,
            'step': step,
            'lr': stats['lr'],
            'loss': stats['loss'],
            'ce': stats['ce'],
            'lovasz': stats.get('lovasz', ''),
            'samples_per_s': stats['samples_per_s'],
            'val_miou': metrics.miou if metrics is not None else '',
            'val_accuracy': metrics.accuracy if metrics is not None else '',
            'time_s': time.perf_counter() - begin,
        }
        _log_epoch(run_dir / 'metrics.csv', writer, row, metrics)
    writer.close()
    return run_dir


def _log_epoch(path: Path, writer: SummaryWriter, row: Mapping[str, Any], metrics: Metrics | None) -> None:
    new = not path.exists()
    with path.open('a', newline='') as f:
        out = csv.DictWriter(f, CSV_FIELDS)
        if new:
            out.writeheader()
        out.writerow(row)
    step = row['step']
    for name in ('loss', 'ce', 'lovasz', 'lr', 'samples_per_s'):
        if row[name] != '':
            writer.add_scalar(f'train/{name}', row[name], step)
    if metrics is not None:
        writer.add_scalar('val/miou', metrics.miou, step)
        writer.add_scalar('val/accuracy', metrics.accuracy, step)
        for c, iou in zip(metrics.classes[1:], metrics.iou[1:], strict=True):
            if not np.isnan(iou):
                writer.add_scalar(f'val_iou/{c.name}', iou, step)
    writer.flush()
    val = f', val mIoU {100 * row["val_miou"]:.1f}' if metrics is not None else ''
    _log.info('epoch %d: loss %.4f, %.1f samples/s%s', row['epoch'], row['loss'], row['samples_per_s'], val)


def place_model(net: SegmentationNet, device: torch.device) -> SegmentationNet:
    """``net`` on ``device`` with channels-last weights: every convolution then runs in NHWC, which cut a training
    step of the lite models by ~20 % on one CPU thread (bench/bench_channels_last.py); the weights' values, the
    checkpoints and the exported graphs are the same."""
    return net.to(device=device, memory_format=torch.channels_last)


def choose_device(name: str) -> torch.device:
    """The torch device a run config's ``device`` names.

    Raises:
        TrainError: not a device name, or a CUDA device this torch build or machine does not have.
    """
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as err:
        msg = f'device {name!r}: {err}'
        raise TrainError(msg) from err
    if device.type == 'cuda':
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= available:
            msg = (
                f'device {name!r} asked for, but this torch ({torch.__version__}) sees {available} CUDA device(s); '
                'use device=auto or cpu'
            )
            raise TrainError(msg)
    return device


def finished_run(cfg: RunConfig) -> bool:
    """Whether ``cfg.run_dir`` holds a run of this config that trained all its epochs (a base run or a continual
    step). The saved config is read with today's defaults, so a setting added since (whose default keeps the old
    behaviour) does not retrain finished runs.
    """
    saved, last = cfg.run_dir / 'config.yaml', cfg.run_dir / 'last.pt'
    if not (saved.exists() and last.exists()):
        return False
    try:
        same = RunConfig.from_dict(yaml.safe_load(saved.read_text())).to_dict() == cfg.to_dict()
    except ConfigError:
        return False
    return same and read_checkpoint(last)['epoch'] == cfg.optim.epochs


def seed_everything(seed: int, deterministic: bool, threads: int | None) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
