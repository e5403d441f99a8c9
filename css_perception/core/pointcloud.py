"""``sensor_msgs/PointCloud2`` <-> numpy structured arrays, for any field layout a driver may send.

The message's own layout (offsets, padding, ``point_step``, ``row_step``) becomes a numpy dtype, so a cloud is
read with one ``frombuffer`` and written with one ``tobytes``: no per-point Python. Functions take any object with
the message's attributes (an rclpy message, a rosbags message or a :class:`CloudData`), which keeps this module
free of ROS imports.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from css_perception.core.errors import ConversionError

__all__ = [
    'DATATYPES',
    'CloudData',
    'PointFieldSpec',
    'array_to_cloud',
    'cloud_dtype',
    'cloud_to_array',
    'with_fields',
    'xyz_intensity',
]

# sensor_msgs/PointField datatype constants -> numpy scalar type (little-endian; byte order is applied per cloud).
DATATYPES: dict[int, np.dtype] = {
    1: np.dtype('i1'),
    2: np.dtype('u1'),
    3: np.dtype('<i2'),
    4: np.dtype('<u2'),
    5: np.dtype('<i4'),
    6: np.dtype('<u4'),
    7: np.dtype('<f4'),
    8: np.dtype('<f8'),
}
_DATATYPE_OF = {(dt.kind, dt.itemsize): code for code, dt in DATATYPES.items()}
_NATIVE_BIG = sys.byteorder == 'big'


class PointFieldSpec(NamedTuple):
    """One ``sensor_msgs/PointField``: the attributes the conversion needs, nothing ROS-specific."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass(frozen=True)
class CloudData:
    """The wire form of a PointCloud2 without its header; ``ros.messages`` turns it into a message."""

    height: int
    width: int
    fields: tuple[PointFieldSpec, ...]
    is_bigendian: bool
    point_step: int
    row_step: int
    data: bytes
    is_dense: bool


def cloud_dtype(fields: Sequence[Any], point_step: int, is_bigendian: bool = False) -> np.dtype:
    """The structured dtype of one point: each field at its offset, ``point_step`` bytes in all (padding kept).

    Raises:
        ConversionError: unknown datatype, duplicate name, or a field that does not fit in ``point_step``.
    """
    if point_step <= 0:
        raise ConversionError(f'point_step must be positive, got {point_step}')
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    for field in fields:
        if field.datatype not in DATATYPES:
            msg = f'field {field.name!r} has unknown PointField datatype {field.datatype} (known: 1..8)'
            raise ConversionError(msg)
        if field.name in names:
            raise ConversionError(f'field {field.name!r} appears twice')
        base = DATATYPES[field.datatype].newbyteorder('>' if is_bigendian else '<')
        count = max(int(field.count), 1)  # some drivers send count 0 for scalars
        if field.offset < 0 or field.offset + base.itemsize * count > point_step:
            msg = (
                f'field {field.name!r} (offset {field.offset}, {count} x {base.itemsize} bytes) does not fit in '
                f'point_step {point_step}'
            )
            raise ConversionError(msg)
        names.append(field.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(field.offset))
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': point_step})


def cloud_to_array(msg: Any) -> np.ndarray:
    """The cloud as a structured array in native byte order: shape (height, width) if organised, else (width,).

    Little-endian data (every common platform) is a read-only view of the message buffer; big-endian data is
    converted to a native copy. Row padding (``row_step`` > ``width * point_step``) is skipped.

    Raises:
        ConversionError: the data length, steps or fields do not describe a valid cloud.
    """
    height, width, point_step = int(msg.height), int(msg.width), int(msg.point_step)
    dtype = cloud_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    row_step = int(msg.row_step)
    if row_step < width * point_step:
        msg_ = f'row_step {row_step} is smaller than width {width} x point_step {point_step}'
        raise ConversionError(msg_)
    data = msg.data if isinstance(msg.data, bytes | bytearray | memoryview | np.ndarray) else bytes(msg.data)
    raw = np.frombuffer(data, np.uint8)
    if raw.size != row_step * height:
        msg_ = (
            f'data is {raw.size} bytes, but height {height} x row_step {row_step} = {row_step * height} '
            f'(width {width}, point_step {point_step})'
        )
        raise ConversionError(msg_)
    if row_step == width * point_step:
        arr = raw.view(dtype)
    else:
        arr = np.ascontiguousarray(raw.reshape(height, row_step)[:, : width * point_step]).view(dtype)
    arr = arr.reshape((height, width) if height > 1 else (height * width,))
    if bool(msg.is_bigendian) != _NATIVE_BIG:
        arr = arr.astype(arr.dtype.newbyteorder('='))
    return arr


