"""Continual steps on a tiny simulated bag: every method publishes a model the node loads, classes old + new."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml

from css_perception.core.metadata import Modality
from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry
from css_training.checkpoint import load_checkpoint, read_checkpoint
from css_training.cli import main
from css_training.config import ConfigError, ContinualSection, RunConfig, apply_overrides, load_config, read_values
from css_training.continual import StepLoss, add_classes, grow_model, parse_methods, step_config
from css_training.data.bags import read_lidar_scans
from css_training.data.fusion import fuse_hard_instances, rare_classes
from css_training.data.records import LidarScan
from css_training.datasets import LidarDataset, MultiScanDataset, read_records
from css_training.losses.m2skd import at_student_pixels
from css_training.losses.mib import unbiased_cross_entropy
from css_training.sim.config import CameraConfig, LidarConfig, SceneConfig, SimConfig
from css_training.sim.record import simulate
from css_training.train import finished_run

BASE = ['road', 'sidewalk', 'building', 'vegetation']


@pytest.fixture(scope='module')
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny bag, a base LiDAR and camera model trained for one epoch and published as v1."""
    root = tmp_path_factory.mktemp('continual')
    bag = root / 'bag'
    simulate(
        SimConfig(
            seed=11,
            scans=8,
            lidar=LidarConfig(beams=16, azimuth_steps=256),
            camera=CameraConfig(width=48, height=32, fx=33.0, fy=33.0, rate_hz=10.0),
            scene=SceneConfig(density=4.0),
        ),
        bag,
        progress=False,
    )
    registry = root / 'models'
    for modality, arch, spec in (
        ('lidar', 'rangenet', {'height': 16, 'width': 128, 'fov_up_deg': 2.0, 'fov_down_deg': -24.8}),
        ('camera', 'imagenet', {'height': 32, 'width': 48}),
    ):
        config = root / f'{modality}.yaml'
        config.write_text(
            yaml.safe_dump(
                {
                    'name': f'{modality}_base',
                    'modality': modality,
                    'out_dir': str(root / 'runs'),
                    'threads': 1,
                    'progress': False,
                    'model': {'arch': arch, 'preset': 'lite'},
                    'input': spec,
                    'data': {'train': [str(bag)], 'classes': BASE},
                    'optim': {'epochs': 1, 'batch_size': 4},
                }
            )
        )
        assert main(['base', '--config', str(config)]) == 0
        assert main(['export', str(root / 'runs' / f'{modality}_base' / 'best.pt'), '--registry', str(registry),
                     '--data', str(bag)]) == 0  # fmt: skip
    step = root / 'step.yaml'
    step.write_text(
        yaml.safe_dump(
            {
                'out_dir': str(root / 'runs'),
                'threads': 1,
                'progress': False,
                'optim': {'epochs': 1, 'batch_size': 4},
                'continual': {'hard_classes': ['car', 'person'], 'm2_window': 1},
            }
        )
    )
    return {'root': root, 'bag': bag, 'registry': registry, 'step': step}


@pytest.mark.parametrize(
    ('modality', 'method'),
    [
        ('lidar', 'finetune'),
        ('lidar', 'joint'),
        ('lidar', 'mib'),
        ('lidar', 'lgkd'),
        ('lidar', 'lskd'),
        ('lidar', 'lgkd+m2skd'),
        ('camera', 'lskd'),
        ('camera', 'lgkd+lskd'),
    ],
)
def test_each_method_publishes_old_plus_new_classes(setup: dict, modality: str, method: str) -> None:
    registry = setup['registry']
    name = f'{modality}_{method.replace("+", "_")}'
    argv = ['add-classes', '--from', f'{modality}@v1', '--registry', str(registry), '--bags', str(setup['bag']),
            '--new-classes', 'car,person', '--method', method, '--config', str(setup['step']), '--name', name,
            '--val', str(setup['bag'])]  # fmt: skip
    assert main(argv) == 0
    entry = Registry(registry).current(modality)
    model = SegmentationModel.load(entry.path, providers=['CPUExecutionProvider'])
    meta = model.metadata
    assert [c.name for c in meta.classes] == ['unlabeled', *BASE, 'car', 'person']
    assert meta.parent_version == 'v1'
    assert set(meta.provenance['method'].split('+')) == set(method.split('+'))
    assert meta.provenance['export_parity']['argmax_agreement'] >= 0.999
    assert set(meta.provenance['val_scores']) == {'miou', 'old_miou', 'new_miou'}
    with (setup['root'] / 'runs' / name / 'metrics.csv').open() as f:
        logged = next(csv.reader(f))
    # LSKD's learned trade-off weights are logged beside the terms they weigh.
    assert ('w_ce' in logged and 'w_context' in logged) == ('lskd' in method)


