"""What a camera frame costs the node to decode: raw ``Image`` against jpeg and png ``CompressedImage``.

Raw frames come as bgr8 and as what drivers send undecoded: a Bayer mosaic (one byte a pixel) and packed YUV 4:2:2
(two; both filled from the frame's bytes, as their decode time does not depend on the values).

The frame is a simulated street (the simulator's camera at the chosen size), so the compressed sizes and decode
times are those of a real-looking image, not of noise. Each decode is reported in ms and as a ratio to a baseline
measured in the same run: one plain copy of the raw frame's bytes.
Run: ``python bench/bench_image_decode.py [--width 640 --height 480] [--repeat 50]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from bench_pipeline import best_ms, print_ratios

from css_perception.core.image import array_to_image, compressed_to_rgb8, image_to_array, rgb8_to_compressed, to_rgb8
from css_training.sim.config import CameraConfig, SimConfig
from css_training.sim.record import Simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--repeat', type=int, default=50)
    args = parser.parse_args()
    focal = 0.69 * args.width  # the simulator's default field of view (fx 220 at 320 px)
    camera = CameraConfig(width=args.width, height=args.height, fx=focal, fy=focal)
    rgb, _ = Simulation(SimConfig(scans=20, camera=camera)).frame(5)
    raw = array_to_image(np.ascontiguousarray(rgb[..., ::-1]), 'bgr8')  # drivers often publish bgr8
    compressed = {fmt: rgb8_to_compressed(rgb, fmt) for fmt in ('jpeg', 'png')}
    undecoded = [
        array_to_image(np.ascontiguousarray(rgb[..., 1]), 'bayer_rggb8'),
        array_to_image(np.ascontiguousarray(rgb[..., :2]), 'yuv422_yuy2'),
    ]

    baseline = best_ms(lambda: np.frombuffer(raw.data, np.uint8).copy(), args.repeat)
    stages = {
        f'raw bgr8 Image ({len(raw.data) / 1e6:.2f} MB): image_to_array + to_rgb8': lambda: to_rgb8(
            image_to_array(raw), raw.encoding
        ),
        **{
            f'raw {img.encoding} Image ({len(img.data) / 1e6:.2f} MB): image_to_array + to_rgb8': (
                lambda img=img: to_rgb8(image_to_array(img), img.encoding)
            )
            for img in undecoded
        },
        **{
            f'{fmt} CompressedImage ({len(data) / 1e3:.0f} kB): compressed_to_rgb8': (
                lambda name=name, data=data: compressed_to_rgb8(name, data)
            )
            for fmt, (name, data) in compressed.items()
        },
    }
    print(f'{args.width} x {args.height} frame; baseline copy of the raw bytes: {baseline:.3f} ms')
    print_ratios('decode', stages, baseline, args.repeat)


if __name__ == '__main__':
    main()
