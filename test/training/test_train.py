"""Base training on a tiny simulated bag: loss goes down, resume is exact, eval and export through the CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from css_perception.core.metadata import ClassInfo
from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry
from css_perception.runtime.segmenter import make_segmenter
from css_training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from css_training.cli import main
from css_training.config import ConfigError, load_config
from css_training.data.bags import read_lidar_scans
from css_training.evaluate import ConfusionMatrix, write_report
from css_training.models import ModelConfig, build_model
from css_training.sim.config import CameraConfig, LidarConfig, SimConfig
from css_training.sim.record import simulate
from css_training.train import place_model, train

CLASSES = ['car', 'road', 'sidewalk', 'building', 'vegetation']


@pytest.fixture(scope='module')
def tiny_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp('sim') / 'tiny'
    config = SimConfig(
        seed=5,
        scans=6,
        lidar=LidarConfig(beams=16, azimuth_steps=256),
        camera=CameraConfig(width=48, height=32, fx=33.0, fy=33.0, rate_hz=10.0),
    )
    simulate(config, out, progress=False)
    return out


def run_config(tmp_path: Path, bag: Path, modality: str = 'lidar', **optim: object) -> Path:
    values = {
        'name': f'{modality}_tiny',
        'modality': modality,
        'out_dir': str(tmp_path / 'runs'),
        'seed': 3,
        'deterministic': True,
        'threads': 1,
        'progress': False,
        'model': {'arch': 'rangenet' if modality == 'lidar' else 'imagenet', 'preset': 'lite', 'dropout': 0.0},
        'input': (
            {'height': 16, 'width': 128, 'fov_up_deg': 2.0, 'fov_down_deg': -24.8}
            if modality == 'lidar'
            else {'height': 32, 'width': 48}
        ),
        'data': {'train': [str(bag)], 'val': [str(bag)], 'classes': CLASSES},
        'optim': {'epochs': 4, 'batch_size': 2, 'lr': 0.01, **optim},
    }
    path = tmp_path / f'{modality}.yaml'
    path.write_text(yaml.safe_dump(values))
    return path


def losses(run_dir: Path) -> list[float]:
    with (run_dir / 'metrics.csv').open() as f:
        return [float(row['loss']) for row in csv.DictReader(f)]


@pytest.mark.parametrize('modality', ['lidar', 'camera'])
def test_training_lowers_the_loss_and_writes_its_records(tmp_path: Path, tiny_bag: Path, modality: str) -> None:
    cfg = load_config(run_config(tmp_path, tiny_bag, modality))
    run_dir = train(cfg)
    values = losses(run_dir)
    assert len(values) == 4
    assert values[-1] < values[0]
    assert (run_dir / 'best.pt').exists()
    assert (run_dir / 'last.pt').exists()
    assert any((run_dir / 'tb').iterdir())
    saved = yaml.safe_load((run_dir / 'config.yaml').read_text())
    assert saved['data']['classes'] == CLASSES
    assert saved['optim']['epochs'] == 4
    ckpt = read_checkpoint(run_dir / 'last.pt')
    assert [c['name'] for c in ckpt['classes']] == ['unlabeled', *CLASSES]
    assert ckpt['epoch'] == 4
    assert 0.0 <= ckpt['metrics']['miou'] <= 1.0


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path, tiny_bag: Path) -> None:
    config = run_config(tmp_path, tiny_bag, epochs=3)
    straight = train(load_config(config, ['name=straight']))
    assert main(['base', '--config', str(config), '--set', 'name=cut', '--stop-after', '1']) == 0
    assert read_checkpoint(tmp_path / 'runs' / 'cut' / 'last.pt')['epoch'] == 1
    assert main(['base', '--config', str(config), '--set', 'name=cut', '--resume']) == 0
    a = read_checkpoint(straight / 'last.pt')
    b = read_checkpoint(tmp_path / 'runs' / 'cut' / 'last.pt')
    assert a['epoch'] == b['epoch'] == 3
    for name, tensor in a['model'].items():
        assert torch.equal(tensor, b['model'][name]), name
    assert losses(straight) == losses(tmp_path / 'runs' / 'cut')


@pytest.mark.parametrize(('arch', 'in_channels', 'size'), [('rangenet', 5, (16, 128)), ('imagenet', 3, (32, 48))])
def test_a_placed_model_computes_and_saves_what_the_plain_one_does(arch: str, in_channels: int, size: tuple) -> None:
    torch.manual_seed(0)
    plain = build_model(ModelConfig(arch=arch, in_channels=in_channels, num_classes=6)).train()
    placed = place_model(copy.deepcopy(plain), torch.device('cpu'))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in placed.parameters() if p.dim() == 4)
    inputs = torch.randn(2, in_channels, *size)
    target = torch.randint(0, 6, (2, *size))
    logits, grads = [], []
    for net in (plain, placed):
        torch.manual_seed(1)  # the same dropout mask
        logits.append(net(inputs))
        torch.nn.functional.cross_entropy(logits[-1], target).backward()
        grads.append([p.grad for p in net.parameters()])
    assert logits[0].shape == (2, 6, *size)
    torch.testing.assert_close(logits[1], logits[0], atol=1e-4, rtol=1e-3)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    reloaded = build_model(ModelConfig(arch=arch, in_channels=in_channels, num_classes=6)).eval()
    reloaded.load_state_dict(placed.state_dict())
    torch.testing.assert_close(reloaded(inputs), placed.eval()(inputs), atol=1e-4, rtol=1e-3)


def test_a_run_is_not_overwritten_and_resume_needs_a_run(
    tmp_path: Path, tiny_bag: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run_config(tmp_path, tiny_bag, epochs=1)
    assert main(['base', '--config', str(config), '--resume']) == 2
    assert 'cannot resume' in capsys.readouterr().err
    assert main(['base', '--config', str(config)]) == 0
    assert main(['base', '--config', str(config)]) == 2
    assert 'already holds a run' in capsys.readouterr().err


def test_files_that_are_not_checkpoints_are_named_as_such(
    tmp_path: Path, tiny_bag: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run_config(tmp_path, tiny_bag, epochs=1)
    assert main(['base', '--config', str(config)]) == 0
    real = tmp_path / 'runs' / 'lidar_tiny' / 'best.pt'
    (tmp_path / 'notes.pt').write_text('not a checkpoint')
    (tmp_path / 'cut.pt').write_bytes(real.read_bytes()[:2000])
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    for name, message in (
        ('notes.pt', 'is not a torch checkpoint, or is truncated'),
        ('cut.pt', 'is not a torch checkpoint, or is truncated'),
        ('other.pt', 'is not a css_training checkpoint'),
        ('missing.pt', 'cannot read checkpoint'),
    ):
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(tmp_path / name)
    assert main(['eval', str(tmp_path / 'notes.pt'), '--data', str(tiny_bag)]) == 2
    assert 'notes.pt is not a torch checkpoint' in capsys.readouterr().err
    assert read_checkpoint(real)['model_config']


def test_a_run_that_cannot_start_here_is_refused_in_one_line(
    tmp_path: Path, tiny_bag: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run_config(tmp_path, tiny_bag, epochs=1)
    for setting, message in (
        ('device=cuda:99', "device 'cuda:99' asked for, but this torch"),
        ('device=gpu', "device 'gpu'"),
        ('model.arch=unet', "unknown model architecture 'unet'"),
    ):
        assert main(['base', '--config', str(config), '--set', setting]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'runs').exists()
    (tmp_path / 'a_file').write_text('')
    assert main(['base', '--config', str(config), '--set', f'out_dir={tmp_path / "a_file" / "runs"}']) == 2
    assert f"css-train base: [Errno 20] Not a directory: '{tmp_path / 'a_file' / 'runs'}" in capsys.readouterr().err


def test_bad_configs_are_refused_with_the_key_named(tmp_path: Path, tiny_bag: Path) -> None:
    config = run_config(tmp_path, tiny_bag)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['optim.learning_rate'\]"):
        load_config(config, ['optim.learning_rate=0.1'])
    with pytest.raises(ConfigError, match=r'optim\.epochs: expected int'):
        load_config(config, ['optim.epochs=many'])
    with pytest.raises(ConfigError, match='modality must be one of'):
        load_config(config, ['modality=radar'])
    with pytest.raises(ConfigError, match=r'out of range: seed=-1 \(in \[0, 2\*\*32\)\); optim.lr=-0.1 \(> 0\)'):
        load_config(config, ['optim.lr=-0.1', 'seed=-1'])
    for setting in (
        'num_workers=-1',
        'eval_every=0',
        'threads=0',
        'optim.weight_decay=-1',
        'optim.warmup=2',
        'continual.lgkd_prev=-5',
        'continual.m2_window=-1',
    ):
        with pytest.raises(ConfigError, match=f'out of range: {setting.split("=")[0]}='):
            load_config(config, [setting])


def test_export_cli_publishes_a_model_whose_node_labels_equal_torch(tmp_path: Path, tiny_bag: Path) -> None:
    run_dir = train(load_config(run_config(tmp_path, tiny_bag, epochs=1)))
    registry = tmp_path / 'models'
    assert (
        main(['export', str(run_dir / 'best.pt'), '--registry', str(registry), '--fp16', str(tmp_path / 'h.onnx')]) == 0
    )
    entry = Registry(registry).current('lidar')
    segmenter = make_segmenter(SegmentationModel.load(entry.path, warmup=False))
    assert [c.name for c in segmenter.metadata.classes] == ['unlabeled', *CLASSES]
    assert segmenter.metadata.provenance['run'] == 'lidar_tiny'
    assert segmenter.metadata.provenance['export_parity']['argmax_agreement'] >= 0.999
    net, _ = load_checkpoint(run_dir / 'best.pt')
    scan = read_lidar_scans(tiny_bag)[2]
    result = segmenter.segment(scan.points[:, :3], scan.points[:, 3])
    with torch.no_grad():
        pixels = net(torch.from_numpy(result.projection.image[None])).argmax(1)[0].numpy()
    ids = np.array(segmenter.metadata.class_ids)
    expected = ids[pixels[result.projection.rows, result.projection.cols]]
    np.testing.assert_array_equal(result.labels, expected)
    assert SegmentationModel.load(tmp_path / 'h.onnx', warmup=False).metadata.version.endswith('-fp16')


def test_eval_cli_scores_checkpoint_and_onnx_alike(tmp_path: Path, tiny_bag: Path) -> None:
    run_dir = train(load_config(run_config(tmp_path, tiny_bag, epochs=1)))
    registry = tmp_path / 'models'
    assert main(['export', str(run_dir / 'best.pt'), '--registry', str(registry)]) == 0
    assert main(['eval', str(run_dir / 'best.pt'), '--data', str(tiny_bag)]) == 0
    onnx_path = Registry(registry).current('lidar').path
    assert main(['eval', str(onnx_path), '--data', str(tiny_bag), '--out', str(tmp_path / 'onnx_eval')]) == 0
    torch_report = json.loads((run_dir / 'eval' / 'metrics.json').read_text())
    onnx_report = json.loads((tmp_path / 'onnx_eval' / 'metrics.json').read_text())
    # Same model, same points: the confusion matrices may differ only where ONNX and torch argmax differ.
    a, b = np.array(torch_report['confusion']), np.array(onnx_report['confusion'])
    assert a.sum() == b.sum() == sum(len(s.points) for s in read_lidar_scans(tiny_bag))
    assert np.abs(a - b).sum() <= 0.002 * a.sum()
    for name in ('iou.png', 'confusion.png', 'metrics.md'):
        assert (run_dir / 'eval' / name).stat().st_size > 0


def test_confusion_metrics_on_a_hand_made_case(tmp_path: Path) -> None:
    classes = (ClassInfo(0, 'unlabeled', (0, 0, 0)), ClassInfo(10, 'car', (1, 1, 1)), ClassInfo(40, 'road', (2, 2, 2)))
    classes += (ClassInfo(50, 'building', (3, 3, 3)),)
    target = np.array([0, 1, 1, 1, 2, 2, 2, 2, 255, 255])
    pred = np.array([1, 1, 1, 2, 2, 2, 2, 0, 3, 3])
    confmat = ConfusionMatrix(4)
    confmat.update(target, pred)
    metrics = confmat.metrics(classes)
    # car: TP 2, FN 1, FP 1 (the background point) -> 2/4; road: TP 3, FN 1, FP 1 -> 3/5; building: unseen.
    np.testing.assert_allclose(metrics.iou[1:3], [0.5, 0.6])
    assert np.isnan(metrics.iou[3])
    assert metrics.miou == pytest.approx(0.55)
    assert metrics.accuracy == pytest.approx(5 / 8)
    assert metrics.mean_iou(['road']) == pytest.approx(0.6)
    paths = write_report(metrics, tmp_path / 'report', 'hand-made')
    report = json.loads(paths['metrics.json'].read_text())
    assert report['miou'] == 0.55
    assert report['classes'][3] == {'id': 50, 'name': 'building', 'iou': None, 'support': 0}
    assert '| car | 10 | 50.0 | 3 |' in paths['metrics.md'].read_text()
