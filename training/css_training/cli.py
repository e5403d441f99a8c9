"""``css-train``: base training, evaluation and export/publish of segmentation models.

css-train base --config config/train/lidar_base.yaml [--set optim.epochs=5] [--resume]
css-train eval runs/lidar_base/best.pt [--data BAG ...] [--out DIR]
css-train eval model.onnx --data BAG ...          (scored through the node's own segmenter)
css-train export runs/lidar_base/best.pt --registry models/ [--fp16]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from css_perception.core.errors import MetadataError, OntologyError
from css_perception.core.metadata import Modality
from css_perception.core.ontology import Ontology
from css_perception.runtime.errors import RuntimeModelError
from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry
from css_perception.runtime.segmenter import make_segmenter
from css_training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from css_training.config import ConfigError, RunConfig, apply_overrides, load_config, read_values
from css_training.continual import add_classes, step_config
from css_training.data.errors import DataError
from css_training.datasets import CameraDataset, DatasetError, LidarDataset, read_records
from css_training.evaluate import Metrics, evaluate_camera, evaluate_lidar, evaluate_net, write_report
from css_training.export import ExportError, export_and_publish, export_onnx, metadata_from_checkpoint, parity
from css_training.models import ModelConfigError
from css_training.sim.config import SimConfigError
from css_training.train import TrainError, train

__all__ = ['get_args_parser', 'main']

_ERRORS = (
    ConfigError,
    CheckpointError,
    DataError,
    DatasetError,
    ExportError,
    MetadataError,
    ModelConfigError,
    OntologyError,
    RuntimeModelError,
    SimConfigError,
    TrainError,
    OSError,  # an output folder that cannot be made or written, a file that cannot be read: the message names it
)
PARITY_SAMPLES = 8


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='css-train', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='command', required=True)
    base = sub.add_parser('base', help='train a base model')
    base.add_argument('--config', type=Path, help='run config YAML (config/train/*.yaml)')
    base.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                      help='override a config value, e.g. --set optim.epochs=5 (repeatable)')  # fmt: skip
    base.add_argument('--resume', action='store_true', help='continue <out_dir>/<name>/last.pt exactly')
    base.add_argument('--stop-after', type=int, metavar='EPOCHS', help='stop this invocation after EPOCHS epochs')
    ev = sub.add_parser('eval', help='score a checkpoint or an exported .onnx model')
    ev.add_argument('model', type=Path, help='checkpoint (.pt) or ONNX model')
    ev.add_argument('--data', nargs='+', help="recordings; default: the run's simulated test split")
    ev.add_argument('--out', type=Path, help='report directory; default: <run>/eval or beside the model')
    ev.add_argument('--max-samples', type=int, help='score at most this many samples')
    ex = sub.add_parser('export', help='export a checkpoint to ONNX and publish it into a registry')
    ex.add_argument('checkpoint', type=Path)
    ex.add_argument('--registry', type=Path, required=True, help='model registry root (the node watches it)')
    ex.add_argument('--data', nargs='+', help="recordings for the parity check; default: the run's val split")
    ex.add_argument('--fp16', type=Path, metavar='PATH', help='also write a float16 variant (GPU) to PATH')
    ex.add_argument('--no-current', action='store_true', help='publish without making it CURRENT')
    add = sub.add_parser('add-classes', help='a continual step: learn new classes, publish the new version')
    add.add_argument('--from', dest='parent', required=True, metavar='MODALITY[@VERSION]|CHECKPOINT',
                     help='the previous model: a registry entry (lidar, lidar@v2) or a checkpoint (.pt)')  # fmt: skip
    add.add_argument('--registry', type=Path, required=True, help='registry to read the parent from and publish to')
    add.add_argument('--bags', nargs='+', required=True, help='recordings with the new classes labelled')
    add.add_argument('--new-classes', required=True, help='comma-separated ontology names')
    add.add_argument('--method', help='+-joined: finetune, joint, mib, lgkd, lskd, m2skd (default per modality)')
    add.add_argument('--val', nargs='+', help='fully labelled recordings to score old and new classes on')
    add.add_argument('--config', type=Path, help='continual run config YAML (config/train/continual_<modality>.yaml)')
    add.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE')
    add.add_argument('--name', help='run name (default: <modality>_<parent version>_plus_<classes>)')
    return parser


def _parent(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The parent's checkpoint and registry version, from ``modality[@version]`` or a checkpoint path."""
    if args.parent.endswith('.pt'):
        return Path(args.parent), None
    modality, _, version = args.parent.partition('@')
    registry = Registry(args.registry)
    entry = registry.entry(modality, version) if version else registry.current(modality)
    if entry is None:
        msg = f'the registry {args.registry} has no current {modality} model'
        raise DataError(msg)
    provenance = SegmentationModel.load(entry.path, providers=['CPUExecutionProvider'], warmup=False).metadata
    checkpoint = provenance.provenance.get('checkpoint')
    if not checkpoint or not Path(checkpoint).exists():
        msg = (
            f'{modality} {entry.version} records no training checkpoint that exists here ({checkpoint!r}); '
            'pass --from CHECKPOINT.pt'
        )
        raise DataError(msg)
    return Path(checkpoint), entry.version


