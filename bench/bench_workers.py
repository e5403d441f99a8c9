"""Benchmark chains one at a time with all cores, or several at once with one core each: which finishes first?

Runs the same chains of a preset (one modality, split and method, every seed) twice through ``run_continual``:
the baseline with ``workers: 1`` and ``threads`` = the machine's cores, then with ``workers`` = cores and
``threads: 1``; prints both wall times and their ratio. Run after the preset's base model exists (a benchmark
run trains it): ``python bench/bench_workers.py config/benchmarks/small.yaml --modality camera --method lgkd``.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

from css_training.benchmark import BenchmarkConfig, run_continual


def _timed(config: BenchmarkConfig, modality: str, workers: int, threads: int, out_dir: Path) -> float:
    run = copy.deepcopy(config)
    run.workers, run.out_dir = workers, str(out_dir)
    run.modalities[modality]['step'] = {**run.modalities[modality].get('step', {}), 'threads': threads}
    start = time.perf_counter()
    run_continual(run, only=modality)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('preset', type=Path)
    parser.add_argument('--modality', choices=('lidar', 'camera'), default='camera')
    parser.add_argument('--method', default='lgkd')
    parser.add_argument('--split', default='12-5')
    parser.add_argument('--epochs', type=int, help="step epochs instead of the preset's")
    args = parser.parse_args()
    config = BenchmarkConfig.load(args.preset)
    config.methods = (args.method,)
    config.modalities[args.modality].pop('methods', None)
    config.splits = {args.split: config.splits[args.split]}
    if args.epochs:
        step = config.modalities[args.modality].setdefault('step', {})
        step['optim'] = {**step.get('optim', {}), 'epochs': args.epochs}
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        baseline = _timed(config, args.modality, 1, cores, Path(tmp) / 'one')
        parallel = _timed(config, args.modality, cores, 1, Path(tmp) / 'many')
    chains = len(config.seeds)
    print(f'{args.modality} {args.split} {args.method}, {chains} chains, {cores} cores')
    print(f'one chain at a time, {cores} threads: {baseline:.1f} s')
    print(f'{cores} chains at once, 1 thread each: {parallel:.1f} s')
    print(f'speed-up: {baseline / parallel:.2f}x')


if __name__ == '__main__':
    main()
