"""What a deployed model says where a continual step's new classes are: background, or an old class?

LGKD's target moves the old model's background probability p_0 to the labelled new class; where the old model
gives the new objects to old classes instead, the target keeps most of its mass on those old classes. Per class
of the step recording: mean p_0 and the old model's three most frequent predictions (points for LiDAR, pixels for
camera, at the model's input resolution). Run after ``css-bench continual`` has written the benchmark split:
``python bench/bench_background_prior.py out/runs/camera_base/best.pt [--bag out/bench/sim/new]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from css_perception.core.metadata import Modality
from css_perception.core.ontology import Ontology
from css_training.checkpoint import load_checkpoint
from css_training.datasets import IGNORE_INDEX, CameraDataset, LidarDataset, read_records
from css_training.export import metadata_from_checkpoint

NEW = ('person', 'bicycle', 'bicyclist', 'motorcycle', 'motorcyclist')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='the deployed (old) model')
    parser.add_argument('--bag', default='out/bench/sim/new', help='the continual step recording (all labels)')
    parser.add_argument('--batch', type=int, default=8)
    args = parser.parse_args()
    net, ckpt = load_checkpoint(args.checkpoint)
    meta = metadata_from_checkpoint(ckpt)
    ontology = Ontology.load()
    old_ids = [c.id for c in meta.classes]
    ids = old_ids + [ontology.by_name(n).id for n in NEW]
    records = read_records([args.bag], meta.modality, None, ckpt['run_config']['data']['cache_dir'], ontology)
    kind = LidarDataset if meta.modality is Modality.LIDAR else CameraDataset
    dataset = kind(records, meta.input_spec, ids)
    votes = np.zeros((len(ids), len(old_ids)), np.int64)
    background = np.zeros(len(ids))
    with torch.no_grad():
        for start in range(0, len(dataset), args.batch):
            batch = [dataset[i] for i in range(start, min(start + args.batch, len(dataset)))]
            inputs, targets = zip(*batch, strict=True)
            probs = torch.softmax(net(torch.stack(inputs)), dim=1)
            target = torch.stack(targets)
            valid = target != IGNORE_INDEX
            pairs = target[valid] * len(old_ids) + probs.argmax(1)[valid]
            votes += np.bincount(pairs.numpy(), minlength=votes.size).reshape(votes.shape)
            background += np.bincount(target[valid].numpy(), probs[:, 0][valid].numpy(), minlength=len(ids))
    names = [c.name for c in meta.classes]
    print(f'{args.checkpoint} on {args.bag} ({meta.modality.value}; "{names[0]}" is channel 0, the background)')
    for channel in range(len(old_ids), len(ids)):
        total = votes[channel].sum()
        if total == 0:
            continue
        top = np.argsort(-votes[channel])[:3]
        said = ', '.join(f'{names[k]} {votes[channel, k] / total:.2f}' for k in top)
        print(f'{NEW[channel - len(old_ids)]:13s} {total:8d} positions, mean p_0 {background[channel] / total:.2f}; '
              f'argmax: {said}')  # fmt: skip


if __name__ == '__main__':
    main()
