"""What a deployed model says where a continual step's new classes are: background, or an old class?

LGKD's target moves the old model's background probability p_0 to the labelled new class; where the old model
gives the new objects to old classes instead, the target keeps most of its mass on those old classes. Per class
of the step recording: mean p_0 and the old model's three most frequent predictions (points for LiDAR, pixels for
camera, at the model's input resolution). Given a step's model, which has the new classes, it also prints the mean
probability of each class's own channel. Run after ``css-bench continual`` has written the benchmark split:
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
    old_ids = [c.id for c in meta.classes]  # a step's model already has (some of) the new classes
    ids = old_ids + [i for i in (ontology.by_name(n).id for n in NEW) if i not in old_ids]
    records = read_records([args.bag], meta.modality, None, ckpt['run_config']['data']['cache_dir'], ontology)
    kind = LidarDataset if meta.modality is Modality.LIDAR else CameraDataset
    dataset = kind(records, meta.input_spec, ids)
    votes = np.zeros((len(ids), len(old_ids)), np.int64)
    background, own = np.zeros(len(ids)), np.zeros(len(ids))
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
            channel = target.clamp(max=len(old_ids) - 1).unsqueeze(1)  # labels the model has no channel for: unused
            own += np.bincount(target[valid].numpy(), probs.gather(1, channel)[:, 0][valid].numpy(), minlength=len(ids))
    names = [c.name for c in meta.classes]
    print(f'{args.checkpoint} on {args.bag} ({meta.modality.value}; "{names[0]}" is channel 0, the background)')
    for name in NEW:
        label = ids.index(ontology.by_name(name).id)
        total = votes[label].sum()
        if total == 0:
            continue
        top = np.argsort(-votes[label])[:3]
        said = ', '.join(f'{names[k]} {votes[label, k] / total:.2f}' for k in top)
        mine = f'mean p_{name} {own[label] / total:.2f}, ' if label < len(old_ids) else ''
        print(f'{name:13s} {total:8d} positions, {mine}mean p_0 {background[label] / total:.2f}; argmax: {said}')


if __name__ == '__main__':
    main()