def xyz_intensity(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Flat (N, 3) float32 coordinates and (N,) float32 intensity (None when the cloud has no such field).

    Raises:
        ConversionError: the cloud lacks x, y or z.
    """
    names = arr.dtype.names or ()
    missing = [axis for axis in 'xyz' if axis not in names]
    if missing:
        raise ConversionError(f'cloud has no {", ".join(missing)} field; it has: {", ".join(names) or "none"}')
    flat = arr.reshape(-1)
    xyz = np.empty((flat.size, 3), np.float32)
    for i, axis in enumerate('xyz'):
        xyz[:, i] = flat[axis]
    intensity_name = next((n for n in ('intensity', 'i', 'reflectivity') if n in names), None)
    intensity = None if intensity_name is None else flat[intensity_name].astype(np.float32)
    return xyz, intensity


def with_fields(arr: np.ndarray, **columns: np.ndarray) -> np.ndarray:
    """``arr`` with the given columns appended as fields (a field of the same name is replaced).

    The input's bytes are copied as they are, padding included, so every input field survives unchanged.
    """
    replaced = set(columns)
    old = arr.dtype
    kept = [n for n in old.names or () if n not in replaced]
    names, formats, offsets = kept[:], [old.fields[n][0] for n in kept], [old.fields[n][1] for n in kept]
    end = old.itemsize
    for name, column in columns.items():
        dt = np.asarray(column).dtype
        if dt.kind not in 'iuf':
            raise ConversionError(f'field {name!r} has unsupported dtype {dt}')
        end += -end % dt.itemsize  # keep each new field aligned to its own size
        names.append(name)
        formats.append(dt)
        offsets.append(end)
        end += dt.itemsize
    end += -end % 4
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': end})
    out = np.zeros(arr.shape, dtype)
    out_bytes = out.reshape(-1).view(np.uint8).reshape(arr.size, end)
    out_bytes[:, : old.itemsize] = np.ascontiguousarray(arr).reshape(-1).view(np.uint8).reshape(arr.size, old.itemsize)
    for name, column in columns.items():
        out[name] = np.asarray(column).reshape(arr.shape)
    return out


def array_to_cloud(arr: np.ndarray) -> CloudData:
    """A cloud from a 1-D (unorganised) or 2-D (organised) structured array; fields keep their offsets.

    Raises:
        ConversionError: not a structured array, or a field type PointField cannot express.
    """
    if arr.dtype.names is None or arr.ndim not in (1, 2):
        raise ConversionError(f'expected a 1-D or 2-D structured array, got dtype {arr.dtype}, shape {arr.shape}')
    little = arr.dtype.newbyteorder('<')
    native = arr if little == arr.dtype else arr.astype(little)
    fields = []
    for name in native.dtype.names:
        dt, offset = native.dtype.fields[name][:2]
        base, count = (dt.base, int(np.prod(dt.shape))) if dt.shape else (dt, 1)
        code = _DATATYPE_OF.get((base.kind, base.itemsize))
        if code is None:
            raise ConversionError(f'field {name!r} of dtype {base} has no PointField datatype')
        fields.append(PointFieldSpec(name, int(offset), code, count))
    height, width = (1, arr.shape[0]) if arr.ndim == 1 else arr.shape
    names = native.dtype.names
    dense = all(a in names for a in 'xyz') and bool(
        np.all(np.isfinite(native['x']) & np.isfinite(native['y']) & np.isfinite(native['z']))
    )
    step = native.dtype.itemsize
    return CloudData(
        height=int(height),
        width=int(width),
        fields=tuple(sorted(fields, key=lambda f: f.offset)),
        is_bigendian=False,
        point_step=step,
        row_step=step * int(width),
        data=np.ascontiguousarray(native).tobytes(),
        is_dense=dense,
    )
