"""Builders from the core's arrays to ROS messages, and the colour overlay; no state, no node."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from css_perception.core.image import ImageData
from css_perception.core.metadata import ModelMetadata
from css_perception.core.pointcloud import CloudData

__all__ = [
    'cloud_message',
    'diagnostic_status',
    'image_message',
    'legend_json',
    'legend_markers',
    'overlay',
]

LEVELS = {'OK': DiagnosticStatus.OK, 'WARN': DiagnosticStatus.WARN, 'ERROR': DiagnosticStatus.ERROR}


def cloud_message(cloud: CloudData, header: Header) -> PointCloud2:
    return PointCloud2(
        header=header,
        height=cloud.height,
        width=cloud.width,
        fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in cloud.fields],
        is_bigendian=cloud.is_bigendian,
        point_step=cloud.point_step,
        row_step=cloud.row_step,
        data=cloud.data,
        is_dense=cloud.is_dense,
    )


def image_message(img: ImageData, header: Header) -> Image:
    return Image(
        header=header,
        height=img.height,
        width=img.width,
        encoding=img.encoding,
        is_bigendian=int(img.is_bigendian),
        step=img.step,
        data=img.data,
    )


def overlay(rgb: np.ndarray, labels: np.ndarray, lut: np.ndarray, alpha: float) -> np.ndarray:
    """Blend class colours (``lut[labels]``) over the frame; unlabelled pixels (id 0) keep the frame."""
    colours = lut[labels].astype(np.float32)
    blended = rgb.astype(np.float32) * (1.0 - alpha) + colours * alpha
    out = np.where((labels == 0)[..., None], rgb, blended.astype(np.uint8))
    return np.ascontiguousarray(out, dtype=np.uint8)


def legend_json(models: Mapping[str, ModelMetadata | None]) -> str:
    """The latched legend: per modality the served version, parent and classes (id, name, colour)."""
    return json.dumps(
        {
            modality: None
            if meta is None
            else {
                'version': meta.version,
                'parent_version': meta.parent_version,
                'classes': [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in meta.classes],
            }
            for modality, meta in models.items()
        }
    )


def legend_markers(metadata: ModelMetadata, header: Header, namespace: str) -> MarkerArray:
    """One text marker per class in its colour, stacked in a column for RViz; a DELETEALL clears old legends."""
    markers = [Marker(header=header, ns=namespace, action=Marker.DELETEALL)]
    for row, cls in enumerate(metadata.classes):
        m = Marker(header=header, ns=namespace, id=row, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        m.pose.position.z = 4.0 - 0.6 * row
        m.pose.orientation.w = 1.0
        m.scale.z = 0.5
        m.color.r, m.color.g, m.color.b = (c / 255.0 for c in cls.color)
        m.color.a = 1.0
        m.text = f'{cls.id} {cls.name}'
        markers.append(m)
    return MarkerArray(markers=markers)


def diagnostic_status(name: str, level: str, message: str, values: Mapping[str, Any]) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=LEVELS[level],
        name=name,
        message=message,
        hardware_id='css_perception',
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
