"""A training step with channels-last weights (``place_model``) as a ratio to the same step with plain weights.

For each base config: the model it trains, one batch at its input size (random values: the cost of a
convolution does not depend on them), forward + cross-entropy + backward + SGD step, timed in plain then in
channels-last format (median of ``--steps`` after one warm-up step each), in one process on ``--threads`` threads:
``python bench/bench_channels_last.py config/train/lidar_base.yaml config/train/camera_base.yaml``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

from css_training.config import RunConfig, load_config
from css_training.models import build_model
from css_training.train import place_model


def _step_seconds(cfg: RunConfig, channels_last: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model_config = cfg.model_config()
    net = build_model(model_config).train()
    if channels_last:
        net = place_model(net, torch.device('cpu'))
    spec = cfg.input_spec()
    inputs = torch.randn(batch, model_config.in_channels, spec.height, spec.width)
    target = torch.randint(0, model_config.num_classes, (batch, spec.height, spec.width))
    optimiser = torch.optim.SGD(net.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(net(inputs), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', type=Path, nargs='+')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'{args.threads} thread(s), batch {args.batch}')
    print('| config | plain (s per step) | channels-last (s per step) | ratio |')
    print('|---|---:|---:|---:|')
    for path in args.configs:
        cfg = load_config(path)
        plain = _step_seconds(cfg, channels_last=False, batch=args.batch, steps=args.steps)
        last = _step_seconds(cfg, channels_last=True, batch=args.batch, steps=args.steps)
        print(f'| {path} | {plain:.3f} | {last:.3f} | {last / plain:.2f} |')


if __name__ == '__main__':
    main()