@pytest.mark.parametrize(
    ('modality', 'default', 'lgkd_prev'), [('lidar', {'lgkd', 'm2skd'}, 5.0), ('camera', {'lgkd', 'lskd'}, 2.0)]
)
def test_a_step_without_a_method_takes_the_modality_default(
    setup: dict, modality: str, default: set[str], lgkd_prev: float
) -> None:
    registry = setup['registry']
    argv = ['add-classes', '--from', f'{modality}@v1', '--registry', str(registry), '--bags', str(setup['bag']),
            '--new-classes', 'person', '--config', str(setup['step']), '--name', f'{modality}_default']  # fmt: skip
    assert main(argv) == 0
    meta = SegmentationModel.load(Registry(registry).current(modality).path, warmup=False).metadata
    assert set(meta.provenance['method'].split('+')) == default
    assert [c.name for c in meta.classes] == ['unlabeled', *BASE, 'person']
    # LGKD's background weight, unset in the step config, is the modality's and recorded with the run.
    saved = yaml.safe_load((setup['root'] / 'runs' / f'{modality}_default' / 'config.yaml').read_text())
    assert saved['continual']['lgkd_prev'] == lgkd_prev


def test_a_step_config_keeps_an_lgkd_background_weight_it_sets(setup: dict) -> None:
    parent = read_checkpoint(setup['root'] / 'runs' / 'camera_base' / 'best.pt')
    settings = {'continual': {'lgkd_prev': 7.0}}
    assert step_config(settings, parent, ['person'], [str(setup['bag'])]).continual.lgkd_prev == 7.0
    assert step_config({}, parent, ['person'], [str(setup['bag'])]).continual.lgkd_prev == 2.0


def test_a_finished_run_is_recognised_from_the_same_arguments(setup: dict) -> None:
    """The main job reuses a step that ``css-train add-classes`` finished when ``step_config`` builds the same
    config from the same arguments; a changed setting, or a run cut short, is not reused.
    """
    common = ['--registry', str(setup['registry']), '--bags', str(setup['bag']), '--config', str(setup['step']),
              '--new-classes', 'person', '--name', 'reused']  # fmt: skip
    assert main(['add-classes', '--from', 'lidar@v1', *common, '--set', 'optim.lr=0.003']) == 0
    parent = read_checkpoint(setup['root'] / 'runs' / 'lidar_base' / 'best.pt')

    def config(*overrides: str) -> RunConfig:
        values = apply_overrides(read_values(setup['step']), overrides)
        return step_config(values, parent, ['person'], [str(setup['bag'])], name='reused')

    assert finished_run(config('optim.lr=0.003'))
    assert not finished_run(config('optim.lr=0.002'))
    assert not finished_run(config('optim.lr=0.003', 'optim.epochs=2'))  # one epoch of two is not finished


def test_two_steps_in_a_row_chain_parents(setup: dict) -> None:
    registry = setup['registry']
    common = ['--registry', str(registry), '--bags', str(setup['bag']), '--config', str(setup['step']),
              '--method', 'lgkd']  # fmt: skip
    assert main(['add-classes', '--from', 'lidar@v1', '--new-classes', 'car', '--name', 'chain1', *common]) == 0
    first = Registry(registry).current('lidar').version
    assert (
        main(['add-classes', '--from', f'lidar@{first}', '--new-classes', 'person', '--name', 'chain2', *common]) == 0
    )
    meta = SegmentationModel.load(Registry(registry).current('lidar').path, warmup=False).metadata
    assert meta.parent_version == first
    assert [c.name for c in meta.classes] == ['unlabeled', *BASE, 'car', 'person']


