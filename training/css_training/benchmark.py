"""The continual-learning benchmark: class-incremental splits on the simulated data, every method, several seeds.

For each modality, split, method and seed, a chain of continual steps starts from the modality's base model;
after every step the model is scored on the held-out test sequence (all labels) over the classes it knows:
mIoU of the base classes (old), of every class added so far (new) and of all (background excluded), per class.
Steps train on the split's ``new`` recording with only the step's classes labelled (``joint``: every known
class labelled, the upper bound). The base model itself is scored on the same sequence (``parents``): what a
step can keep of the old classes without their labels. A preset may train a base model per seed, so that the
spread over seeds covers the base model's training as well as the steps'.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from css_perception.core.metadata import Modality
from css_perception.core.ontology import Ontology
from css_training.checkpoint import load_checkpoint, read_checkpoint
from css_training.config import ConfigError, RunConfig, load_config, read_mapping
from css_training.continual import DEFAULT_METHODS, add_classes, parse_methods, step_config
from css_training.datasets import read_records
from css_training.evaluate import evaluate_net
from css_training.export import metadata_from_checkpoint
from css_training.sim.config import SimConfig
from css_training.sim.record import generate_split
from css_training.train import finished_run, train

__all__ = [
    'BenchmarkConfig',
    'base_checkpoint',
    'base_checkpoints',
    'compare_paired',
    'merge_results',
    'render_markdown',
    'render_paired',
    'run_continual',
    'score_parent',
    'score_parents',
    'summarise',
]

_log = logging.getLogger(__name__)
_MODALITY_KEYS = ('base', 'base_set', 'step', 'methods')


@dataclass
class BenchmarkConfig:
    """A benchmark preset (``config/benchmarks/*.yaml``).

    Attributes:
        name: preset name; results go to ``<out_dir>/continual_<name>.json``.
        seeds: step seeds (data order, augmentation); with ``base_per_seed`` also the base models' seeds.
        sim_config, sim_dir, sim_scans: the simulated split (``generate_split``: a part is a scan count or a list
            of them, one sequence each); its ``new`` part is the continual recording, ``test`` scores the steps.
        modalities: per modality, ``base`` (a base run config, trained when missing), optionally ``base_set``
            (``key=value`` overrides of it, as ``css-train --set`` takes them), ``step`` (settings merged into
            every step's run config) and optionally ``methods`` (this modality's list instead of ``methods``).
        splits: name -> list of steps, each a list of new class names.
        methods: method lists (``default`` = the package's default for the modality); m2skd runs on LiDAR only.
        base_per_seed: each seed trains its own base models (the base config with ``seed=<seed>``, run name
            suffixed ``_seed<seed>`` for a seed other than the config's own). One shared base left the camera
            step's new-class mIoU at 106 % of joint's on one base and 60-68 % on two others, with a spread over
            step seeds of a few points (docs/lab-notebook.md, fourteenth session): the shared base's spread said
            nothing of that.
        skip: split -> methods (as listed) not run on that split, e.g. a costly combination on the multi-step
            split of a CPU preset.
        out_dir: where runs and results go.
        workers: chains trained at once, each in its own process (set the steps' ``threads`` so that workers x
            threads is the number of cores): the single-threaded parts of a step (data, projection, scoring)
            then overlap with the other chain's convolutions (``bench/bench_workers.py``).
    """

    name: str
    seeds: tuple[int, ...] = (0, 1)
    sim_config: str = 'config/sim/demo.yaml'
    sim_dir: str = 'out/bench/sim'
    sim_scans: dict[str, int | list[int]] = field(
        default_factory=lambda: {'train': 240, 'val': 40, 'test': 60, 'new': 120}
    )
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    splits: dict[str, list[list[str]]] = field(default_factory=dict)
    methods: tuple[str, ...] = (
        'joint', 'finetune', 'mib', 'lgkd', 'lskd', 'm2skd', 'lgkd+m2skd', 'lgkd+lskd', 'default'
    )  # fmt: skip
    skip: dict[str, list[str]] = field(default_factory=dict)
    base_per_seed: bool = False
    out_dir: str = 'out/bench'
    workers: int = 1

    @classmethod
    def load(cls, path: Path) -> BenchmarkConfig:
        """Raises ConfigError: unreadable file, not a mapping, unknown key or bad value."""
        values = read_mapping(path, 'benchmark preset')
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            msg = f'{path}: unknown benchmark keys {unknown}'
            raise ConfigError(msg)
        for name, settings in (values.get('modalities') or {}).items():
            extra = sorted(set(settings or {}) - set(_MODALITY_KEYS))
            if name not in {m.value for m in Modality} or extra:
                msg = (
                    f'{path}: modalities.{name}: expected lidar or camera, with keys {", ".join(_MODALITY_KEYS)} '
                    f'(unknown: {extra})'
                )
                raise ConfigError(msg)
        if 'name' not in values:
            msg = f'{path}: a benchmark preset needs a name'
            raise ConfigError(msg)
        if 'modalities' in values:  # a modality written with no settings is an empty mapping, not None
            values['modalities'] = {k: v or {} for k, v in (values['modalities'] or {}).items()}
        try:
            values = {k: tuple(v) if k in ('seeds', 'methods') else v for k, v in values.items()}
            config = cls(**values)
        except TypeError as err:
            msg = f'{path}: {err}'
            raise ConfigError(msg) from err
        listed = config.listed_methods()
        for split, skipped in config.skip.items():
            if split not in config.splits or not set(skipped) <= listed:
                msg = f'{path}: skip.{split}: expected a split of the preset and methods it lists, got {skipped}'
                raise ConfigError(msg)
        problems = config._problems()
        if problems:
            msg = f'{path}: ' + '; '.join(problems)
            raise ConfigError(msg)
        return config

    def _problems(self) -> list[str]:
        """What would stop the run later, found before it simulates or trains anything."""
        known = {c.name for c in Ontology.load().classes}
        problems = []
        if not (isinstance(self.workers, int) and self.workers >= 1):
            problems.append(f'workers must be an integer >= 1, not {self.workers!r}')
        if not self.seeds or not all(isinstance(s, int) and 0 <= s < 2**32 for s in self.seeds):
            problems.append(f'seeds must be a non-empty list of integers in [0, 2**32), not {list(self.seeds)}')
        if not (isinstance(self.splits, dict) and self.splits):
            problems.append(f'splits must be a non-empty mapping of split names to steps, not {self.splits!r}')
            return problems
        for split, steps in self.splits.items():
            if not steps or not all(isinstance(step, list) and step for step in steps):
                problems.append(f'splits.{split}: expected a list of steps, each a list of class names')
                continue
            unknown = sorted({n for step in steps for n in step} - known)
            if unknown:
                problems.append(f'splits.{split}: {unknown} are not ontology classes')
        for method in sorted(self.listed_methods() - {'default'}):
            try:
                parse_methods(method, Modality.LIDAR)  # the camera leaves m2skd out itself
            except ConfigError as err:
                problems.append(f'method {method!r}: {err}')
        for name, settings in self.modalities.items():
            if not settings.get('base'):
                problems.append(f'modalities.{name} needs a base run config')
                continue
            try:
                load_config(settings['base'], list(settings.get('base_set', ())))
            except ConfigError as err:
                problems.append(f'modalities.{name}.base: {err}')
        return problems

    def listed_methods(self) -> set[str]:
        """Every method named by the preset's list or a modality's own."""
        return set(self.methods).union(*(s.get('methods', ()) for s in self.modalities.values()))

    def keep_splits(self, chosen: Sequence[str]) -> None:
        """Restricts the splits to ``chosen`` (``--splits``).

        Raises:
            ConfigError: a chosen split is not in the preset.
        """
        unknown = sorted(set(chosen) - set(self.splits))
        if unknown:
            msg = f'{self.name}: splits {unknown} are not in the preset (it has {sorted(self.splits)})'
            raise ConfigError(msg)
        self.splits = {k: v for k, v in self.splits.items() if k in chosen}

    def keep_methods(self, chosen: Sequence[str]) -> None:
        """Restricts the method lists, the preset's and each modality's own, to ``chosen`` (``--methods``).

        Raises:
            ConfigError: a chosen method is in none of the lists.
        """
        listed = self.listed_methods()
        unknown = sorted(set(chosen) - listed)
        if unknown:
            msg = f'{self.name}: methods {unknown} are not in the preset (it lists {sorted(listed)})'
            raise ConfigError(msg)
        self.methods = tuple(m for m in self.methods if m in chosen)
        for settings in self.modalities.values():
            if 'methods' in settings:
                settings['methods'] = [m for m in settings['methods'] if m in chosen]


def base_checkpoint(base_config: str, overrides: Sequence[str] = ()) -> Path:
    """The base run's best.pt, trained first when the run does not exist yet."""
    cfg = load_config(base_config, overrides)
    best = cfg.run_dir / 'best.pt'
    if not best.exists():
        _log.info('training the base model %s', cfg.name)
        train(cfg)
    return best


def base_checkpoints(settings: dict[str, Any], seeds: Sequence[int], per_seed: bool) -> dict[int, Path]:
    """Seed -> the base model a chain of that seed starts from (see ``BenchmarkConfig.base_per_seed``)."""
    overrides = list(settings.get('base_set', ()))
    if not per_seed:
        return dict.fromkeys(seeds, base_checkpoint(settings['base'], overrides))
    cfg = load_config(settings['base'], overrides)
    own = {cfg.seed: overrides}
    return {seed: base_checkpoint(settings['base'], own.get(seed, [*overrides, f'seed={seed}',
                                                                    f'name={cfg.name}_seed{seed}']))
            for seed in seeds}  # fmt: skip


def score_parents(
    bases: dict[int, Path], test: Sequence[Path], per_seed: bool, cache_dir: str | None = None
) -> dict[str, Any]:
    """:func:`score_parent` of the one shared base; of a base per seed, each seed's score under ``per_seed``
    (even for one seed, so that a later run of other seeds can be merged in) and their mean old-class mIoU.
    """
    if not per_seed:
        (base,) = set(bases.values())
        return score_parent(base, test, cache_dir)
    return _seed_parents({str(seed): score_parent(path, test, cache_dir) for seed, path in bases.items()})


def _seed_parents(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ordered = dict(sorted(per_seed.items(), key=lambda item: int(item[0])))
    return {'old_miou': float(np.mean([s['old_miou'] for s in ordered.values()])), 'per_seed': ordered}


def score_parent(base: Path, test: Sequence[Path], cache_dir: str | None = None) -> dict[str, Any]:
    """The base model's per-class IoU on the test split (``iou``) and their mean (``old_miou``). A step sees no
    labels of the old classes, so this is what it can keep of them; joint training sees them in the step
    recording and can end above it.
    """
    net, ckpt = load_checkpoint(base)
    metadata = metadata_from_checkpoint(ckpt)
    topics = RunConfig.from_dict(ckpt['run_config']).data.topics
    records = read_records(test, metadata.modality, topics, cache_dir, Ontology.load())
    metrics = evaluate_net(net, records, metadata.classes, metadata.input_spec)
    iou = {c['name']: c['iou'] for c in metrics.to_dict()['classes'][1:]}
    return {'iou': iou, 'old_miou': _chain_scores(iou, [])['old_miou']}


def _methods(config: BenchmarkConfig, modality: Modality) -> list[tuple[str, str]]:
    """(label, method) pairs for the modality (its own list where the preset gives one); m2skd only where there
    are scans. ``default`` runs the modality's default method, unless the list holds that method itself: then its
    row is marked instead.
    """
    default = DEFAULT_METHODS[modality]
    methods = tuple(config.modalities.get(modality.value, {}).get('methods', config.methods))
    out = []
    for label in methods:
        method = default if label == 'default' else label
        if 'm2skd' in method and modality is not Modality.LIDAR:
            continue
        if label == 'default':
            if default in methods:
                continue
            label = f'default ({method})'
        elif method == default:
            label = f'{method} (default)'
        out.append((label, method))
    return out


def _chains(config: BenchmarkConfig, modality: Modality) -> list[tuple[str, list[list[str]], str, str, int]]:
    """(split, steps, label, method, seed) of every chain of the modality, less the preset's ``skip``."""
    return [(split_name, steps, label, method, seed)
            for split_name, steps in config.splits.items()
            for label, method in _methods(config, modality)
            if label.split(' ')[0] not in config.skip.get(split_name, ())
            for seed in config.seeds]  # fmt: skip


def run_continual(config: BenchmarkConfig, only: str | None = None) -> dict[str, Any]:
    """Runs every (modality, split, method, seed) chain; returns (and writes) the results as JSON-ready data."""
    sim_cfg = SimConfig.load(Path(config.sim_config))
    split = generate_split(Path(config.sim_dir), sim_cfg, dict(config.sim_scans))
    out = Path(config.out_dir) / config.name
    results: dict[str, Any] = {'name': config.name, 'seeds': list(config.seeds), 'parents': {}, 'runs': []}
    keys, jobs = [], []
    for modality_name, settings in config.modalities.items():
        if only and only != modality_name:
            continue
        bases = base_checkpoints(settings, config.seeds, config.base_per_seed)
        cache_dir = settings.get('step', {}).get('data', {}).get('cache_dir')
        results['parents'][modality_name] = score_parents(bases, split['test'], config.base_per_seed, cache_dir)
        for split_name, steps, label, method, seed in _chains(config, Modality(modality_name)):
            keys.append((modality_name, split_name, label, seed))
            jobs.append((bases[seed], steps, method, seed, settings.get('step', {}), split,
                         out / modality_name / split_name / label.split(' ')[0] / f'seed{seed}'))  # fmt: skip
    # Both modalities' chains in one pool, those with the most steps first: the last chains to start are then
    # short ones, and a worker waits less for the other to finish.
    longest_first = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]))
    for (modality_name, split_name, label, seed), chain in zip(
        keys, _in_order(_run_chain, jobs, config.workers, longest_first), strict=True
    ):
        results['runs'].append(
            {'modality': modality_name, 'split': split_name, 'method': label, 'seed': seed,
             'seconds': _chain_seconds(chain), 'steps': chain}
        )  # fmt: skip
        _log.info('%s %s %s seed %d: %s', modality_name, split_name, label, seed, chain[-1]['scores'])
        path = Path(config.out_dir) / f'continual_{config.name}.json'
        path.write_text(json.dumps(results, indent=1))
    return results


def _in_order(
    fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int, start: Sequence[int] | None = None
) -> Iterator[Any]:
    """``fn(*job)`` for every job, yielded in job order; with ``workers`` > 1 run in that many fresh processes
    (spawned: the parent's torch thread pools do not survive a fork), started in the order of the job indexes
    ``start`` (default: job order).
    """
    if workers <= 1:
        yield from (fn(*job) for job in jobs)
        return
    context = multiprocessing.get_context('spawn')
    level = logging.getLogger().level
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(level,)) as pool:
        submitted = {i: pool.submit(fn, *jobs[i]) for i in (range(len(jobs)) if start is None else start)}
        futures = [submitted[i] for i in range(len(jobs))]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _init_worker(level: int) -> None:
    logging.basicConfig(level=level, format='%(message)s')


def _run_chain(
    base: Path,
    steps: list[list[str]],
    method: str,
    seed: int,
    step_settings: dict[str, Any],
    split: dict[str, list[Path]],
    out: Path,
) -> list[dict[str, Any]]:
    parent_path, parent_version = base, None
    chain = []
    for index, new_classes in enumerate(steps):
        parent, ckpt = load_checkpoint(parent_path)
        cfg = step_config(step_settings, ckpt, new_classes, split['new'], split['test'], method,
                          name=f'step{index + 1}', out_dir=str(out), seed=seed, progress=False)  # fmt: skip
        run_dir = cfg.run_dir
        parent_digest = hashlib.sha256(parent_path.read_bytes()).hexdigest()
        recorded = run_dir / 'parent.sha256'
        # A finished step is reused while its config and its parent's file are the same.
        if not (finished_run(cfg) and recorded.exists() and recorded.read_text() == parent_digest):
            shutil.rmtree(run_dir, ignore_errors=True)
            add_classes(cfg, parent, ckpt, parent_version)
            recorded.write_text(parent_digest)
        last = read_checkpoint(run_dir / 'last.pt')
        iou = {c['name']: c['iou'] for c in last['metrics']['classes'][1:]}
        added = [name for step in steps[: index + 1] for name in step]
        chain.append(
            {'step': index + 1, 'new_classes': list(new_classes), 'scores': _chain_scores(iou, added),
             'seconds': last.get('seconds'), 'iou': iou}
        )  # fmt: skip
        parent_path, parent_version = run_dir / 'last.pt', f'step{index + 1}'
    return chain


def merge_results(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """``earlier``'s runs with ``later``'s added: a later run replaces the earlier one of the same modality,
    split, method and seed in its place (the tables keep their row order), so a benchmark can be completed or
    partly re-run method by method, or given more seeds. Base models scored per seed are merged seed by seed;
    a shared base's later score replaces the earlier one.
    """

    def key(run: dict[str, Any]) -> tuple[str, str, str, int]:
        return run['modality'], run['split'], run['method'], run['seed']

    replacing = {key(r): r for r in later['runs']}
    runs = [replacing.pop(key(r), r) for r in earlier['runs']] + list(replacing.values())
    seeds = sorted({*earlier.get('seeds', []), *later.get('seeds', [])})
    parents = {**earlier.get('parents', {}), **later.get('parents', {})}
    for modality in earlier.get('parents', {}).keys() & later.get('parents', {}).keys():
        before, after = earlier['parents'][modality], later['parents'][modality]
        if 'per_seed' in before and 'per_seed' in after:
            parents[modality] = _seed_parents({**before['per_seed'], **after['per_seed']})
    return {**later, **earlier, 'seeds': seeds, 'parents': parents, 'runs': runs}


def different_bases(earlier: dict[str, Any], later: dict[str, Any]) -> list[str]:
    """The base models (``lidar seed 0``, or ``camera`` for a shared one) that both results scored, with different
    scores. Those are different models (another machine's floating point gives another base from the same seed and
    config), so a seed's runs from the two files must not be paired.
    """
    differ = []
    for modality in sorted(earlier.get('parents', {}).keys() & later.get('parents', {}).keys()):
        before, after = earlier['parents'][modality], later['parents'][modality]
        if 'per_seed' in before and 'per_seed' in after:
            seeds = sorted(before['per_seed'].keys() & after['per_seed'].keys(), key=int)
            differ += [f'{modality} seed {s}' for s in seeds if before['per_seed'][s] != after['per_seed'][s]]
        elif 'per_seed' not in before and 'per_seed' not in after and before != after:
            differ.append(modality)
    return differ


def _chain_scores(iou: dict[str, float | None], added: list[str]) -> dict[str, float]:
    """mIoU of the base classes (old), of every class added so far (new) and of all, from per-class IoU (None
    where a class is in neither labels nor predictions). After a later step, the classes of earlier steps count
    as new, as class-incremental benchmarks report them (a step's own checkpoint calls them old).
    """

    def mean(names: list[str]) -> float:
        values = [iou[n] for n in names if iou.get(n) is not None]
        return float(np.mean(values)) if values else float('nan')

    return {'miou': mean(list(iou)), 'old_miou': mean([n for n in iou if n not in added]), 'new_miou': mean(added)}


def _chain_seconds(chain: list[dict[str, Any]]) -> float | None:
    """Training wall time of a chain, as its steps recorded it (so a reused step keeps its time)."""
    seconds = [step['seconds'] for step in chain]
    return None if None in seconds else round(sum(seconds), 1)


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (modality, split, method): mean and spread (std over seeds) of old/new/all mIoU after the last step,
    the mean all-class mIoU after each step (``per_step``), and the mean IoU of each added class after the last
    step (``added``: class -> IoU %, in the order the steps add them; NaN where no seed has it).
    """
    groups: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
    for run in results['runs']:
        groups.setdefault((run['modality'], run['split'], run['method']), []).append(run['steps'])
    rows = []
    for (modality, split, method), chains in groups.items():
        row: dict[str, Any] = {'modality': modality, 'split': split, 'method': method, 'seeds': len(chains)}
        for key in ('old_miou', 'new_miou', 'miou'):
            values = np.array([chain[-1]['scores'][key] for chain in chains], np.float64) * 100
            row[key] = (float(np.nanmean(values)), float(np.nanstd(values)))
        steps = np.array([[s['scores']['miou'] for s in chain] for chain in chains], np.float64) * 100
        row['per_step'] = [float(v) for v in np.nanmean(steps, axis=0)]
        added = [name for step in chains[0] for name in step['new_classes']]
        iou = np.array([[np.nan if c[-1]['iou'].get(n) is None else c[-1]['iou'][n] for n in added]
                        for c in chains], np.float64) * 100  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # a class no seed has: NaN
            row['added'] = dict(zip(added, (float(v) for v in np.nanmean(iou, axis=0)), strict=True))
        rows.append(row)
    return rows


def render_markdown(results: dict[str, Any], plot_dir: Path) -> str:
    """The results section of docs/results.md: per modality and split, a table of mIoU (with the base model's
    old-class mIoU first, where the results have it, and each method's old and new mIoU as a share of joint
    training's, the upper bound, where the split has a joint row), one of the added classes' IoU, and a bar plot.
    """
    rows = summarise(results)
    lines = []
    plot_dir.mkdir(parents=True, exist_ok=True)
    for modality, split in sorted({(r['modality'], r['split']) for r in rows}):
        sub = [r for r in rows if r['modality'] == modality and r['split'] == split]
        lines += [f'### {modality}, split `{split}` (after the last step; mean ± std over seeds)', '',
                  '| method | old mIoU % | new mIoU % | all mIoU % | all mIoU % after each step | seeds '
                  '| old / new, % of joint |', '|---|---:|---:|---:|---|---:|---:|']  # fmt: skip
        joint = next((r for r in sub if r['method'] == 'joint'), None)
        parent = results.get('parents', {}).get(modality)
        if parent is not None:
            bases = np.array([s['old_miou'] for s in parent.get('per_seed', {}).values()], np.float64) * 100
            old = f'{bases.mean():.1f} ± {bases.std():.1f}' if bases.size else f'{100 * parent["old_miou"]:.1f}'
            lines.append(f'| base model, before the steps | {old} | – | – | – | {bases.size or "–"} | – |')
        for r in sub:
            cells = ' | '.join(f'{r[k][0]:.1f} ± {r[k][1]:.1f}' for k in ('old_miou', 'new_miou', 'miou'))
            steps = ' / '.join(f'{v:.1f}' for v in r['per_step'])
            share = '–' if joint is None else ' / '.join(_share(r[k][0], joint[k][0]) for k in ('old_miou', 'new_miou'))
            lines.append(f'| {r["method"]} | {cells} | {steps} | {r["seeds"]} | {share} |')
        added = list(sub[0]['added'])
        lines += ['', f'IoU % of the added classes after the last step ({modality}, `{split}`, mean over seeds):', '',
                  f'| method | {" | ".join(added)} |', f'|---|{"---:|" * len(added)}']  # fmt: skip
        lines += [f'| {r["method"]} | {" | ".join(_percent(r["added"][n]) for n in added)} |' for r in sub]
        plot = plot_dir / f'continual_{results["name"]}_{modality}_{split}.png'
        _plot(sub, plot, f'{modality}, {split}')
        lines += ['', f'![{modality} {split}]({plot.name})', '']
    return '\n'.join(lines)


def compare_paired(results: dict[str, Any], modality: str, split: str, first: str, second: str) -> dict[str, Any]:
    """Two methods' scores after the last step, paired by seed, on the seeds that ran both.

    With a base model per seed, seeds differ by more than two methods do, so a difference is read seed by seed:
    per score (new and old mIoU, each added class's IoU; %), both means, the mean and sd of the differences, the
    paired t statistic (n - 1 degrees of freedom) and the exact two-sided sign test over the seeds not tied.
    """
    chains = [_method_chains(results, modality, split, method) for method in (first, second)]
    seeds = sorted(chains[0].keys() & chains[1].keys())
    if not seeds:
        raise ValueError(f'no seed ran both {first} and {second} on {modality} {split}')
    added = [name for step in chains[0][seeds[0]] for name in step['new_classes']]

    def values(method: int, score: str) -> np.ndarray:
        lasts = [chains[method][seed][-1] for seed in seeds]
        picked = [s['scores'][score] if score.endswith('_miou') else s['iou'].get(score) for s in lasts]
        return np.array([np.nan if v is None else 100 * v for v in picked], np.float64)

    scores = {}
    for score in ['new_miou', 'old_miou', *added]:
        a, b = values(0, score), values(1, score)
        both = ~(np.isnan(a) | np.isnan(b))
        scores[score] = {'per_seed': [[float(x), float(y)] for x, y in zip(a, b, strict=True)],
                         **_paired_stats(a[both], b[both])}  # fmt: skip
    return {'modality': modality, 'split': split, 'methods': [first, second], 'seeds': seeds, 'scores': scores}


def _method_chains(results: dict[str, Any], modality: str, split: str, method: str) -> dict[int, list[dict]]:
    """Seed -> the chain's steps of ``method`` (its table label without a '(default)' mark)."""
    return {r['seed']: r['steps'] for r in results['runs']
            if (r['modality'], r['split'], r['method'].split(' ')[0]) == (modality, split, method)}  # fmt: skip


def _paired_stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    diff, nan = a - b, float('nan')
    n, ahead, behind = diff.size, int((diff > 0).sum()), int((diff < 0).sum())
    sd = float(diff.std(ddof=1)) if n > 1 else nan
    t = float(diff.mean() / (sd / math.sqrt(n))) if sd > 0 else nan
    tail = sum(math.comb(ahead + behind, k) for k in range(min(ahead, behind) + 1)) / 2 ** (ahead + behind)
    means = [float(a.mean()), float(b.mean()), float(diff.mean())] if n else [nan, nan, nan]
    return {'n': n, 'mean': means[:2], 'diff': means[2], 'sd': sd, 't': t, 'ahead': ahead, 'behind': behind,
            'sign_p': min(1.0, 2 * tail)}  # fmt: skip


def render_paired(comparison: dict[str, Any]) -> str:
    """:func:`compare_paired` as markdown: each seed's new and old mIoU, then every score's paired statistics."""
    first, second = comparison['methods']
    new, old = comparison['scores']['new_miou'], comparison['scores']['old_miou']
    lines = [f'{comparison["modality"]} `{comparison["split"]}`: {first} against {second}, paired by seed '
             '(after the last step, %)', '', f'| seed | new mIoU {first} | {second} | old mIoU {first} | {second} |',
             '|---:|---:|---:|---:|---:|']  # fmt: skip
    for seed, (a_new, b_new), (a_old, b_old) in zip(comparison['seeds'], new['per_seed'], old['per_seed'], strict=True):
        lines.append(f'| {seed} | {a_new:.1f} | {b_new:.1f} | {a_old:.1f} | {b_old:.1f} |')
    lines += ['', f'| score | {first} | {second} | difference: mean | sd | t | seeds ahead / behind | sign test p |',
              '|---|---:|---:|---:|---:|---:|---:|---:|']  # fmt: skip
    for score, s in comparison['scores'].items():
        name = {'new_miou': 'new mIoU', 'old_miou': 'old mIoU'}.get(score, f'{score} IoU')
        lines.append(f'| {name} | {_number(s["mean"][0])} | {_number(s["mean"][1])} | {_number(s["diff"], "+.2f")} '
                     f'| {_number(s["sd"])} | {_number(s["t"])} | {s["ahead"]} / {s["behind"]} of {s["n"]} '
                     f'| {s["sign_p"]:.3f} |')  # fmt: skip
    return '\n'.join(lines)


def _number(value: float, spec: str = '.2f') -> str:
    """``value`` formatted, or '–' where a statistic is undefined (no seed with the score, one seed, no spread)."""
    return '–' if math.isnan(value) else format(value, spec)


def _percent(value: float) -> str:
    return _number(value, '.1f')


def _share(value: float, reference: float) -> str:
    """``value`` as a percentage of ``reference`` ('–' where the reference is 0 or NaN)."""
    return _percent(100 * value / reference) if reference > 0 else '–'


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    fig = Figure(figsize=(8, 3.5), layout='constrained')
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    for i, (key, name) in enumerate((('old_miou', 'old'), ('new_miou', 'new'), ('miou', 'all'))):
        means = [r[key][0] for r in rows]
        spread = [r[key][1] for r in rows]
        ax.bar(x + (i - 1) * 0.27, means, 0.27, yerr=spread, label=name, capsize=2)
    ax.set(xticks=x, ylabel='mIoU (%)', title=title, ylim=(0, 100))
    ax.set_xticklabels([r['method'] for r in rows], rotation=20, ha='right')
    ax.legend()
    fig.savefig(path, dpi=100)
