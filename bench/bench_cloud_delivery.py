"""How many played scans reach a best-effort subscriber in another process, per Fast DDS transport setting.

The node subscribes to clouds as sensor drivers publish them: best effort, keep last 1. A 32 x 1024 scan is
~670 kB; over Fast DDS's default transports (UDPv4, and shared memory with 512 kB segments) it travels as UDP
fragments, and a sample with one lost fragment is lost. ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` sends data over
shared memory and TCP instead (the Fast DDS and ROS 2 docs' advice for point clouds). Both ends need the same
setting: the fourth setting sets it on the listener only. It has no effect under
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, with which rmw_fastrtps sets its own transports, the third setting shows
it (an unset ``ROS_DOMAIN_ID`` is drawn at random, to keep other runs out). Each trial starts a fresh
listener process and ``css-perception play --wait-for /points --start-delay 1.5`` (as the main job plays) in the setting
under test; settings alternate. The default setting is the baseline: the report gives scans received in each
and their ratio.
Run: ``python bench/bench_cloud_delivery.py RECORDING [--trials 3]`` (e.g. ``out/sim/test`` after the main job).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

DOMAIN = str(random.randint(1, 101))
LARGE = {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}
LOCAL = {**LARGE, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
# name -> (the player's environment, the listener's)
SETTINGS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    'default (UDPv4 + SHM)': ({}, {}),
    'LARGE_DATA': (LARGE, LARGE),
    'LARGE_DATA, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST': (LOCAL, LOCAL),
    'LARGE_DATA on the listener only': ({}, LARGE),
}


def listen(seconds: float) -> None:
    """Count /points messages for at most ``seconds``, or until 3 s pass without one; print the count as JSON."""
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    rclpy.init()
    node = rclpy.create_node('delivery_listener')
    got: list[tuple[float, int]] = []
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(PointCloud2, '/points', lambda msg: got.append((time.monotonic(), len(msg.data))), qos)
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (got and time.monotonic() - got[-1][0] > 3.0):
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({'received': len(got), 'bytes': got[0][1] if got else 0}), flush=True)


def trial(recording: Path, setting: tuple[dict[str, str], dict[str, str]], seconds: float) -> dict:
    drop = ('FASTDDS_BUILTIN_TRANSPORTS', 'ROS_AUTOMATIC_DISCOVERY_RANGE')
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.setdefault('ROS_DOMAIN_ID', DOMAIN)
    player_env, listener_env = ({**env, **side} for side in setting)
    listener = subprocess.Popen(
        [sys.executable, __file__, '--listen', str(seconds)], env=listener_env, stdout=subprocess.PIPE, text=True
    )
    play = [Path(sys.executable).parent / 'css-perception', 'play', str(recording), '--topics', '/points']
    played = subprocess.run(
        [*play, '--wait-for', '/points', '--match-timeout', '10', '--start-delay', '1.5'],
        env=player_env,
        capture_output=True,
        text=True,
        check=True,
    )
    out, _ = listener.communicate(timeout=seconds + 30)
    sent = int(played.stdout.split('/points: ')[1].split()[0])
    return {**json.loads(out), 'sent': sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('recording', type=Path, nargs='?')
    parser.add_argument('--trials', type=int, default=3)
    parser.add_argument('--listen', type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen is not None:
        listen(args.listen)
        return
    if args.recording is None:
        parser.error('RECORDING is required')
    seconds = 20.0
    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for _ in range(args.trials):
        for name, setting in SETTINGS.items():
            results[name].append(trial(args.recording, setting, seconds))
    sent = results[next(iter(SETTINGS))][0]['sent']
    print(f'{args.recording}: {sent} scans of {results["LARGE_DATA"][0]["bytes"] / 1e3:.0f} kB per trial')
    print('| transports | received per trial | mean | x default |\n|---|---|---:|---:|')
    base = sum(r['received'] for r in results[next(iter(SETTINGS))]) / args.trials
    for name, runs in results.items():
        mean = sum(r['received'] for r in runs) / args.trials
        print(f'| {name} | {", ".join(str(r["received"]) for r in runs)} | {mean:.1f} | {mean / base:.2f} |')


if __name__ == '__main__':
    main()