def test_the_teacher_is_not_changed_and_the_student_starts_as_the_parent(setup: dict) -> None:
    parent, ckpt = load_checkpoint(setup['root'] / 'runs' / 'lidar_base' / 'best.pt')
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    student = grow_model(parent, 2).eval()
    x = torch.randn(1, 5, 16, 128)
    with torch.no_grad():
        p_old, q = parent(x).softmax(1), student(x).softmax(1)
    merged = torch.cat([q[:, :1] + q[:, -2:].sum(1, keepdim=True), q[:, 1:-2]], dim=1)
    assert torch.allclose(merged, p_old, atol=1e-5)
    values = yaml.safe_load(setup['step'].read_text())
    values.update(name='teacher_check', modality='lidar', input=ckpt['input_spec'], model={'arch': 'rangenet'})
    values['data'] = {'train': [str(setup['bag'])], 'classes': ['car']}
    values['continual']['method'] = 'lgkd+lskd'
    cfg = load_config(None, [f'{k}={yaml.safe_dump(v, default_flow_style=True).strip()}' for k, v in values.items()])
    add_classes(cfg, parent, ckpt, 'v1')
    for name, tensor in parent.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_bad_steps_are_refused(setup: dict, capsys: pytest.CaptureFixture[str]) -> None:
    common = ['--registry', str(setup['registry']), '--bags', str(setup['bag']), '--config', str(setup['step'])]
    assert main(['add-classes', '--from', 'lidar@v1', '--new-classes', 'road', *common]) == 2
    assert 'already knows' in capsys.readouterr().err
    assert main(['add-classes', '--from', 'camera@v1', '--new-classes', 'car', '--method', 'm2skd', *common]) == 2
    assert 'm2skd needs LiDAR' in capsys.readouterr().err
    assert main(['add-classes', '--from', 'lidar@v1', '--new-classes', 'car', '--method', 'mib+finetune', *common]) == 2
    assert 'baselines' in capsys.readouterr().err
    assert main(['add-classes', '--from', 'lidar@v99', '--new-classes', 'car', *common]) == 2
    assert 'v99' in capsys.readouterr().err
    assert main(['add-classes', '--from', 'lidar@v1', '--new-classes', 'person,dragon', *common]) == 2
    assert "class 'dragon' is not in the ontology" in capsys.readouterr().err
    assert main(['add-classes', '--from', 'lidar@v1', '--new-classes', 'person,other-vehicle', *common]) == 2
    assert "the training bags label no point as ['other-vehicle']" in capsys.readouterr().err
    for setting, message in (
        ('m2_teacher=both', "'frozen' or 'shared'"),
        ('m2_teacher_scale=0', 'positive integer'),
        ('m2_teacher_epochs=0', 'positive integer'),
    ):
        argv = ['add-classes', '--from', 'lidar@v1', '--new-classes', 'car', '--method', 'lgkd+m2skd',
                '--set', f'continual.{setting}', *common]  # fmt: skip
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match='unknown method'):
        parse_methods('lgkd+magic', Modality.LIDAR)


