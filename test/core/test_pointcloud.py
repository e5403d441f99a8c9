"""PointCloud2 conversions: random layouts round-trip; every malformed case raises ConversionError."""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from css_perception.core.errors import ConversionError
from css_perception.core.pointcloud import (
    DATATYPES,
    CloudData,
    PointFieldSpec,
    array_to_cloud,
    cloud_to_array,
    with_fields,
    xyz_intensity,
)

_STRUCT = {1: 'b', 2: 'B', 3: 'h', 4: 'H', 5: 'i', 6: 'I', 7: 'f', 8: 'd'}


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[PointFieldSpec], int]:
    """Fields with random types, counts and gaps between them, and a point_step with trailing padding."""
    n = draw(st.integers(1, 6))
    fields, offset = [], 0
    for i in range(n):
        datatype = draw(st.sampled_from(sorted(DATATYPES)))
        count = draw(st.integers(1, 3))
        offset += draw(st.integers(0, 5))
        fields.append(PointFieldSpec(f'f{i}', offset, datatype, count))
        offset += DATATYPES[datatype].itemsize * count
    return fields, offset + draw(st.integers(0, 9))


@given(
    layout=layouts(),
    height=st.integers(1, 3),
    width=st.integers(0, 7),
    row_pad=st.integers(0, 5),
    big=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=150, deadline=None)
def test_reads_every_field_of_random_layouts(layout, height, width, row_pad, big, seed) -> None:
    fields, point_step = layout
    row_step = width * point_step + row_pad
    raw = np.random.default_rng(seed).integers(0, 256, row_step * height, dtype=np.uint8).tobytes()
    msg = CloudData(height, width, tuple(fields), big, point_step, row_step, raw, True)
    arr = cloud_to_array(msg)
    assert arr.shape == ((height, width) if height > 1 else (width,))
    flat = arr.reshape(-1)
    endian = '>' if big else '<'
    for r in range(height):
        for c in range(width):
            base = r * row_step + c * point_step
            for f in fields:
                expected = struct.unpack_from(f'{endian}{f.count}{_STRUCT[f.datatype]}', raw, base + f.offset)
                got = np.atleast_1d(flat[r * width + c][f.name])
                np.testing.assert_array_equal(got, np.array(expected, dtype=got.dtype))


@given(layout=layouts(), height=st.integers(1, 3), width=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_array_round_trip_keeps_bytes(layout, height, width, seed) -> None:
    fields, point_step = layout
    raw = np.random.default_rng(seed).integers(0, 256, point_step * width * height, dtype=np.uint8).tobytes()
    arr = cloud_to_array(CloudData(height, width, tuple(fields), False, point_step, point_step * width, raw, True))
    cloud = array_to_cloud(arr)
    assert (cloud.height, cloud.width, cloud.point_step) == (height, width, point_step)
    assert cloud.fields == tuple(fields)
    assert cloud.data == raw
    assert cloud_to_array(cloud).tobytes() == arr.tobytes()


def _xyz_cloud(points: np.ndarray) -> np.ndarray:
    arr = np.zeros(len(points), [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4')])
    for i, name in enumerate(('x', 'y', 'z', 'intensity')):
        arr[name] = points[:, i]
    return arr


def test_nan_points_survive_and_clear_is_dense() -> None:
    points = np.array([[1, 2, 3, 0.5], [np.nan, np.nan, np.nan, 0.0]], np.float32)
    cloud = array_to_cloud(_xyz_cloud(points))
    assert not cloud.is_dense
    xyz, intensity = xyz_intensity(cloud_to_array(cloud))
    np.testing.assert_array_equal(xyz, points[:, :3])
    np.testing.assert_array_equal(intensity, points[:, 3])


def test_organised_cloud_keeps_its_grid() -> None:
    arr = _xyz_cloud(np.arange(24, dtype=np.float32).reshape(6, 4)).reshape(2, 3)
    back = cloud_to_array(array_to_cloud(arr))
    assert back.shape == (2, 3)
    np.testing.assert_array_equal(back['y'], arr['y'])


def test_with_fields_appends_and_replaces() -> None:
    arr = with_fields(_xyz_cloud(np.ones((3, 4), np.float32)), label=np.array([1, 2, 3], np.uint32))
    out = with_fields(arr, label=np.array([7, 8, 9], np.uint16), score=np.full(3, 0.5, np.float32))
    assert out.dtype.names == ('x', 'y', 'z', 'intensity', 'label', 'score')
    assert out.dtype['label'] == np.uint16
    np.testing.assert_array_equal(out['label'], [7, 8, 9])
    np.testing.assert_array_equal(out['x'], arr['x'])
    back = cloud_to_array(array_to_cloud(out))
    np.testing.assert_array_equal(back['score'], [0.5, 0.5, 0.5])


def test_real_sensor_msgs_message_round_trip() -> None:
    from sensor_msgs.msg import PointCloud2, PointField

    arr = _xyz_cloud(np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32))
    cloud = array_to_cloud(arr)
    msg = PointCloud2(
        height=cloud.height,
        width=cloud.width,
        fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in cloud.fields],
        is_bigendian=cloud.is_bigendian,
        point_step=cloud.point_step,
        row_step=cloud.row_step,
        data=cloud.data,
        is_dense=cloud.is_dense,
    )
    np.testing.assert_array_equal(cloud_to_array(msg), arr)


_GOOD = array_to_cloud(_xyz_cloud(np.ones((4, 4), np.float32)))


@pytest.mark.parametrize(
    ('cloud', 'message'),
    [
        (replace(_GOOD, data=_GOOD.data[:-1]), 'data is 63 bytes'),
        (replace(_GOOD, width=5, row_step=80), 'data is 64 bytes'),
        (replace(_GOOD, row_step=8), 'row_step 8 is smaller'),
        (replace(_GOOD, point_step=12), 'does not fit in point_step 12'),
        (replace(_GOOD, point_step=0), 'point_step must be positive'),
        (replace(_GOOD, fields=(PointFieldSpec('x', 0, 9, 1),)), 'unknown PointField datatype 9'),
        (replace(_GOOD, fields=(PointFieldSpec('x', 0, 7, 1),) * 2), "'x' appears twice"),
    ],
)
def test_malformed_cloud_raises_conversion_error(cloud: CloudData, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        cloud_to_array(cloud)


def test_missing_xyz_names_what_the_cloud_has() -> None:
    arr = np.zeros(3, [('x', '<f4'), ('intensity', '<f4')])
    with pytest.raises(ConversionError, match='no y, z field; it has: x, intensity'):
        xyz_intensity(arr)


def test_unsupported_array_dtype_is_refused() -> None:
    with pytest.raises(ConversionError, match='no PointField datatype'):
        array_to_cloud(np.zeros(2, [('x', '<i8')]))
    with pytest.raises(ConversionError, match='structured array'):
        array_to_cloud(np.zeros(3, np.float32))
