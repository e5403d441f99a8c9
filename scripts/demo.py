"""The README's main job, end to end on the built-in simulated data, with the commands a user runs:

1. ``css-sim split``: a simulated train/val/test split (``config/sim/demo.yaml``), reused when present;
2. ``css-train base``: base LiDAR and camera models (``config/train/{lidar,camera}_base.yaml``), reused when a
   finished run with the same config exists;
3. ``css-train eval``: point- and pixel-level mIoU on the held-out test sequence;
4. ``css-train export``: ONNX export with the torch/ONNX Runtime parity check, published into a registry;
5. the live node (real DDS) fed by ``css-perception play`` with the test recording; ``css-perception monitor``
   reports what it published.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry
from css_training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RUNS = ('lidar_base', 'camera_base')


def run(*cmd: object) -> None:
    print('  $', ' '.join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def train_if_needed(bin_dir: Path, name: str) -> Path:
    """Trains ``config/train/<name>.yaml`` unless a finished run of the same config exists; returns best.pt."""
    config = ROOT / 'config' / 'train' / f'{name}.yaml'
    cfg = load_config(config)
    run_dir = ROOT / cfg.run_dir
    saved = run_dir / 'config.yaml'
    last = run_dir / 'last.pt'
    finished = last.exists() and saved.exists() and yaml.safe_load(saved.read_text()) == cfg.to_dict()
    if finished and (run_dir / 'metrics.csv').read_text().count('\n') == cfg.optim.epochs + 1:
        print(f'  reusing the finished run {run_dir}')
        return run_dir / 'best.pt'
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    run(bin_dir / 'css-train', 'base', '--config', config)
    print(f'  {name}: trained in {time.perf_counter() - started:.0f} s')
    return run_dir / 'best.pt'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'out' / 'demo')
    args = parser.parse_args()
    out: Path = args.out
    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    data = load_config(ROOT / 'config' / 'train' / 'lidar_base.yaml').data
    scans = data.sim_scans
    print('[1/5] simulated data (train/val/test)', flush=True)
    run(bin_dir / 'css-sim', 'split', ROOT / data.sim_dir, '--config', ROOT / data.sim_config,
        *(f'--{part}={scans[part]}' for part in ('train', 'val', 'test')))  # fmt: skip
    print('[2/5] base models', flush=True)
    checkpoints = {name: train_if_needed(bin_dir, name) for name in RUNS}
    print('[3/5] evaluation on the held-out test sequence', flush=True)
    scores = {}
    for name, ckpt in checkpoints.items():
        run(bin_dir / 'css-train', 'eval', ckpt)
        scores[name] = json.loads((ckpt.parent / 'eval' / 'metrics.json').read_text())
    print('[4/5] export and publish', flush=True)
    model_dir = out / 'models'
    registry = Registry(model_dir)
    for name, ckpt in checkpoints.items():
        modality = 'lidar' if name.startswith('lidar') else 'camera'
        current = registry.current(modality)
        if current is not None and _provenance(current.path).get('checkpoint') == str(ckpt):
            print(f'  reusing {current.path}')
            continue
        run(bin_dir / 'css-train', 'export', ckpt, '--registry', model_dir)
    print('[5/5] live node on the test recording', flush=True)
    summary = play_into_node(bin_dir, model_dir, ROOT / data.sim_dir / 'test', out / 'report.json')
    print(f'\nmain job finished in {time.perf_counter() - started:.0f} s')
    for name, score in scores.items():
        print(f'{name}: test mIoU {100 * score["miou"]:.1f} % ({score["title"]})')
        ious = [f'{c["name"]} {100 * c["iou"]:.0f}' for c in score['classes'][1:] if c['iou'] is not None]
        print('   IoU %: ' + ', '.join(ious))
    print(f'node published: {summary.get("messages")}')
    for kind in ('lidar_points_per_class', 'camera_pixels_per_class'):
        counts = summary.get(kind, {})
        print(f'  {kind}: ' + ', '.join(f'{name} {n}' for name, n in counts.items()))
    for name, status in summary.get('diagnostics', {}).items():
        print(f'  {name}: {status.get("message")}; total latency p50 {status.get("latency_total_p50_ms")} ms, '
              f'p95 {status.get("latency_total_p95_ms")} ms; frames in/out {status.get("frames_in")}/'
              f'{status.get("frames_out")}, dropped {status.get("dropped")}')  # fmt: skip
    return 0 if summary.get('messages', {}).get('lidar/points', 0) > 0 else 1


def _provenance(path: Path) -> dict:
    return dict(SegmentationModel.load(path, providers=['CPUExecutionProvider'], warmup=False).metadata.provenance)


def play_into_node(bin_dir: Path, model_dir: Path, recording: Path, report: Path) -> dict:
    env = {**os.environ, 'ROS_DOMAIN_ID': str(random.randint(1, 101)), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    node = subprocess.Popen(
        [bin_dir / 'css-perception', 'node', '--params', ROOT / 'config' / 'segment.yaml', '--ros-args',
         '-p', f'model_dir:={model_dir}', '-r', 'points:=/points', '-r', 'image:=/camera/image_raw'],
        env=env,
    )  # fmt: skip
    report.parent.mkdir(parents=True, exist_ok=True)
    monitor = subprocess.Popen(
        [bin_dir / 'css-perception', 'monitor', '--duration', '120', '--idle', '4', '--out', report],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(4.0)  # node: load + warm up both models
        subprocess.run([bin_dir / 'css-perception', 'play', recording, '--start-delay', '1.5'], env=env, check=True)
        monitor.wait(timeout=150)
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    return json.loads(report.read_text()) if report.exists() else {}


if __name__ == '__main__':
    sys.exit(main())