def test_scans_without_poses_run_the_lidar_default_without_m2skd_and_refuse_other_m2skd_steps(
    setup: dict, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    registry = setup['registry']
    common = ['--from', 'lidar@v1', '--registry', str(registry), '--bags', str(setup['bag']), '--config',
              str(setup['step']), '--new-classes', 'person', '--set', 'data.topics.pose_source=none']  # fmt: skip
    published = Registry(registry).current('lidar').version
    assert main(['add-classes', *common, '--method', 'mib+m2skd', '--name', 'unposed_m2skd']) == 2
    assert 'm2skd needs a pose for every scan: 8 of 8 step scans have no pose' in capsys.readouterr().err
    assert Registry(registry).current('lidar').version == published  # nothing published
    assert main(['add-classes', *common, '--name', 'unposed_default']) == 0
    assert 'the default lgkd+m2skd needs poses' in caplog.text
    meta = SegmentationModel.load(Registry(registry).current('lidar').path, warmup=False).metadata
    assert meta.provenance['method'] == 'lgkd'
    assert meta.parent_version == 'v1'


def pose(x: float) -> np.ndarray:
    out = np.eye(4)
    out[0, 3] = x
    return out


def test_fusion_moves_hard_instances_where_the_poses_and_icp_say() -> None:
    rng = np.random.default_rng(0)
    person = rng.normal(0, 0.2, (40, 3)) + np.array([10.0, 2.0, 0.0])  # in the odom frame at scan 0
    pole = np.column_stack([np.full(20, 5.0), np.full(20, -3.0), np.linspace(0, 4, 20)])
    car = rng.normal(0, 0.5, (30, 3)) + np.array([8.0, -6.0, 0.0])
    ghost = rng.normal(0, 0.2, (15, 3)) + np.array([20.0, 0.0, 0.0])  # an instance scan 0 does not hold

    def scan(points_odom: list[np.ndarray], labels: list[int], x: float) -> LidarScan:
        xyz = np.concatenate(points_odom) - np.array([x, 0.0, 0.0])  # sensor frame of a sensor at (x, 0, 0)
        lab = np.concatenate([np.full(len(p), v, np.uint32) for p, v in zip(points_odom, labels, strict=True)])
        return LidarScan(0, np.column_stack([xyz, np.ones(len(xyz))]).astype(np.float32), lab, pose(x))

    person_label = 30 | 5 << 16
    scans = [
        scan([person[:20]], [person_label], 0.0),
        scan(
            [person[20:] + np.array([0.6, 0.0, 0.0]), pole, car, ghost],
            [person_label, 80, 10 | 7 << 16, 30 | 9 << 16],
            1.5,
        ),
    ]
    points, labels = fuse_hard_instances(scans, 0, hard_ids=[30, 80], window=1)
    assert len(points) == 20 + 20 + 20  # scan 0, the person's other half, the pole; no car, no ghost
    np.testing.assert_array_equal(labels[:20], np.full(20, person_label))
    fused_person = points[20:][labels[20:] == person_label, :3]
    assert np.linalg.norm(fused_person.mean(0) - person[:20].mean(0)) < 0.3  # moved by 0.6 m, brought back
    fused_pole = points[20:][labels[20:] == 80, :3]
    np.testing.assert_allclose(fused_pole, pole, atol=1e-5)  # static: the poses alone, into scan 0's frame
    assert rare_classes({0: 500, 40: 900, 30: 3, 80: 2}) == [30, 80]
    alone, _ = fuse_hard_instances(scans, 0, hard_ids=[30, 80], window=1, span=(0, 1))
    assert len(alone) == 20  # its recording ends at scan 0: nothing fused


def test_multi_scan_fusion_stays_inside_each_recording(setup: dict) -> None:
    from css_perception.core.metadata import LidarInputSpec

    spec = LidarInputSpec(height=16, width=128, fov_up_deg=2.0, fov_down_deg=-24.8)
    one = read_records([setup['bag']], Modality.LIDAR)
    two = read_records([setup['bag'], setup['bag']], Modality.LIDAR)
    last = len(one) - 1
    fused = MultiScanDataset(LidarDataset(two, spec, [0, 40, 10, 30], labelled=[10, 30]), [10, 30], window=2)
    expected = [[0, last + 1], [0, last + 1], [last + 1, 2 * last + 2]]
    np.testing.assert_array_equal(fused.spans[[0, last, last + 1]], expected)
    within = MultiScanDataset(LidarDataset(one, spec, [0, 40, 10, 30], labelled=[10, 30]), [10, 30], window=2)
    points, labels = fused.fused(last)
    np.testing.assert_array_equal(points, within.fused(last)[0])
    np.testing.assert_array_equal(labels, within.fused(last)[1])
    across, _ = fuse_hard_instances(two, last, [10, 30], window=2)  # what ignoring the boundary would fuse
    assert len(across) > len(points)


def test_multi_scan_samples_add_points_only_to_the_teacher(setup: dict) -> None:
    scans = read_lidar_scans(setup['bag'])
    spec_values = {'height': 16, 'width': 128, 'fov_up_deg': 2.0, 'fov_down_deg': -24.8}
    from css_perception.core.metadata import LidarInputSpec

    base = LidarDataset(scans, LidarInputSpec(**spec_values), [0, 40, 10, 30], labelled=[10, 30])
    dataset = MultiScanDataset(base, [10, 30], window=1)
    x, target, xt, _, groups, pixel, seen = dataset[3]
    plain_x, plain_target = base[3]
    assert torch.equal(x, plain_x)
    assert torch.equal(target, plain_target)
    assert set(torch.unique(target).tolist()) <= {0, 2, 3, 255}  # road (channel 1) is not labelled here
    assert (xt != 0).any(dim=0).sum() >= (x != 0).any(dim=0).sum()
    assert ((groups > 0) <= (target >= 2)).all()
    assert torch.equal(pixel, torch.arange(16 * 128).view(16, 128))  # same image size: the same pixel
    assert (seen <= (x != 0).any(dim=0)).all()


def test_the_terms_leave_out_student_points_that_a_fused_point_hides() -> None:
    from css_perception.core.metadata import LidarInputSpec

    spec = LidarInputSpec(height=16, width=128, fov_up_deg=2.0, fov_down_deg=-24.8)
    y, z = np.meshgrid(np.linspace(-0.3, 0.3, 7), np.linspace(-1.5, -0.5, 7))
    road = np.column_stack([np.full(y.size, 10.0), y.ravel(), z.ravel()])
    person = road + np.array([0.0, 4.0, 0.0])
    pole = road[road[:, 2] > -1.0] * 0.5  # halfway to the sensor, in front of the road's upper half

    def scan(parts: list[np.ndarray], labels: list[int]) -> LidarScan:
        xyz = np.concatenate(parts)
        lab = np.concatenate([np.full(len(p), v, np.uint32) for p, v in zip(parts, labels, strict=True)])
        return LidarScan(0, np.column_stack([xyz, np.ones(len(xyz))]).astype(np.float32), lab, pose(0.0))

    person_label = 30 | 5 << 16
    scans = [scan([road, person], [40, person_label]), scan([pole, person], [80, person_label])]
    base = LidarDataset(scans, spec, [0, 40, 30, 80], labelled=None)
    _, target, _, teacher_target, _, _, seen = MultiScanDataset(base, [30, 80], window=1)[0]
    occupied = target != 255
    hidden = occupied & ~seen
    assert hidden.any()
    assert (target[hidden] == 1).all()  # road points behind the fused pole
    assert (teacher_target[hidden] == 3).all()  # the teacher sees the pole there
    assert seen[target == 2].all()  # the person: its fused points are of the same instance
    assert seen[occupied & (teacher_target == 1)].sum() > 0  # the lower half of the road stays in sight
    assert seen[occupied & (teacher_target == 1)].all()


def test_m2skd_terms_compare_only_the_points_the_teacher_sees(setup: dict) -> None:
    parent, _ = load_checkpoint(setup['root'] / 'runs' / 'lidar_base' / 'best.pt')
    generator = torch.Generator().manual_seed(1)
    x, fused_x = torch.randn(2, 2, 5, 16, 128, generator=generator)
    target = torch.randint(0, 7, (2, 16, 128), generator=generator)
    groups = torch.zeros_like(target)
    groups[:, 4:8, 20:40] = 7  # one hard instance per scan
    pixel = torch.arange(16 * 128).view(1, 16, 128).expand(2, -1, -1)
    student = grow_model(parent, 2).eval()
    loss = StepLoss(frozenset({'lgkd', 'm2skd'}), ContinualSection(), parent.eval(), 5, 2, student)
    loss.multi_scan_teacher = grow_model(parent, 2).eval()
    with torch.no_grad():  # a teacher that differs from the student
        loss.multi_scan_teacher.classifier.bias.add_(torch.randn(7, generator=generator))
        loss.multi_scan_teacher.head[0][0].weight.mul_(-1.0)

    def m2_terms(seen: torch.Tensor, step_target: torch.Tensor) -> tuple[float, float]:
        terms = loss(student, (x, step_target, fused_x, step_target, groups, pixel, seen))
        return terms['m2_logit'].item(), terms['m2_affinity'].item()

    everywhere = torch.ones_like(target, dtype=torch.bool)
    assert min(m2_terms(everywhere, target)) > 0
    assert m2_terms(torch.zeros_like(everywhere), target) == (0.0, 0.0)
    seen = everywhere.clone()
    seen[:, :, 64:] = False
    unlabelled_there = torch.where(seen, target, 255)
    assert m2_terms(seen, target) == pytest.approx(m2_terms(everywhere, unlabelled_there))


def test_a_finer_teacher_image_is_read_at_the_student_points(setup: dict) -> None:
    from css_perception.core.metadata import LidarInputSpec

    scans = read_lidar_scans(setup['bag'])
    spec = LidarInputSpec(height=16, width=128, fov_up_deg=2.0, fov_down_deg=-24.8)
    base = LidarDataset(scans, spec, [0, 40, 10, 30], labelled=[10, 30])
    x, _, xt, teacher_target, _, pixel, seen = MultiScanDataset(base, [10, 30], window=0, teacher_scale=2)[3]
    assert xt.shape == (x.shape[0], 32, 256)
    assert teacher_target.shape == (32, 256)
    occupied = (x != 0).any(dim=0)
    # Nothing fused (window 0): the teacher pixel of each student point holds that same point, so the teacher
    # image read at the student's points is the student's image there.
    read = at_student_pixels(xt[None], pixel[None])[0]
    assert occupied.sum() > 100
    torch.testing.assert_close(read[:, occupied], x[:, occupied])
    assert torch.equal(seen, occupied)
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(128), indexing='ij')
    corner = at_student_pixels(xt[None], (2 * rows * 256 + 2 * cols)[None])[0]  # each 2 x 2 block's first pixel
    assert not torch.equal(corner[:, occupied], x[:, occupied])  # so the per-point pixels matter


