"""What a continual method costs per training batch, as a ratio to the first listed method's in the same run.

For each method, one benchmark step's loss is built as ``add_classes`` builds it (a preset's step settings, the
preset's base model as parent, its ``new`` recording) and forward + backward + optimizer step is timed over the
same batches (median of ``--batches`` after a warm-up). ``--profile METHOD`` prints torch's operator table for
that method instead. Methods with m2skd are not timed here (their batches need the multi-scan dataset and a
trained multi-scan teacher). Run after the preset's base models exist (a benchmark run trains them):
``python bench/bench_step_loss.py config/benchmarks/small.yaml --modality camera --methods finetune,lgkd,lskd``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from css_perception.core.metadata import Modality
from css_perception.core.ontology import Ontology
from css_training.benchmark import BenchmarkConfig, base_checkpoint
from css_training.checkpoint import load_checkpoint
from css_training.continual import StepLoss, grow_model, parse_methods, step_config
from css_training.datasets import run_dataset
from css_training.losses.segmentation import class_weights
from css_training.models.blocks import SegmentationNet
from css_training.sim.config import SimConfig
from css_training.sim.record import generate_split
from css_training.train import place_model, seed_everything


def _time_batches(loss: StepLoss, student: SegmentationNet, batches: list, profile: bool) -> float | None:
    """Median seconds of one training batch after two warm-up batches; prints the operator table instead
    when ``profile``.
    """
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)

    def step(batch: tuple[torch.Tensor, ...]) -> None:
        terms = loss(student, batch)
        optimizer.zero_grad(set_to_none=True)
        terms['loss'].backward()
        optimizer.step()

    for batch in batches[:2]:
        step(batch)
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for batch in batches[2:]:
                step(batch)
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))
        return None
    samples = []
    for batch in batches[2:]:
        start = time.perf_counter()
        step(batch)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('preset', type=Path)
    parser.add_argument('--modality', choices=('lidar', 'camera'), default='camera')
    parser.add_argument('--methods', default='finetune,lgkd,lskd')
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--profile', metavar='METHOD', help='print the operator table of this method')
    args = parser.parse_args()
    config = BenchmarkConfig.load(args.preset)
    settings = config.modalities[args.modality]
    parent, ckpt = load_checkpoint(base_checkpoint(settings['base'], settings.get('base_set', ())))
    split = generate_split(Path(config.sim_dir), SimConfig.load(Path(config.sim_config)), dict(config.sim_scans))
    new_classes = next(iter(config.splits.values()))[0]
    methods = [args.profile] if args.profile else args.methods.split(',')
    if any('m2skd' in m for m in methods):
        parser.error('methods with m2skd are not timed by this script')
    times = {}
    for method in methods:
        cfg = step_config(settings.get('step', {}), ckpt, new_classes, split['new'], split['test'], method,
                          name='bench', seed=0)  # fmt: skip
        seed_everything(0, False, args.threads)
        ontology = Ontology.load(cfg.data.ontology)
        old = len(ckpt['classes'])
        new_ids = [c.id for c in ontology.subset(cfg.data.classes)[1:]]
        ids = [c['id'] for c in ckpt['classes']] + new_ids
        chosen = parse_methods(method, Modality(cfg.modality))
        dataset = run_dataset(cfg, cfg.data.train, ids, ontology, labelled=None if 'joint' in chosen else new_ids)
        loader = DataLoader(dataset, batch_size=cfg.optim.batch_size, shuffle=False)
        cpu = torch.device('cpu')
        teacher = place_model(copy.deepcopy(parent), cpu).eval().requires_grad_(False)
        student = place_model(grow_model(parent, len(new_ids)), cpu).train()
        weight = class_weights(dataset.label_counts(), cfg.optim.class_weight_power)
        loss = StepLoss(chosen, cfg.continual, teacher, old, len(new_ids), student, weight)
        batches = [b for _, b in zip(range(args.batches + 2), loader, strict=False)]
        seconds = _time_batches(loss, student, batches, args.profile is not None)
        if seconds is not None:
            times[method] = seconds
    if args.profile:
        return
    baseline = times[methods[0]]
    print(f'{args.modality}, batch {cfg.optim.batch_size}, {args.threads} thread(s), median of {args.batches}')
    for method, seconds in times.items():
        print(f'{method:>12}: {1000 * seconds:7.1f} ms per batch, {seconds / baseline:4.2f}x {methods[0]}')


if __name__ == '__main__':
    main()