def _add_classes(args: argparse.Namespace) -> None:
    checkpoint, version = _parent(args)
    parent, ckpt = load_checkpoint(checkpoint)
    values = apply_overrides(read_values(args.config) if args.config else {}, args.overrides)
    new = [n.strip() for n in args.new_classes.split(',') if n.strip()]
    tag = version or checkpoint.parent.name
    name = args.name or f'{ckpt["modality"]}_{tag}_plus_{"_".join(new)}'
    cfg = step_config(values, ckpt, new, args.bags, args.val or [], args.method, name=name)
    run_dir = add_classes(cfg, parent, ckpt, version)
    best = read_checkpoint(run_dir / 'best.pt')
    print(f'{name}: {best["method"]}, classes {[c["name"] for c in best["classes"]]}, scores {best["scores"]}')
    args.checkpoint, args.data, args.fp16, args.no_current = run_dir / 'best.pt', None, None, False
    _export(args)


def _run_config(ckpt: dict) -> RunConfig:
    return RunConfig.from_dict(ckpt['run_config'])


def _paths(cfg: RunConfig | None, given: Sequence[str] | None, part: str) -> list[str]:
    if given:
        return list(given)
    if cfg is not None and cfg.data.sim_config:
        return [str(Path(cfg.data.sim_dir) / part)]
    if cfg is not None and part == 'val' and (cfg.data.val or cfg.data.train):
        return list(cfg.data.val or cfg.data.train)
    msg = f'give --data: the model names no {part} recordings'
    raise DataError(msg)


def _evaluate(args: argparse.Namespace) -> Metrics:
    ontology = Ontology.load()
    if args.model.suffix == '.onnx':
        segmenter = make_segmenter(SegmentationModel.load(args.model, warmup=False))
        metadata = segmenter.metadata
        records = read_records(_paths(None, args.data, 'test'), metadata.modality, max_samples=args.max_samples)
        evaluate = evaluate_lidar if metadata.modality is Modality.LIDAR else evaluate_camera
        metrics = evaluate(segmenter, records, metadata.classes)  # type: ignore[operator]
        out = args.out or args.model.with_suffix('.eval')
        title = f'{args.model.name} ({metadata.modality.value}, ONNX Runtime)'
    else:
        net, ckpt = load_checkpoint(args.model)
        cfg = _run_config(ckpt)
        metadata = metadata_from_checkpoint(ckpt)
        data = cfg.data
        paths = _paths(cfg, args.data, 'test')
        records = read_records(paths, cfg.modality, data.topics, data.cache_dir, ontology, args.max_samples)
        metrics = evaluate_net(net, records, metadata.classes, metadata.input_spec)
        out = args.out or args.model.parent / 'eval'
        title = f'{cfg.name} ({cfg.modality}, {cfg.model.arch}/{cfg.model.preset}) on {", ".join(paths)}'
    paths_out = write_report(metrics, out, title)
    print((out / 'metrics.md').read_text())
    print(f'report: {", ".join(str(p) for p in paths_out.values())}')
    return metrics


def _parity_inputs(dataset: Dataset, count: int) -> list[np.ndarray]:
    n = min(count, len(dataset))  # type: ignore[arg-type]
    picks = np.linspace(0, len(dataset) - 1, n).round().astype(int)  # type: ignore[arg-type]
    return [dataset[int(i)][0].numpy()[None] for i in picks]


def _export(args: argparse.Namespace) -> None:
    net, ckpt = load_checkpoint(args.checkpoint)
    cfg = _run_config(ckpt)
    metadata = metadata_from_checkpoint(ckpt)
    ontology = Ontology.load(cfg.data.ontology)
    data = cfg.data
    records = read_records(_paths(cfg, args.data, 'val'), cfg.modality, data.topics, data.cache_dir, ontology)
    ids = metadata.class_ids
    kind = LidarDataset if metadata.modality is Modality.LIDAR else CameraDataset
    dataset = kind(records, metadata.input_spec, ids)  # type: ignore[arg-type]
    inputs = _parity_inputs(dataset, PARITY_SAMPLES)
    entry, check = export_and_publish(
        net,
        metadata,
        args.registry,
        inputs,
        provenance={**metadata.provenance, 'checkpoint': str(Path(args.checkpoint).resolve())},
        make_current=not args.no_current,
    )
    print(f'published {metadata.modality.value} {entry.version} -> {entry.path}')
    print(f'parity on {PARITY_SAMPLES} samples: {json.dumps(check)}')
    if args.fp16:
        half = export_onnx(net, replace(metadata, version=f'{entry.version}-fp16'), args.fp16, fp16=True)
        print(f'float16 variant (GPU) -> {half}; parity: {json.dumps(parity(net, half, inputs))}')


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = get_args_parser().parse_args(argv)
    try:
        if args.command == 'base':
            cfg = load_config(args.config, args.overrides)
            run_dir = train(cfg, resume=args.resume, stop_after=args.stop_after)
            ckpt = read_checkpoint(run_dir / 'best.pt')
            score = 'val mIoU' if ckpt['metrics'] else '-loss'
            print(
                f'{cfg.name}: {ckpt["epoch"]} epochs, best {score} {ckpt["best_metric"]:.4f} -> {run_dir / "best.pt"}'
            )
        elif args.command == 'eval':
            _evaluate(args)
        elif args.command == 'export':
            _export(args)
        else:
            _add_classes(args)
    except _ERRORS as err:
        print(f'css-train {args.command}: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