def test_the_multi_scan_teacher_learns_the_fused_labels_with_the_step_class_weights(setup: dict) -> None:
    parent, _ = load_checkpoint(setup['root'] / 'runs' / 'lidar_base' / 'best.pt')
    weight = torch.tensor([0.5, 1.0, 1.0, 1.0, 1.0, 4.0, 2.0])  # 5 old channels, 2 new; rare classes weigh more
    loss = StepLoss(frozenset({'lgkd', 'm2skd'}), ContinualSection(), parent.eval(), 5, 2, grow_model(parent, 2),
                    weight)  # fmt: skip
    fused_net = grow_model(parent, 2).eval()
    generator = torch.Generator().manual_seed(0)
    x, fused_x = torch.randn(2, 2, 5, 16, 128, generator=generator)
    fused_target = torch.tensor([0, 5, 6, 255])[torch.randint(0, 4, (2, 16, 128), generator=generator)]
    terms = loss.multi_scan_teacher_loss(fused_net)(fused_net, (x, torch.zeros_like(fused_target), fused_x,
                                                                 fused_target))  # fmt: skip
    assert set(terms) == {'ce', 'kd', 'loss'}  # the step's own loss, without the M2SKD terms that need the teacher
    logits = fused_net(fused_x)
    torch.testing.assert_close(terms['ce'], unbiased_cross_entropy(logits, fused_target, 5, weight=weight))
    assert not torch.allclose(terms['ce'], unbiased_cross_entropy(logits, fused_target, 5))


