"""css-bench continual on a tiny preset: every chain runs, the JSON and the docs section are written."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from css_perception.core.metadata import Modality
from css_training.bench_cli import main
from css_training.benchmark import (
    BenchmarkConfig,
    _chains,
    _in_order,
    _methods,
    compare_paired,
    different_bases,
    merge_results,
    render_markdown,
)
from css_training.checkpoint import read_checkpoint
from css_training.config import ConfigError, load_config
from css_training.continual import step_config
from css_training.sim.config import SimConfig

STEP = {'threads': 1, 'optim': {'epochs': 1, 'batch_size': 2}}


def _tiny_preset(tmp_path: Path, **values: object) -> Path:
    """A LiDAR preset of one-epoch steps on a few 16-beam scans, from a two-class base; ``values`` override."""
    sim = tmp_path / 'sim.yaml'
    sim.write_text(yaml.safe_dump({'lidar': {'beams': 16, 'azimuth_steps': 256}, 'camera': {'enabled': False},
                                   'scene': {'density': 4.0}}))  # fmt: skip
    base = tmp_path / 'base.yaml'
    base.write_text(
        yaml.safe_dump(
            {
                'name': 'lidar_base',
                'modality': 'lidar',
                'out_dir': str(tmp_path / 'runs'),
                'threads': 1,
                'progress': False,
                'input': {'height': 16, 'width': 128, 'fov_up_deg': 2.0, 'fov_down_deg': -24.8},
                'data': {'sim_config': str(sim), 'sim_dir': str(tmp_path / 'sim'), 'classes': ['road', 'building'],
                         'sim_scans': {'train': 4, 'val': 2, 'test': 2}},
                'optim': {'epochs': 1, 'batch_size': 2},
            }
        )
    )  # fmt: skip
    preset = tmp_path / 'tiny.yaml'
    preset.write_text(
        yaml.safe_dump(
            {
                'name': 'tiny',
                'seeds': [0],
                'sim_config': str(sim),
                'sim_dir': str(tmp_path / 'bench_sim'),
                'sim_scans': {'train': 4, 'val': 2, 'test': 2, 'new': 4},
                'modalities': {'lidar': {'base': str(base), 'step': STEP}},
                'splits': {'2-1x2': [['car'], ['vegetation']]},
                'methods': ['finetune', 'mib', 'joint'],
                'out_dir': str(tmp_path / 'bench'),
                'workers': 2,  # chains in two processes; results still in chain order
                **values,
            }
        )
    )  # fmt: skip
    return preset


def test_tiny_benchmark_writes_results_and_docs(tmp_path: Path) -> None:
    preset = _tiny_preset(tmp_path)
    docs = tmp_path / 'results.md'
    docs.write_text('# Results\n\nkept text\n')
    assert main(['continual', '--config', str(preset), '--docs', str(docs)]) == 0
    results = json.loads((tmp_path / 'bench' / 'continual_tiny.json').read_text())
    assert [(r['method'], len(r['steps'])) for r in results['runs']] == [('finetune', 2), ('mib', 2), ('joint', 2)]
    last = results['runs'][1]['steps'][-1]
    assert set(last['iou']) == {'road', 'building', 'car', 'vegetation'}
    assert set(last['scores']) == {'miou', 'old_miou', 'new_miou'}
    # After the second step both added classes count as new, the base classes as old.
    for key, names in (('new_miou', ['car', 'vegetation']), ('old_miou', ['road', 'building'])):
        values = [last['iou'][n] for n in names if last['iou'][n] is not None]
        expected = sum(values) / len(values) if values else math.nan
        assert last['scores'][key] == pytest.approx(expected, nan_ok=True)
    assert last['seconds'] > 0
    # The base model is scored on the same test sequence, over its own classes only.
    parent = results['parents']['lidar']
    assert set(parent['iou']) == {'road', 'building'}
    scored = [v for v in parent['iou'].values() if v is not None]
    assert parent['old_miou'] == pytest.approx(sum(scored) / len(scored))
    assert results['runs'][1]['seconds'] == pytest.approx(sum(s['seconds'] for s in results['runs'][1]['steps']))
    text = docs.read_text()
    assert text.startswith('# Results\n\nkept text\n')
    assert '| mib |' in text
    assert re.search(r'\| mib \|( [\d.]+ ± [\d.]+ \|){3} [\d.]+ / [\d.]+ \| 1 \|', text)  # mIoU after steps 1, 2
    assert f'| base model, before the steps | {100 * parent["old_miou"]:.1f} |' in text
    car, vegetation = (last['iou'][n] for n in ('car', 'vegetation'))
    cells = ' | '.join('–' if v is None else f'{100 * v:.1f}' for v in (car, vegetation))
    assert '| method | car | vegetation |' in text
    assert f'| mib | {cells} |' in text  # the added classes' IoU, in the order the steps add them
    assert (tmp_path / 'img' / 'continual_tiny_lidar_2-1x2.png').exists()
    # Rendering again replaces the section instead of appending a second one.
    assert main(['continual', '--config', str(preset), '--docs', str(docs), '--from-json',
                 str(tmp_path / 'bench' / 'continual_tiny.json')]) == 0  # fmt: skip
    assert docs.read_text().count('<!-- continual:tiny:start -->') == 1
    # A partial re-run merged into the results: finished steps with the same config are reused, the merged file
    # keeps the other methods; a changed step setting trains the chain again from its first step.
    merged = tmp_path / 'merged.json'
    merged.write_text((tmp_path / 'bench' / 'continual_tiny.json').read_text())
    step1 = tmp_path / 'bench' / 'tiny' / 'lidar' / '2-1x2' / 'mib' / 'seed0' / 'step1' / 'last.pt'
    before = step1.stat().st_mtime_ns
    assert main(['continual', '--config', str(preset), '--methods', 'mib', '--merge', str(merged)]) == 0
    assert step1.stat().st_mtime_ns == before
    reused = [r for r in json.loads(merged.read_text())['runs'] if r['method'] == 'mib']
    assert reused[0]['seconds'] == results['runs'][1]['seconds']  # a reused step keeps its training time
    assert [r['method'] for r in json.loads(merged.read_text())['runs']] == ['finetune', 'mib', 'joint']  # in place
    # A step saved before a setting existed (its default keeps the old behaviour) is still reused.
    saved = step1.parent / 'config.yaml'
    older = yaml.safe_load(saved.read_text())
    del older['continual']['m2_teacher_scale']
    saved.write_text(yaml.safe_dump(older))
    assert main(['continual', '--config', str(preset), '--methods', 'mib', '--merge', str(merged)]) == 0
    assert step1.stat().st_mtime_ns == before
    values = yaml.safe_load(preset.read_text())
    values['modalities']['lidar']['step']['continual'] = {'kd_weight': 5.0}
    values['workers'] = 1  # in this process
    preset.write_text(yaml.safe_dump(values))
    assert main(['continual', '--config', str(preset), '--methods', 'mib', '--merge', str(merged)]) == 0
    assert step1.stat().st_mtime_ns != before
    assert len(json.loads(merged.read_text())['runs']) == 3
    # Merging into the file the run itself writes keeps the runs it held.
    own = tmp_path / 'bench' / 'continual_tiny.json'
    own.write_text(merged.read_text())
    assert main(['continual', '--config', str(preset), '--methods', 'mib', '--merge', str(own)]) == 0
    assert [r['method'] for r in json.loads(own.read_text())['runs']] == ['finetune', 'mib', 'joint']
    # Merging into a file that does not exist yet starts it.
    fresh = tmp_path / 'fresh.json'
    argv = ['continual', '--config', str(preset), '--methods', 'mib', '--merge', str(fresh), '--docs', str(docs)]
    assert main(argv) == 0
    assert [r['method'] for r in json.loads(fresh.read_text())['runs']] == ['mib']


def test_each_seed_can_start_from_its_own_base_model(tmp_path: Path) -> None:
    preset = _tiny_preset(tmp_path, seeds=[0, 1], base_per_seed=True, methods=['finetune'],
                          splits={'2-1': [['car']]}, workers=1)  # fmt: skip
    docs, merged = tmp_path / 'results.md', tmp_path / 'merged.json'
    # One seed at a time, merged: the base scores of both seeds are kept, as in one run of both.
    run = ['continual', '--config', str(preset), '--merge', str(merged)]
    assert main([*run, '--seeds', '0']) == 0
    assert list(json.loads(merged.read_text())['parents']['lidar']['per_seed']) == ['0']
    assert main([*run, '--seeds', '1', '--docs', str(docs)]) == 0
    runs = tmp_path / 'runs'
    # Seed 0 is the base config's own seed: its run keeps the config's name.
    assert [load_config(runs / n / 'config.yaml').seed for n in ('lidar_base', 'lidar_base_seed1')] == [0, 1]
    bases = [runs / n / 'best.pt' for n in ('lidar_base', 'lidar_base_seed1')]
    weights = [read_checkpoint(b)['model']['classifier.weight'] for b in bases]
    assert not torch.equal(*weights)  # trained from another initialisation
    chains = [tmp_path / 'bench' / 'tiny' / 'lidar' / '2-1' / 'finetune' / f'seed{s}' / 'step1' for s in (0, 1)]
    digests = [hashlib.sha256(b.read_bytes()).hexdigest() for b in bases]
    assert [(c / 'parent.sha256').read_text() for c in chains] == digests
    results = json.loads(merged.read_text())
    assert [(r['seed'], r['method']) for r in results['runs']] == [(0, 'finetune'), (1, 'finetune')]
    parent = results['parents']['lidar']
    per_seed = [parent['per_seed'][s]['old_miou'] for s in ('0', '1')]
    assert parent['old_miou'] == pytest.approx(sum(per_seed) / 2)
    std = abs(per_seed[0] - per_seed[1]) / 2
    row = f'| base model, before the steps | {50 * sum(per_seed):.1f} ± {100 * std:.1f} | – | – | – | 2 |'
    assert row in docs.read_text()
    # Back to one shared base: the chain of seed 0 is reused, the one of seed 1 starts from another parent and
    # trains again.
    values = yaml.safe_load(preset.read_text())
    preset.write_text(yaml.safe_dump({**values, 'base_per_seed': False}))
    before = [(c / 'last.pt').stat().st_mtime_ns for c in chains]
    assert main(['continual', '--config', str(preset)]) == 0
    after = [(c / 'last.pt').stat().st_mtime_ns for c in chains]
    assert after[0] == before[0]
    assert after[1] != before[1]
    assert (chains[1] / 'parent.sha256').read_text() == digests[0]
    assert 'per_seed' not in json.loads((tmp_path / 'bench' / 'continual_tiny.json').read_text())['parents']['lidar']


def test_merge_replaces_the_same_runs_and_keeps_the_others() -> None:
    def run(method: str, seed: int, miou: float) -> dict:
        return {'modality': 'camera', 'split': '12-5', 'method': method, 'seed': seed, 'miou': miou}

    earlier = {'name': 'small', 'seeds': [0, 1], 'parents': {'camera': {'old_miou': 0.4}, 'lidar': {'old_miou': 0.7}},
               'runs': [run('mib', 0, 0.1), run('mib', 1, 0.2), run('lgkd', 0, 0.3)]}  # fmt: skip
    later = {'name': 'small', 'seeds': [0, 2], 'parents': {'camera': {'old_miou': 0.5}},
             'runs': [run('lgkd', 0, 0.5), run('lgkd', 2, 0.6)]}  # fmt: skip
    merged = merge_results(earlier, later)
    assert merged['seeds'] == [0, 1, 2]
    # A later run's base score replaces the earlier one.
    assert merged['parents'] == {'camera': {'old_miou': 0.5}, 'lidar': {'old_miou': 0.7}}
    assert [(r['method'], r['seed'], r['miou']) for r in merged['runs']] == [
        ('mib', 0, 0.1),
        ('mib', 1, 0.2),
        ('lgkd', 0, 0.5),
        ('lgkd', 2, 0.6),
    ]
    assert earlier['runs'][2]['miou'] == 0.3  # inputs are not changed
    # A re-run method keeps its rows' place.
    rerun = merge_results(earlier, {'name': 'small', 'runs': [run('mib', 1, 0.7), run('mib', 0, 0.8)]})
    assert [(r['method'], r['seed'], r['miou']) for r in rerun['runs']] == [
        ('mib', 0, 0.8),
        ('mib', 1, 0.7),
        ('lgkd', 0, 0.3),
    ]


def test_merge_keeps_the_base_score_of_every_seed() -> None:
    earlier = {'parents': {'lidar': {'old_miou': 0.5, 'per_seed': {'0': {'old_miou': 0.4}, '10': {'old_miou': 0.6}}},
                           'camera': {'old_miou': 0.3}}, 'runs': []}  # fmt: skip
    later = {'parents': {'lidar': {'old_miou': 0.85, 'per_seed': {'2': {'old_miou': 0.8}, '10': {'old_miou': 0.9}}},
                         'camera': {'old_miou': 0.2}}, 'runs': []}  # fmt: skip
    parents = merge_results(earlier, later)['parents']
    lidar = parents['lidar']['per_seed']
    assert list(lidar) == ['0', '2', '10']  # in seed order; seed 10's later score replaces the earlier one
    assert [lidar[s]['old_miou'] for s in lidar] == [0.4, 0.8, 0.9]
    assert parents['lidar']['old_miou'] == pytest.approx(0.7)
    assert parents['camera'] == {'old_miou': 0.2}  # one shared base: the later score replaces the earlier one


def test_different_bases_names_the_models_both_files_scored_differently() -> None:
    def results(lidar: dict, camera: float) -> dict:
        return {'parents': {'lidar': {'per_seed': lidar}, 'camera': {'old_miou': camera}}, 'runs': []}

    earlier = results({'0': {'old_miou': 0.4}, '2': {'old_miou': 0.6}, '10': {'old_miou': 0.5}}, 0.3)
    later = results({'2': {'old_miou': 0.6}, '10': {'old_miou': 0.7}, '11': {'old_miou': 0.1}}, 0.2)
    assert different_bases(earlier, later) == ['camera', 'lidar seed 10']  # seeds 0 and 11: in one file only
    assert different_bases(earlier, {**later, 'parents': {}}) == []
    assert different_bases(earlier, earlier) == []


def _paired_results() -> dict:
    """LiDAR 12-5 chains of two steps for A (seeds 0-2) and B (seeds 0-3), and a camera chain to be ignored."""

    def run(modality: str, method: str, seed: int, new: float, old: float, bicycle: float | None) -> dict:
        steps = [{'new_classes': ['person'], 'scores': {'new_miou': 0.0, 'old_miou': 0.0}, 'iou': {}},
                 {'new_classes': ['bicycle'], 'scores': {'new_miou': new, 'old_miou': old},
                  'iou': {'road': old, 'person': new, 'bicycle': bicycle}}]  # fmt: skip
        return {'modality': modality, 'split': '12-5', 'method': method, 'seed': seed, 'steps': steps}

    a = [run('lidar', 'lgkd+m2skd (default)', s, n, o, 0.1)
         for s, n, o in [(0, 0.30, 0.7), (1, 0.34, 0.8), (2, 0.32, 0.9)]]  # fmt: skip
    b = [run('lidar', 'lgkd', s, n, o, c) for s, n, o, c in [(0, 0.28, 0.6, 0.2), (1, 0.35, 0.75, 0.3),
                                                              (2, 0.29, 0.8, None), (3, 0.9, 0.9, 0.9)]]  # fmt: skip
    return {'runs': [*a, *b, run('camera', 'lgkd', 0, 0.9, 0.9, 0.9)]}


def test_paired_comparison_uses_the_seeds_both_methods_ran() -> None:
    comparison = compare_paired(_paired_results(), 'lidar', '12-5', 'lgkd+m2skd', 'lgkd')
    assert comparison['seeds'] == [0, 1, 2]  # seed 3 has no lgkd+m2skd run
    assert list(comparison['scores']) == ['new_miou', 'old_miou', 'person', 'bicycle']  # both steps' classes
    new = comparison['scores']['new_miou']
    assert [v for pair in new['per_seed'] for v in pair] == pytest.approx([30, 28, 34, 35, 32, 29])
    # Differences +2, -1, +3: mean 4/3, sd sqrt(13/3), t = (4/3) / (sd / sqrt(3)).
    assert new['mean'] == pytest.approx([32, 92 / 3])
    assert new['diff'] == pytest.approx(4 / 3)
    assert new['sd'] == pytest.approx(math.sqrt(13 / 3))
    assert new['t'] == pytest.approx((4 / 3) / math.sqrt(13 / 9))
    assert (new['ahead'], new['behind'], new['n']) == (2, 1, 3)
    assert new['sign_p'] == pytest.approx(1.0)  # 2 * P(X <= 1), X ~ Bin(3, 1/2)
    old = comparison['scores']['old_miou']
    assert (old['ahead'], old['behind'], old['sign_p']) == (3, 0, pytest.approx(0.25))  # 2 * 1/8
    assert old['diff'] == pytest.approx(25 / 3)
    bicycle = comparison['scores']['bicycle']
    assert bicycle['n'] == 2  # seed 2 of lgkd has no bicycle IoU
    assert bicycle['diff'] == pytest.approx(-15)
    results = _paired_results()
    for run in results['runs']:
        run['steps'][-1]['iou']['person'] = None  # a class no seed scored
    person = compare_paired(results, 'lidar', '12-5', 'lgkd+m2skd', 'lgkd')['scores']['person']
    assert person['n'] == 0
    assert math.isnan(person['diff'])
    assert person['sign_p'] == 1.0
    with pytest.raises(ValueError, match='no seed ran both mib and lgkd'):
        compare_paired(_paired_results(), 'lidar', '12-5', 'mib', 'lgkd')


def test_css_bench_paired_merges_results_files_and_prints_the_statistics(tmp_path: Path, capsys) -> None:
    runs = _paired_results()['runs']
    first, second = tmp_path / 'first.json', tmp_path / 'second.json'
    first.write_text(json.dumps({'runs': runs[:4]}))
    second.write_text(json.dumps({'runs': runs[4:]}))
    args = ['paired', str(first), str(second), '--modality', 'lidar', '--split', '12-5']
    assert main([*args, '--methods', 'lgkd+m2skd,lgkd']) == 0
    out = capsys.readouterr().out
    assert '| 2 | 32.0 | 29.0 | 90.0 | 80.0 |' in out
    assert '| new mIoU | 32.00 | 30.67 | +1.33 | 2.08 | 1.11 | 2 / 1 of 3 | 1.000 |' in out
    assert '| bicycle IoU | 10.00 | 25.00 | -15.00 | 7.07 | -3.00 | 0 / 2 of 2 | 0.500 |' in out
    assert main([*args, '--methods', 'lgkd']) == 2
    assert 'two methods' in capsys.readouterr().err
    assert main([*args, '--methods', 'mib,lgkd']) == 2
    assert 'no seed ran both' in capsys.readouterr().err
    first.write_text('[1, 2]')
    assert main([*args, '--methods', 'lgkd+m2skd,lgkd']) == 2
    assert 'not a results file' in capsys.readouterr().err
    # Seed 1's base model scored differently in the second file: another model, so no pairing across the files.
    base = {'iou': {'road': 0.9}, 'old_miou': 0.9}
    first.write_text(json.dumps({'runs': runs[:4], 'parents': {'lidar': {'per_seed': {'0': base, '1': base}}}}))
    other = {'0': base, '1': {'iou': {'road': 0.8}, 'old_miou': 0.8}}
    second.write_text(json.dumps({'runs': runs[4:], 'parents': {'lidar': {'per_seed': other}}}))
    assert main([*args, '--methods', 'lgkd+m2skd,lgkd']) == 2
    assert 'the base models of lidar seed 1 differ' in capsys.readouterr().err
    second.write_text(json.dumps({'runs': runs[4:], 'parents': {'lidar': {'per_seed': {'0': base, '2': base}}}}))
    assert main([*args, '--methods', 'lgkd+m2skd,lgkd']) == 0  # the same base for seed 0, seed 2 only here


def test_each_row_shows_its_old_and_new_miou_as_a_share_of_joint_training(tmp_path: Path) -> None:
    def run(method: str, seed: int, old: float, new: float) -> dict[str, object]:
        step = {'new_classes': ['car'], 'scores': {'old_miou': old, 'new_miou': new, 'miou': (old + new) / 2},
                'iou': {'road': old, 'car': new}}  # fmt: skip
        return {'modality': 'lidar', 'split': '1-1', 'method': method, 'seed': seed, 'steps': [step]}

    results = {'name': 't', 'runs': [run('joint', 0, 0.8, 0.4), run('joint', 1, 0.6, 0.2),
                                     run('mib', 0, 0.7, 0.3), run('mib', 1, 0.7, 0.0)]}  # fmt: skip
    text = render_markdown(results, tmp_path)
    # Means over seeds: joint 70 / 30, mib 70 / 15 old / new mIoU.
    assert re.search(r'\| joint \|.*\| 2 \| 100\.0 / 100\.0 \|', text)
    assert re.search(r'\| mib \|.*\| 2 \| 100\.0 / 50\.0 \|', text)
    # No joint row, or a joint that learned nothing: no share.
    assert re.search(r'\| mib \|.*\| 2 \| – \|', render_markdown({**results, 'runs': results['runs'][2:]}, tmp_path))
    flat = [run('joint', 0, 0.8, 0.0), run('mib', 0, 0.4, 0.1)]
    assert re.search(r'\| mib \|.*\| 1 \| 50\.0 / – \|', render_markdown({**results, 'runs': flat}, tmp_path))


def test_the_default_row_is_the_listed_method_or_its_own_run() -> None:
    config = BenchmarkConfig(name='t', methods=('lgkd+lskd', 'default', 'm2skd', 'mib'))
    assert _methods(config, Modality.CAMERA) == [('lgkd+lskd (default)', 'lgkd+lskd'), ('mib', 'mib')]
    assert _methods(config, Modality.LIDAR) == [
        ('lgkd+lskd', 'lgkd+lskd'),
        ('default (lgkd+m2skd)', 'lgkd+m2skd'),
        ('m2skd', 'm2skd'),
        ('mib', 'mib'),
    ]


def test_a_modality_can_list_its_own_methods(tmp_path: Path) -> None:
    preset = tmp_path / 'p.yaml'
    preset.write_text(
        "name: p\nmethods: [mib, lgkd+lskd]\nsplits: {'12-1': [[person]]}\nmodalities:\n"
        '  lidar: {base: config/train/lidar_base.yaml, methods: [mib, default]}\n'
        '  camera: {base: config/train/camera_base.yaml}\n'
    )
    config = BenchmarkConfig.load(preset)
    assert _methods(config, Modality.LIDAR) == [('mib', 'mib'), ('default (lgkd+m2skd)', 'lgkd+m2skd')]
    assert _methods(config, Modality.CAMERA) == [('mib', 'mib'), ('lgkd+lskd (default)', 'lgkd+lskd')]
    config.keep_methods(['lgkd+lskd', 'default'])  # --methods restricts the modality's own list too
    assert _methods(config, Modality.LIDAR) == [('default (lgkd+m2skd)', 'lgkd+m2skd')]
    assert _methods(config, Modality.CAMERA) == [('lgkd+lskd (default)', 'lgkd+lskd')]
    with pytest.raises(ConfigError, match=r"methods \['lskd'\] are not in the preset"):
        config.keep_methods(['lskd'])


def test_skip_leaves_out_a_method_on_one_split_only(tmp_path: Path) -> None:
    preset = tmp_path / 'p.yaml'
    preset.write_text(
        'name: p\nseeds: [0]\nmethods: [mib, lskd, default]\n'
        "splits: {'2-2': [[person, bicycle]], '2-1x2': [[person], [bicycle]]}\n"
        "skip: {'2-1x2': [lskd, default]}\nmodalities:\n  camera: {base: config/train/camera_base.yaml}\n"
    )
    chains = [(split, label) for split, _, label, _, _ in _chains(BenchmarkConfig.load(preset), Modality.CAMERA)]
    assert chains == [('2-2', 'mib'), ('2-2', 'lskd'), ('2-2', 'default (lgkd+lskd)'), ('2-1x2', 'mib')]
    for bad in ("{'2-1x2': [lgkd]}", "{'15-1': [mib]}"):
        preset.write_text(preset.read_text().rsplit('skip:', 1)[0] + f'skip: {bad}\nmodalities: {{}}\n')
        with pytest.raises(ConfigError, match=r'skip\.'):
            BenchmarkConfig.load(preset)


def test_chains_started_out_of_order_are_returned_in_order() -> None:
    jobs = [(2, 1), (2, 2), (2, 3)]
    assert list(_in_order(pow, jobs, workers=2, start=[2, 0, 1])) == [2, 4, 8]
    assert list(_in_order(pow, jobs, workers=1)) == [2, 4, 8]


def test_an_unknown_modality_key_is_refused(tmp_path: Path) -> None:
    preset = tmp_path / 'p.yaml'
    preset.write_text('name: p\nmodalities:\n  lidar: {base: b.yaml, epochs: 3}\n')
    with pytest.raises(ConfigError, match=r"modalities.lidar.*unknown: \['epochs'\]"):
        BenchmarkConfig.load(preset)


def test_a_preset_that_cannot_run_is_refused_before_anything_runs(tmp_path: Path) -> None:
    preset = tmp_path / 'p.yaml'
    preset.write_text(
        "name: p\nworkers: 0\nseeds: [x]\nsplits: {'12-2': [[person, dragon]], '12-1': [person]}\n"
        'methods: [mib, lgkd+magic]\nmodalities:\n  lidar: {base: missing.yaml}\n  camera:\n'
    )
    with pytest.raises(ConfigError) as refused:
        BenchmarkConfig.load(preset)
    for problem in (
        'workers must be an integer >= 1, not 0',
        "seeds must be a non-empty list of integers in [0, 2**32), not ['x']",
        "splits.12-2: ['dragon'] are not ontology classes",
        'splits.12-1: expected a list of steps, each a list of class names',
        "method 'lgkd+magic': unknown method(s) ['magic']",
        'modalities.lidar.base: cannot read run config missing.yaml',
        'modalities.camera needs a base run config',
    ):
        assert problem in str(refused.value)


def test_an_unreadable_preset_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / 'broken.yaml'
    broken.write_text('name: p\nmethods: [mib,\n')
    listed = tmp_path / 'listed.yaml'
    listed.write_text('- mib\n')
    for preset, message in (
        (broken, 'cannot read benchmark preset'),
        (listed, 'a benchmark preset is a mapping, got list'),
        (tmp_path / 'missing.yaml', 'cannot read benchmark preset'),
    ):
        assert main(['continual', '--config', str(preset)]) == 2
        err = capsys.readouterr().err
        assert err.startswith('css-bench: ')
        assert message in err


def test_unknown_splits_and_bad_seeds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    preset = 'config/benchmarks/small.yaml'
    rendered = ['--from-json', 'docs/continual_small.json']  # nothing trains, refused or not
    assert main(['continual', '--config', preset, '--splits', '12-5,9-9', *rendered]) == 2
    assert "small: splits ['9-9'] are not in the preset (it has ['12-1x3', '12-5'])" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(['continual', '--config', preset, '--seeds', '0,one', *rendered])
    assert usage.value.code == 2
    assert "argument --seeds: takes comma-separated integers, got '0,one'" in capsys.readouterr().err


@pytest.mark.parametrize('preset', sorted(Path('config/benchmarks').glob('*.yaml')), ids=lambda p: p.stem)
def test_the_shipped_presets_load_with_their_base_configs(preset: Path) -> None:
    config = BenchmarkConfig.load(preset)
    SimConfig.load(Path(config.sim_config))
    assert set(config.modalities) == {'lidar', 'camera'}
    for name, settings in config.modalities.items():
        base = load_config(settings['base'], settings.get('base_set', ()))
        assert base.modality == name
        parent = {'modality': name, 'input_spec': base.input,
                  'model_config': {'arch': base.model.arch, 'preset': base.model.preset}}  # fmt: skip
        step = step_config(settings.get('step', {}), parent, ['person'], ['new'], ['test'], 'mib')  # valid values
        assert step.data.classes == ('person',)
        methods = [m for _, m in _methods(config, Modality(name))]
        assert ('m2skd' in methods) == (name == 'lidar')
        assert {'joint', 'finetune'} <= set(methods)
