"""Image conversions over every encoding, padded rows, big-endian 16-bit, compressed images, malformed messages."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from css_perception.core.errors import ConversionError
from css_perception.core.image import (
    ENCODINGS,
    ImageData,
    array_to_image,
    compressed_to_rgb8,
    image_to_array,
    rgb8_to_compressed,
    to_rgb8,
)


def _random_array(encoding: str, height: int, width: int, seed: int) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


@given(
    encoding=st.sampled_from(sorted(ENCODINGS)),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    pad=st.integers(0, 7),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=150, deadline=None)
def test_round_trip_with_padded_rows(encoding, height, width, pad, seed) -> None:
    arr = _random_array(encoding, height, width, seed)
    img = array_to_image(arr, encoding)
    assert (img.height, img.width, img.encoding) == (height, width, encoding)
    np.testing.assert_array_equal(image_to_array(img), arr)
    rows = np.frombuffer(img.data, np.uint8).reshape(height, img.step)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    np.testing.assert_array_equal(image_to_array(replace(img, step=img.step + pad, data=padded.tobytes())), arr)


def test_big_endian_mono16_is_converted() -> None:
    values = np.array([[1, 256], [4660, 65535]], np.uint16)
    img = ImageData(2, 2, 'mono16', True, 4, values.astype('>u2').tobytes())
    out = image_to_array(img)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize(
    ('encoding', 'pixel', 'rgb'),
    [
        ('rgb8', [10, 20, 30], [10, 20, 30]),
        ('bgr8', [10, 20, 30], [30, 20, 10]),
        ('rgba8', [10, 20, 30, 40], [10, 20, 30]),
        ('bgra8', [10, 20, 30, 40], [30, 20, 10]),
        ('mono8', 77, [77, 77, 77]),
        ('mono16', 0x1234, [0x12, 0x12, 0x12]),
    ],
)
def test_to_rgb8(encoding: str, pixel, rgb) -> None:
    dtype, _ = ENCODINGS[encoding]
    arr = np.broadcast_to(np.array(pixel, dtype), (2, 3, *np.shape(pixel))).copy()
    out = to_rgb8(arr, encoding)
    assert out.shape == (2, 3, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[1, 2], rgb)


@pytest.mark.parametrize(
    ('encoding', 'order'), [('rgb8', [0, 1, 2]), ('bgr8', [2, 1, 0]), ('rgba8', [0, 1, 2]), ('bgra8', [2, 1, 0])]
)
def test_colour_frames_keep_every_pixel_from_padded_rows(encoding: str, order: list[int]) -> None:
    padded = _random_array(encoding, 5, 9, 3)
    arr = padded[:, :7]  # rows longer than the image, as image_to_array returns for a padded step
    out = to_rgb8(arr, encoding)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr[..., order])


@pytest.mark.parametrize(
    ('encoding', 'red'),
    [('bayer_rggb8', (0, 0)), ('bayer_bggr8', (1, 1)), ('bayer_gbrg8', (1, 0)), ('bayer_grbg8', (0, 1))],
)
def test_a_bayer_mosaic_gives_each_cell_its_colour(encoding: str, red: tuple[int, int]) -> None:
    cells = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)  # one colour per 2x2 cell
    rgb = cells.repeat(2, axis=0).repeat(2, axis=1)  # a 6 x 8 frame
    rows, cols = np.indices(rgb.shape[:2])
    at_red = (rows % 2 == red[0]) & (cols % 2 == red[1])
    at_blue = (rows % 2 != red[0]) & (cols % 2 != red[1])
    mosaic = np.where(at_red, rgb[..., 0], np.where(at_blue, rgb[..., 2], rgb[..., 1])).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb8(image_to_array(array_to_image(mosaic, encoding)), encoding), rgb)


@pytest.mark.parametrize(
    ('encoding', 'order'), [('yuv422', 'UYVY'), ('uyvy', 'UYVY'), ('yuv422_yuy2', 'YUYV'), ('yuyv', 'YUYV')]
)
def test_packed_yuv422_decodes_with_bt601_video_range(encoding: str, order: str) -> None:
    rgb = np.array([[[255, 0, 0], [255, 0, 0], [40, 200, 90], [40, 200, 90]]], np.float32)  # pixel pairs share U, V
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b  # the inverse of the decoder's BT.601 video-range matrix
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    planes = {'Y': y, 'U': u, 'V': v}
    pairs = [[planes[c][0, 2 * k + (1 if c == 'Y' and i > 1 else 0)] for i, c in enumerate(order)] for k in range(2)]
    packed = np.round(np.array(pairs)).astype(np.uint8).reshape(1, 4, 2)
    out = to_rgb8(image_to_array(array_to_image(packed, encoding)), encoding)
    assert out.shape == (1, 4, 3)
    np.testing.assert_allclose(out, rgb, atol=3)


def test_bayer_and_yuv422_frames_of_odd_size_are_refused() -> None:
    with pytest.raises(ConversionError, match='even size, not 5 x 4'):
        to_rgb8(np.zeros((4, 5), np.uint8), 'bayer_rggb8')
    with pytest.raises(ConversionError, match='even width, not 3'):
        to_rgb8(np.zeros((2, 3, 2), np.uint8), 'yuv422_yuy2')


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_decodes(fmt: str) -> None:
    arr = np.zeros((8, 12, 3), np.uint8)
    arr[:, 6:] = [200, 100, 50]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt.upper())
    out = compressed_to_rgb8(fmt, buf.getvalue())
    assert out.shape == (8, 12, 3)
    error = np.abs(out.astype(int) - arr)
    assert (error.max() if fmt == 'png' else error.mean()) <= (0 if fmt == 'png' else 4)


def test_compressed_garbage_raises() -> None:
    with pytest.raises(ConversionError, match='cannot be decoded'):
        compressed_to_rgb8('jpeg', b'not an image')


@pytest.mark.parametrize(('fmt', 'magic', 'tolerance'), [('png', b'\x89PNG', 0), ('jpeg', b'\xff\xd8', 4)])
def test_rgb8_is_compressed_as_image_transport_names_it(fmt: str, magic: bytes, tolerance: int) -> None:
    arr = np.zeros((8, 12, 3), np.uint8)
    arr[:, 6:] = [200, 100, 50]
    name, data = rgb8_to_compressed(arr, fmt)
    assert name == f'rgb8; {fmt} compressed bgr8'
    assert data.startswith(magic)
    error = np.abs(compressed_to_rgb8(name, data).astype(int) - arr)
    assert error.mean() <= tolerance


def test_compressing_refuses_other_formats_and_arrays() -> None:
    with pytest.raises(ConversionError, match="'bmp' is not one of"):
        rgb8_to_compressed(np.zeros((2, 2, 3), np.uint8), 'bmp')
    with pytest.raises(ConversionError, match='is not rgb8'):
        rgb8_to_compressed(np.zeros((2, 2), np.uint8), 'png')


def test_a_compressed_image_declaring_a_huge_size_is_refused_before_decoding() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

    header = struct.pack('>IIBBBBB', 30_000, 30_000, 8, 2, 0, 0, 0)  # 900 Mpx rgb8, no pixel data
    bomb = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IEND', b'')
    with pytest.raises(ConversionError, match='cannot be decoded'):
        compressed_to_rgb8('png', bomb)


_GOOD = array_to_image(np.zeros((4, 5, 3), np.uint8), 'rgb8')


@pytest.mark.parametrize(
    ('img', 'message'),
    [
        (replace(_GOOD, encoding='nv21'), "unsupported image encoding 'nv21'"),
        (replace(_GOOD, step=14), 'step 14 is smaller'),
        (replace(_GOOD, data=_GOOD.data[:-1]), 'data is 59 bytes'),
        (replace(_GOOD, height=5), 'data is 60 bytes'),
    ],
)
def test_malformed_image_raises(img: ImageData, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        image_to_array(img)


def test_array_encoding_mismatch_raises() -> None:
    with pytest.raises(ConversionError, match='mono16 needs 1 channel'):
        array_to_image(np.zeros((2, 2), np.uint8), 'mono16')
    with pytest.raises(ConversionError, match='is not rgb8'):
        to_rgb8(np.zeros((2, 2), np.uint8), 'rgb8')


def test_real_sensor_msgs_image() -> None:
    from sensor_msgs.msg import Image as ImageMsg

    arr = _random_array('bgr8', 4, 6, 1)
    img = array_to_image(arr, 'bgr8')
    msg = ImageMsg(
        height=img.height, width=img.width, encoding=img.encoding, is_bigendian=0, step=img.step, data=img.data
    )
    np.testing.assert_array_equal(to_rgb8(image_to_array(msg), msg.encoding), arr[..., ::-1])
