"""Tiny real ONNX models for tests, built with ``onnx.helper``: a 1x1 convolution with css metadata.

Weights are zero and the bias decides the class, so every pixel predicts channel ``winner``: tests know what
the segmenter must output. Options break the contract one way at a time (NaN output, wrong channel count,
missing metadata keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from css_perception.core.metadata import CameraInputSpec, ClassInfo, LidarInputSpec, Modality, ModelMetadata
from css_perception.core.ontology import Ontology

__all__ = ['build_model', 'camera_metadata', 'lidar_metadata', 'write_model']

_ONTOLOGY = Ontology.load()


def _classes(class_ids: Sequence[int]) -> tuple[ClassInfo, ...]:
    return tuple(ClassInfo(i, _ONTOLOGY.by_id(i).name, _ONTOLOGY.by_id(i).color) for i in class_ids)


def lidar_metadata(
    version: str = 'v1', class_ids: Sequence[int] = (0, 40, 10), height: int = 16, width: int = 64, **spec: float
) -> ModelMetadata:
    input_spec = LidarInputSpec(
        height=height,
        width=width,
        fov_up_deg=spec.pop('fov_up_deg', 3.0),
        fov_down_deg=spec.pop('fov_down_deg', -25.0),
        **spec,
    )
    return ModelMetadata(Modality.LIDAR, version, _classes(class_ids), input_spec)


def camera_metadata(
    version: str = 'v1', class_ids: Sequence[int] = (0, 40, 10), height: int = 24, width: int = 32
) -> ModelMetadata:
    return ModelMetadata(Modality.CAMERA, version, _classes(class_ids), CameraInputSpec(height=height, width=width))


def build_model(
    metadata: ModelMetadata,
    *,
    winner: int = 1,
    nan: bool = False,
    out_channels: int | None = None,
    drop_props: Sequence[str] = (),
) -> bytes:
    """Serialized ONNX bytes of a 1x1 conv whose argmax is channel ``winner`` everywhere."""
    spec = metadata.input_spec
    channels = len(spec.channels) if metadata.modality is Modality.LIDAR else 3
    k = out_channels or metadata.num_classes
    bias = np.zeros(k, np.float32)
    bias[winner % k] = 5.0
    weight = np.zeros((k, channels, 1, 1), np.float32)
    weight[:, 0, 0, 0] = 0.01  # a little input dependence, so outputs are not constant
    nodes = [helper.make_node('Conv', ['input', 'weight', 'bias'], ['conv' if nan else 'logits'])]
    inits = [numpy_helper.from_array(weight, 'weight'), numpy_helper.from_array(bias, 'bias')]
    if nan:
        inits.append(numpy_helper.from_array(np.array(np.nan, np.float32), 'nan'))
        nodes.append(helper.make_node('Mul', ['conv', 'nan'], ['logits']))
    graph = helper.make_graph(
        nodes,
        'css_test_model',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, channels, spec.height, spec.width])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, k, spec.height, spec.width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    props = {key: value for key, value in metadata.to_props().items() if key.removeprefix('css.') not in drop_props}
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model(path: str | Path, metadata: ModelMetadata, **options: object) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_model(metadata, **options))  # type: ignore[arg-type]
    return path
