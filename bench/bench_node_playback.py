"""How fast does segment_node answer a recording played into it, against the node of a baseline source tree?

Each trial starts a fresh node on the registry ``--model-dir`` (as the main job does: ``scripts/demo.py``), plays
``--recording`` into it once while ``css-perception monitor`` listens, and reads the node's own latency
statistics (p50 / p95 of the total per frame, from its diagnostics) and how many frames it took in. Trials
alternate between the node of this working tree and the node of ``--baseline`` (a source tree whose
``css_perception`` package is imported instead, e.g. ``git worktree add /tmp/before <commit>``), so both see the
same machine state; the medians over the trials are reported as ratios (this tree / baseline).
Run: ``python bench/bench_node_playback.py --baseline /tmp/before [--trials 5]`` after ``scripts/run_demo.sh``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
from demo import live_node, play_and_monitor  # noqa: E402  (the main job's node and playback)

MODALITIES = ('lidar', 'camera')
FIELDS = ('latency_total_p50_ms', 'latency_total_p95_ms', 'frames_in')


def trial(source: Path, model_dir: Path, recording: Path, report: Path) -> dict[str, dict[str, float]]:
    """One fresh node importing ``css_perception`` from ``source``, one playback: per modality, FIELDS."""
    # The main job's DDS settings (scripts/demo.py): a private domain, clouds over Fast DDS's LARGE_DATA transports.
    env = {**os.environ, 'PYTHONPATH': str(source), 'ROS_DOMAIN_ID': str(random.randint(1, 101)),
           'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}  # fmt: skip
    with live_node(Path(sys.executable).parent, model_dir, env):
        diagnostics = play_and_monitor(Path(sys.executable).parent, recording, report, env).get('diagnostics', {})
    return {m: {f: float(diagnostics[f'/segment_node: {m}'][f]) for f in FIELDS}
            for m in MODALITIES if f'/segment_node: {m}' in diagnostics}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--baseline', type=Path, required=True, help='source tree of the baseline node')
    parser.add_argument('--model-dir', type=Path, default=ROOT / 'out' / 'demo' / 'models')
    parser.add_argument('--recording', type=Path, default=ROOT / 'out' / 'sim' / 'test')
    parser.add_argument('--trials', type=int, default=5)
    args = parser.parse_args()
    sources = {'this tree': ROOT, 'baseline': args.baseline.resolve()}
    results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in sources}
    for i in range(args.trials):
        for name, source in sources.items():
            got = trial(source, args.model_dir, args.recording, ROOT / 'out' / 'bench' / f'playback_{i}.json')
            results[name].append(got)
            print(f'trial {i} {name}: ' + '; '.join(
                f'{m} p50 {v["latency_total_p50_ms"]:.1f} ms, p95 {v["latency_total_p95_ms"]:.1f} ms, '
                f'{v["frames_in"]:.0f} frames' for m, v in got.items()), flush=True)  # fmt: skip
    print(f'\nmedians over {args.trials} trials (this tree / baseline):')
    for m in MODALITIES:
        for field in FIELDS:
            medians = [statistics.median(r[m][field] for r in results[name] if m in r) for name in sources]
            print(f'  {m} {field}: {medians[0]:.1f} / {medians[1]:.1f} = {medians[0] / medians[1]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