def test_lskd_ties_the_ce_weight_to_mibs_kd_only(setup: dict) -> None:
    """The equilibrium's tie w_CE = (C_new / C_old) w_KD is the reference's for MiB's channel-mean KD; LGKD's
    channel-sum KD already weighs background lgkd_prev times, and the tie held its camera step's CE down.
    """
    parent, _ = load_checkpoint(setup['root'] / 'runs' / 'camera_base' / 'best.pt')
    ties = {}
    for method in ('lskd', 'lgkd+lskd'):
        loss = StepLoss(parse_methods(method, Modality.CAMERA), ContinualSection(), parent.eval(), 5, 2,
                        grow_model(parent, 2))  # fmt: skip
        assert loss.balance is not None
        ties[method] = loss.balance.ce_kd
    assert ties == {'lskd': ('ce', 'kd', 2 / 5), 'lgkd+lskd': None}


def test_a_finer_multi_scan_teacher_publishes_a_student_sized_model(setup: dict) -> None:
    argv = ['add-classes', '--from', 'lidar@v1', '--registry', str(setup['registry']), '--bags', str(setup['bag']),
            '--new-classes', 'car,person', '--method', 'lgkd+m2skd', '--config', str(setup['step']),
            '--name', 'finer_teacher', '--set', 'continual.m2_teacher_scale=2']  # fmt: skip
    assert main(argv) == 0
    meta = SegmentationModel.load(Registry(setup['registry']).current('lidar').path, warmup=False).metadata
    assert (meta.input_spec.height, meta.input_spec.width) == (16, 128)
    assert [c.name for c in meta.classes] == ['unlabeled', *BASE, 'car', 'person']


def test_the_multi_scan_teacher_can_train_longer_than_its_student(
    setup: dict, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ['add-classes', '--from', 'lidar@v1', '--registry', str(setup['registry']), '--bags', str(setup['bag']),
            '--new-classes', 'car,person', '--method', 'lgkd+m2skd', '--config', str(setup['step']),
            '--name', 'longer_teacher', '--set', 'continual.m2_teacher_epochs=3']  # fmt: skip
    with caplog.at_level('INFO', logger='css_training.continual'):
        assert main(argv) == 0
    epochs = [r.getMessage().split(':')[0] for r in caplog.records if 'epoch' in r.getMessage()]
    assert epochs == [*(f'multi-scan teacher epoch {e}' for e in (1, 2, 3)), 'lgkd+m2skd epoch 1']
