"""What does segment_node cost while no sensor data arrives? CPU time of the idle node, as a ratio to a bare rclpy
node spun by the same executor in the same run.

Both run as their own processes on real DDS (a random domain, localhost only); after ``--warmup`` seconds (models
loaded and warmed up) their CPU time (user + system, from ``/proc/<pid>/stat``) is sampled over ``--seconds``.
The node serves the registry ``--model-dir`` (default: the main job's, ``out/demo/models``). The code measured
is the one importable from the working directory: run the script from a worktree of another commit
(``git worktree add /tmp/before <commit>``) to measure that commit.
Run: ``python bench/bench_node_idle.py [--model-dir out/demo/models] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = (
    'import rclpy\n'
    'from rclpy.executors import MultiThreadedExecutor\n'
    'rclpy.init()\n'
    'executor = MultiThreadedExecutor(num_threads=4)\n'
    "executor.add_node(rclpy.create_node('bare_node'))\n"
    'try:\n'
    '    executor.spin()\n'
    'except KeyboardInterrupt:\n'
    '    pass\n'
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model-dir', type=Path, default=ROOT / 'out' / 'demo' / 'models')
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--warmup', type=float, default=6.0)
    args = parser.parse_args()
    if not args.model_dir.is_dir():
        parser.error(f'{args.model_dir} is not a model registry: run scripts/run_demo.sh first or pass --model-dir')
    env = {**os.environ, 'ROS_DOMAIN_ID': str(random.randint(1, 101)), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    node = [sys.executable, '-m', 'css_perception.ros.cli', 'node', '--params', str(ROOT / 'config' / 'segment.yaml'),
            '--ros-args', '-p', f'model_dir:={args.model_dir}']  # fmt: skip
    procs = {
        'segment_node': subprocess.Popen(node, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        'bare rclpy node': subprocess.Popen([sys.executable, '-c', BARE], env=env),
    }
    try:
        time.sleep(args.warmup)
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f'{name} exited with {proc.returncode} during the warm-up', file=sys.stderr)
                return 1
        start = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
        time.sleep(args.seconds)
        used = {name: cpu_seconds(proc.pid) - start[name] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    share = {name: 100 * seconds / args.seconds for name, seconds in used.items()}
    for name, percent in share.items():
        print(f'{name}: {percent:.1f} % of a core idle ({used[name]:.2f} s CPU in {args.seconds:.0f} s)')
    bare = used['bare rclpy node']
    extra = share['segment_node'] - share['bare rclpy node']
    ratio = f'{used["segment_node"] / bare:.1f}x' if bare > 0 else 'the bare node used no measurable CPU'
    print(f'segment_node costs {extra:.1f} % of a core more than the bare node; ratio {ratio}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
