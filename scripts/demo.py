"""The README's main job, end to end on the built-in simulated data, with the commands a user runs:

1. ``css-sim split``: a simulated train/val/test split (``config/sim/demo.yaml``), reused when present;
2. ``css-train base``: base LiDAR and camera models (``config/train/{lidar,camera}_base.yaml``), reused when a
   finished run with the same config exists;
3. ``css-train eval``: point- and pixel-level mIoU on the held-out test sequence;
4. ``css-train export``: ONNX export with the torch/ONNX Runtime parity check, published as v1 into a fresh
   registry;
5. the live node (real DDS) fed by ``css-perception play`` with the test recording; ``css-perception monitor``
   reports what it published;
6. with the node still running: ``css-sim record`` of a new recording in which the rare road users are labelled,
   and ``css-train add-classes`` for both models (``config/train/continual_{lidar,camera}.yaml``, the modality's
   default method), which publishes v2; the node swaps it in. Finished steps are reused like the base runs;
7. the test recording played again: the node now serves v2, whose legend and outputs hold the new classes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from css_training.checkpoint import read_checkpoint
from css_training.config import apply_overrides, load_config, read_values
from css_training.continual import step_config
from css_training.train import finished_run

ROOT = Path(__file__).resolve().parents[1]
RUNS = {'lidar': 'lidar_base', 'camera': 'camera_base'}
NEW_CLASSES = ('person', 'bicycle', 'bicyclist', 'motorcycle', 'motorcyclist')  # the benchmark's 12-5 step
NEW_SCANS, NEW_SEED = 120, 3000  # the benchmark's step recording (its split's fourth sequence)
STEP_OVERRIDES = {'lidar': ['optim.epochs=6'], 'camera': []}  # LiDAR: half the medium preset's epochs, for time


def run(*cmd: object) -> None:
    print('  $', ' '.join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def train_if_needed(bin_dir: Path, name: str) -> tuple[Path, bool]:
    """Trains ``config/train/<name>.yaml`` unless a finished run of the same config exists; returns best.pt and
    whether it trained.
    """
    config = ROOT / 'config' / 'train' / f'{name}.yaml'
    cfg = load_config(config)
    run_dir = ROOT / cfg.run_dir
    if finished_run(cfg):
        print(f'  reusing the finished run {run_dir}')
        return run_dir / 'best.pt', False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    run(bin_dir / 'css-train', 'base', '--config', config)
    print(f'  {name}: trained in {time.perf_counter() - started:.0f} s')
    return run_dir / 'best.pt', True


def step_if_needed(
    bin_dir: Path, modality: str, base: Path, retrained: bool, bag: Path, val: Path, registry: Path
) -> Path:
    """The continual step of ``modality`` from the registry's current (base) model, published as its next
    version; a finished step of the same config and parent is exported again instead of retrained. Returns its
    best.pt.
    """
    config = ROOT / 'config' / 'train' / f'continual_{modality}.yaml'
    overrides = STEP_OVERRIDES[modality]
    name = f'{modality}_demo_step'
    # What `css-train add-classes` builds from the same arguments.
    cfg = step_config(
        apply_overrides(read_values(config), overrides), read_checkpoint(base), NEW_CLASSES, [bag], [val], name=name
    )
    run_dir = ROOT / cfg.run_dir
    if not retrained and finished_run(cfg):
        print(f'  reusing the finished step {run_dir}')
        run(bin_dir / 'css-train', 'export', run_dir / 'best.pt', '--registry', registry)
        return run_dir / 'best.pt'
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    run(bin_dir / 'css-train', 'add-classes', '--from', modality, '--registry', registry, '--bags', bag,
        '--new-classes', ','.join(NEW_CLASSES), '--val', val, '--config', config, '--name', name,
        *(f'--set={o}' for o in overrides))  # fmt: skip
    print(f'  {name}: trained and published in {time.perf_counter() - started:.0f} s')
    return run_dir / 'best.pt'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'out' / 'demo')
    args = parser.parse_args()
    out: Path = args.out
    os.chdir(ROOT)  # the run configs' paths (out/runs, out/cache) are relative to the repository
    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    data = load_config(ROOT / 'config' / 'train' / 'lidar_base.yaml').data
    scans = data.sim_scans
    sim_dir = ROOT / data.sim_dir
    print('[1/7] simulated data (train/val/test)', flush=True)
    run(bin_dir / 'css-sim', 'split', sim_dir, '--config', ROOT / data.sim_config,
        *(f'--{part}={scans[part]}' for part in ('train', 'val', 'test')))  # fmt: skip
    print('[2/7] base models', flush=True)
    trained = {modality: train_if_needed(bin_dir, name) for modality, name in RUNS.items()}
    print('[3/7] evaluation on the held-out test sequence', flush=True)
    scores = {modality: evaluate(bin_dir, ckpt, sim_dir / 'test') for modality, (ckpt, _) in trained.items()}
    print('[4/7] export and publish v1 into a fresh registry', flush=True)
    model_dir = out / 'models'
    shutil.rmtree(model_dir, ignore_errors=True)
    for ckpt, _ in trained.values():
        run(bin_dir / 'css-train', 'export', ckpt, '--registry', model_dir)
    # A private DDS domain; clouds over shared memory and TCP (Fast DDS's LARGE_DATA), not UDP fragments, which lost
    # a third of the best-effort scans (bench/bench_cloud_delivery.py). ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    # would undo that: rmw_fastrtps then picks its own transports.
    env = {**os.environ, 'ROS_DOMAIN_ID': str(random.randint(1, 101))}
    env.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    with live_node(bin_dir, model_dir, env):
        print('[5/7] live node on the test recording', flush=True)
        before = play_and_monitor(bin_dir, sim_dir / 'test', out / 'report.json', env)
        print('[6/7] new classes from a new recording, published while the node runs', flush=True)
        bag = record_new(bin_dir, sim_dir / 'new', ROOT / data.sim_config)
        steps = {modality: step_if_needed(bin_dir, modality, ckpt, retrained, bag, sim_dir / 'val', model_dir)
                 for modality, (ckpt, retrained) in trained.items()}  # fmt: skip
        step_scores = {modality: evaluate(bin_dir, ckpt, sim_dir / 'test') for modality, ckpt in steps.items()}
        time.sleep(2.0)  # the publish woke the node's registry watch; leave it time to validate and swap
        print('[7/7] live node on the test recording, after the swap', flush=True)
        after = play_and_monitor(bin_dir, sim_dir / 'test', out / 'report_after_step.json', env)
    print(f'\nmain job finished in {time.perf_counter() - started:.0f} s')
    for modality, score in scores.items():
        print(f'{RUNS[modality]}: test mIoU {100 * score["miou"]:.1f} % ({score["title"]})')
        print('   IoU %: ' + _ious(score, [c['name'] for c in score['classes'][1:]]))
    report_node(before)
    for modality, score in step_scores.items():
        new = [c['iou'] for c in score['classes'] if c['name'] in NEW_CLASSES and c['iou'] is not None]
        old = [c['iou'] for c in score['classes'][1:] if c['name'] not in NEW_CLASSES and c['iou'] is not None]
        print(f'{modality} after adding {len(NEW_CLASSES)} classes ({read_checkpoint(steps[modality])["method"]}): '
              f'test mIoU old {100 * sum(old) / len(old):.1f} %, new {100 * sum(new) / len(new):.1f} %')  # fmt: skip
        print('   new classes, IoU %: ' + _ious(score, NEW_CLASSES))
    report_node(after)
    served = after.get('frames_per_model', {})
    swapped = all(any(key.startswith(f'{m}@') and not key.endswith('@v1') for key in served) for m in RUNS)
    if not swapped:
        print('the node did not serve the new versions after the step', file=sys.stderr)
    return 0 if before.get('messages', {}).get('lidar/points', 0) > 0 and swapped else 1


def evaluate(bin_dir: Path, ckpt: Path, test: Path) -> dict:
    """``css-train eval`` of a checkpoint on the test recording; its metrics.json."""
    run(bin_dir / 'css-train', 'eval', ckpt, '--data', test)
    return json.loads((ckpt.parent / 'eval' / 'metrics.json').read_text())


def record_new(bin_dir: Path, bag: Path, sim_config: Path) -> Path:
    """The step recording, written unless a complete one is there (rosbag2 writes metadata.yaml last)."""
    if (bag / 'metadata.yaml').exists():
        print(f'  reusing the recording {bag}')
        return bag
    shutil.rmtree(bag, ignore_errors=True)
    run(bin_dir / 'css-sim', 'record', bag, '--config', sim_config, '--scans', NEW_SCANS, '--seed', NEW_SEED)
    return bag


def _ious(score: dict, names: Sequence[str]) -> str:
    iou = {c['name']: c['iou'] for c in score['classes']}
    return ', '.join(f'{n} {100 * iou[n]:.0f}' if iou.get(n) is not None else f'{n} -' for n in names)


def report_node(summary: dict) -> None:
    print(f'node published: {summary.get("messages")}; frames per model: {summary.get("frames_per_model")}')
    for kind in ('lidar_points_per_class', 'camera_pixels_per_class'):
        counts = summary.get(kind, {})
        print(f'  {kind}: ' + ', '.join(f'{name} {n}' for name, n in counts.items()))
    for name, status in summary.get('diagnostics', {}).items():
        print(f'  {name}: {status.get("message")}; total latency p50 {status.get("latency_total_p50_ms")} ms, '
              f'p95 {status.get("latency_total_p95_ms")} ms; frames in/out {status.get("frames_in")}/'
              f'{status.get("frames_out")}, missed before the node (stamp gaps) {status.get("frames_missed")}, '
              f'skipped with no subscriber {status.get("skipped")}, dropped {status.get("dropped")}')  # fmt: skip


@contextlib.contextmanager
def live_node(bin_dir: Path, model_dir: Path, env: dict[str, str]) -> Iterator[None]:
    """``css-perception node`` on the registry for the duration of the block (stopped with SIGINT, as Ctrl-C)."""
    node = subprocess.Popen(
        [bin_dir / 'css-perception', 'node', '--params', ROOT / 'config' / 'segment.yaml', '--ros-args',
         '-p', f'model_dir:={model_dir}', '-r', 'points:=/points', '-r', 'image:=/camera/image_raw'],
        env=env,
    )  # fmt: skip
    try:
        time.sleep(4.0)  # node: load + warm up both models
        yield
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)


def play_and_monitor(bin_dir: Path, recording: Path, report: Path, env: dict[str, str]) -> dict:
    """Plays ``recording`` into the running node while ``css-perception monitor`` writes ``report``; returns it."""
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    ready = report.with_suffix('.ready')
    ready.unlink(missing_ok=True)
    monitor = subprocess.Popen(
        [bin_dir / 'css-perception', 'monitor', '--duration', '120', '--idle', '4', '--out', report,
         '--ready-file', ready],
        env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30.0  # the node skips frames nobody listens to: play once the monitor listens
    while not ready.exists() and monitor.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(
        [bin_dir / 'css-perception', 'play', recording, '--wait-for', '/points', '/camera/image_raw', '--start-delay',
         '1.5'],
        env=env,
        check=True,
    )  # fmt: skip
    monitor.wait(timeout=150)
    return json.loads(report.read_text()) if report.exists() else {}


if __name__ == '__main__':
    sys.exit(main())
