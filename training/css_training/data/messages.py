"""rosbags messages of the recording layout shared by the simulator and the SemanticKITTI converter.

Built with the core conversions (:mod:`css_perception.core.pointcloud`, :mod:`css_perception.core.image`), so a
recording written here decodes with the same code the node and the readers use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rosbags.typesys.store import Typestore

from css_perception.core.image import array_to_image, rgb8_to_compressed
from css_perception.core.pointcloud import array_to_cloud
from css_training.data.poses import matrix_to_quat

__all__ = [
    'camera_info',
    'cloud_message',
    'compressed_image_message',
    'header',
    'image_message',
    'odometry',
    'tf_message',
]


def header(ts: Typestore, stamp_ns: int, frame: str) -> Any:
    stamp = ts.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return ts.types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame)


def cloud_message(ts: Typestore, arr: np.ndarray, stamp_ns: int, frame: str) -> Any:
    """PointCloud2 from a structured array (its fields and offsets kept)."""
    cloud = array_to_cloud(arr)
    types = ts.types
    fields = [types['sensor_msgs/msg/PointField'](f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    return types['sensor_msgs/msg/PointCloud2'](
        header=header(ts, stamp_ns, frame),
        height=cloud.height,
        width=cloud.width,
        fields=fields,
        is_bigendian=cloud.is_bigendian,
        point_step=cloud.point_step,
        row_step=cloud.row_step,
        data=np.frombuffer(cloud.data, np.uint8),
        is_dense=cloud.is_dense,
    )


def image_message(ts: Typestore, arr: np.ndarray, encoding: str, stamp_ns: int, frame: str) -> Any:
    image = array_to_image(arr, encoding)
    return ts.types['sensor_msgs/msg/Image'](
        header=header(ts, stamp_ns, frame),
        height=image.height,
        width=image.width,
        encoding=image.encoding,
        is_bigendian=int(image.is_bigendian),
        step=image.step,
        data=np.frombuffer(image.data, np.uint8),
    )


def compressed_image_message(ts: Typestore, rgb: np.ndarray, fmt: str, stamp_ns: int, frame: str) -> Any:
    """A jpeg or png ``CompressedImage`` of an rgb8 frame."""
    name, data = rgb8_to_compressed(rgb, fmt)
    return ts.types['sensor_msgs/msg/CompressedImage'](
        header=header(ts, stamp_ns, frame), format=name, data=np.frombuffer(data, np.uint8)
    )


def camera_info(ts: Typestore, stamp_ns: int, frame: str, width: int, height: int, k: np.ndarray) -> Any:
    """An undistorted pinhole: plumb_bob with zero distortion, P = [K | 0]."""
    k = np.asarray(k, np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    types = ts.types
    return types['sensor_msgs/msg/CameraInfo'](
        header=header(ts, stamp_ns, frame),
        height=height,
        width=width,
        distortion_model='plumb_bob',
        d=np.zeros(5),
        k=k.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=p.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _pose_parts(ts: Typestore, pose: np.ndarray) -> tuple[list[float], Any]:
    x, y, z, w = matrix_to_quat(pose[:3, :3]).tolist()
    return pose[:3, 3].tolist(), ts.types['geometry_msgs/msg/Quaternion'](x=x, y=y, z=z, w=w)


def tf_message(ts: Typestore, stamp_ns: int, transforms: Sequence[tuple[str, str, np.ndarray]]) -> Any:
    """TFMessage of (parent, child, 4x4 child -> parent) transforms, all at ``stamp_ns``."""
    types = ts.types
    stamped = []
    for parent, child, pose in transforms:
        (x, y, z), rotation = _pose_parts(ts, pose)
        stamped.append(
            types['geometry_msgs/msg/TransformStamped'](
                header=header(ts, stamp_ns, parent),
                child_frame_id=child,
                transform=types['geometry_msgs/msg/Transform'](
                    translation=types['geometry_msgs/msg/Vector3'](x=x, y=y, z=z), rotation=rotation
                ),
            )
        )
    return types['tf2_msgs/msg/TFMessage'](transforms=stamped)


def odometry(ts: Typestore, stamp_ns: int, pose: np.ndarray, parent: str = 'odom', child: str = 'base_link') -> Any:
    types = ts.types
    (x, y, z), rotation = _pose_parts(ts, pose)
    zero = types['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0)
    covariance = np.zeros(36)
    return types['nav_msgs/msg/Odometry'](
        header=header(ts, stamp_ns, parent),
        child_frame_id=child,
        pose=types['geometry_msgs/msg/PoseWithCovariance'](
            pose=types['geometry_msgs/msg/Pose'](
                position=types['geometry_msgs/msg/Point'](x=x, y=y, z=z), orientation=rotation
            ),
            covariance=covariance,
        ),
        twist=types['geometry_msgs/msg/TwistWithCovariance'](
            twist=types['geometry_msgs/msg/Twist'](linear=zero, angular=zero), covariance=covariance
        ),
    )
