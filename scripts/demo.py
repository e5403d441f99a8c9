"""The README's main job: a recording is played into the live node, and what the node published is reported.

Current state (said plainly in its output): the models are UNTRAINED (random weights, exported through the real
export path with its ONNX Runtime parity check), and the recording is a simple generated scene (ground rings,
box-shaped obstacles, gradient camera frames), because the simulator and base training are not in the repo yet.
The labels the node publishes are therefore meaningless; everything else is the real pipeline: rosbag2 writing,
the bag player, segment_node on real DDS, the registry, diagnostics and the output monitor.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from css_perception.core.image import array_to_image
from css_perception.core.metadata import CameraInputSpec, LidarInputSpec, Modality, ModelMetadata
from css_perception.core.ontology import Ontology
from css_perception.core.pointcloud import array_to_cloud
from css_perception.runtime.registry import Registry
from css_training.export import export_and_publish
from css_training.models import ModelConfig, build_model

ROOT = Path(__file__).resolve().parents[1]
TS = get_typestore(Stores.ROS2_JAZZY)
CLASSES = ('unlabeled', 'car', 'person', 'road', 'sidewalk', 'building', 'vegetation', 'pole')


def generated_scan(rng: np.random.Generator, t: float) -> np.ndarray:
    """Ground rings plus a few box obstacles around the sensor: points only, no physics."""
    beams, steps = 32, 1024
    elevation = np.radians(np.linspace(-24.8, 2.0, beams))[:, None]
    azimuth = np.linspace(-np.pi, np.pi, steps, endpoint=False)[None, :] + 0.05 * t
    down = np.minimum(elevation, -0.01)
    rng_ground = np.minimum(1.73 / np.tan(-down), 80.0)
    boxes = rng.uniform([-25, -25, 1.5], [25, 25, 4.0], (6, 3))
    box_range = np.full((beams, steps), np.inf)
    for cx, cy, size in boxes:  # six boxes: a loop over objects, not points
        hit = np.abs(np.angle(np.exp(1j * (azimuth - np.arctan2(cy, cx))))) < size / np.hypot(cx, cy) / 2
        box_range = np.where(hit & (elevation < np.radians(5)), np.minimum(box_range, np.hypot(cx, cy)), box_range)
    r = np.minimum(rng_ground, box_range) * (1 + rng.normal(0, 0.005, (beams, steps)))
    arr = np.zeros(beams * steps, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'), ('ring', '<u2')])
    arr['x'] = (r * np.cos(elevation) * np.cos(azimuth)).ravel()
    arr['y'] = (r * np.cos(elevation) * np.sin(azimuth)).ravel()
    arr['z'] = (r * np.sin(elevation)).ravel()
    arr['intensity'] = rng.uniform(0, 1, beams * steps)
    arr['ring'] = np.repeat(np.arange(beams), steps)
    return arr


def generated_frame(t: float) -> np.ndarray:
    rows, cols = np.mgrid[0:240, 0:320]
    frame = np.stack([rows * 255 // 240, (cols + int(20 * t)) % 320 * 255 // 320, np.full_like(rows, 90)], -1)
    return frame.astype(np.uint8)


def write_recording(path: Path, scans: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    types = TS.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        points = writer.add_connection('/points', 'sensor_msgs/msg/PointCloud2', typestore=TS)
        image = writer.add_connection('/camera/image_raw', 'sensor_msgs/msg/Image', typestore=TS)
        for i in range(scans):
            stamp = 10**9 + i * 100_000_000  # 10 Hz
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id='velodyne',
            )
            cloud = array_to_cloud(generated_scan(rng, i * 0.1))
            msg = types['sensor_msgs/msg/PointCloud2'](
                header=header, height=cloud.height, width=cloud.width,
                fields=[types['sensor_msgs/msg/PointField'](f.name, f.offset, f.datatype, f.count)
                        for f in cloud.fields],
                is_bigendian=False, point_step=cloud.point_step, row_step=cloud.row_step,
                data=np.frombuffer(cloud.data, np.uint8), is_dense=cloud.is_dense,
            )
            writer.write(points, stamp, TS.serialize_cdr(msg, msg.__msgtype__))
            img = array_to_image(generated_frame(i * 0.1), 'rgb8')
            frame = types['sensor_msgs/msg/Image'](
                header=types['std_msgs/msg/Header'](stamp=header.stamp, frame_id='camera'), height=img.height,
                width=img.width, encoding=img.encoding, is_bigendian=0, step=img.step,
                data=np.frombuffer(img.data, np.uint8),
            )
            writer.write(image, stamp, TS.serialize_cdr(frame, frame.__msgtype__))


def publish_untrained_models(model_dir: Path) -> None:
    ontology = Ontology.load()
    classes = tuple(ontology.by_name(n) for n in CLASSES)
    torch.manual_seed(0)
    specs = {
        Modality.LIDAR: (LidarInputSpec(height=32, width=1024, fov_up_deg=2.0, fov_down_deg=-24.8), 'rangenet', 5),
        Modality.CAMERA: (CameraInputSpec(height=120, width=160), 'imagenet', 3),
    }
    for modality, (spec, arch, channels) in specs.items():
        net = build_model(ModelConfig(arch, 'lite', channels, len(classes)))
        meta = ModelMetadata(modality, 'v0', classes, spec, provenance={'trained': False, 'note': 'random weights'})
        sample = np.random.default_rng(0).standard_normal((1, channels, spec.height, spec.width)).astype(np.float32)
        entry, check = export_and_publish(net, meta, model_dir, [sample], provenance={'trained': False})
        print(f'  {modality.value}: {entry.path} (ONNX vs torch argmax agreement {check["argmax_agreement"]:.4f})')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'out' / 'demo')
    parser.add_argument('--scans', type=int, default=100)
    args = parser.parse_args()
    out: Path = args.out
    print('css_perception demo. NOTE: the models are UNTRAINED and the scene is generated; labels are meaningless.')
    recording, model_dir = out / 'recording', out / 'models'
    if not recording.exists():
        print(f'[1/4] writing a {args.scans}-scan generated recording (LiDAR 10 Hz + camera) to {recording}')
        write_recording(recording, args.scans, seed=0)
    else:
        print(f'[1/4] reusing {recording}')
    if all(Registry(model_dir).current(m) is not None for m in Modality):
        print(f'[2/4] reusing the models in {model_dir}')
    else:
        print(f'[2/4] exporting untrained models into the registry {model_dir}')
        publish_untrained_models(model_dir)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(random.randint(1, 101)), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    bin_dir = Path(sys.executable).parent
    print('[3/4] starting segment_node and the output monitor, then playing the recording')
    node = subprocess.Popen(
        [bin_dir / 'css-perception', 'node', '--params', ROOT / 'config' / 'segment.yaml', '--ros-args',
         '-p', f'model_dir:={model_dir}', '-r', 'points:=/points', '-r', 'image:=/camera/image_raw'],
        env=env,
    )
    report = out / 'report.json'
    monitor = subprocess.Popen([bin_dir / 'css-perception', 'monitor', '--duration', '120', '--idle', '4',
                                '--out', report], env=env, stdout=subprocess.DEVNULL)
    time.sleep(4.0)  # node: load + warm up both models
    play = subprocess.run([bin_dir / 'css-perception', 'play', recording, '--start-delay', '1.5'], env=env,
                          check=False)
    monitor.wait(timeout=150)
    node.send_signal(signal.SIGINT)
    node.wait(timeout=30)
    summary = json.loads(report.read_text()) if report.exists() else {}
    print(f'[4/4] what the node published (full report: {report})')
    print(json.dumps({k: summary.get(k) for k in ('messages', 'frames_per_model', 'lidar_points_per_class',
                                                    'camera_pixels_per_class')}, indent=2))
    for name, status in summary.get('diagnostics', {}).items():
        print(f'  {name}: {status.get("message")}; rate {status.get("rate_hz")} Hz, total latency p50 '
              f'{status.get("latency_total_p50_ms")} ms p95 {status.get("latency_total_p95_ms")} ms, '
              f'frames in/out {status.get("frames_in")}/{status.get("frames_out")}, dropped {status.get("dropped")}')
    print('REMINDER: untrained models on a generated scene: the class labels above are not meaningful.')
    ok = play.returncode == 0 and summary.get('messages', {}).get('lidar/points', 0) > 0
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
