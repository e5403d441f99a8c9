"""Loading models in real ONNX Runtime: good ones serve, each broken one is refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from support.onnx_models import camera_metadata, lidar_metadata, write_model

from css_perception.runtime.errors import ModelLoadError, ModelValidationError
from css_perception.runtime.model import SegmentationModel, choose_providers, session_providers
from css_perception.runtime.segmenter import make_segmenter, unsure_as_unlabelled


def test_good_model_loads_on_cpu(tmp_path) -> None:
    model = SegmentationModel.load(write_model(tmp_path / 'm.onnx', lidar_metadata()))
    assert model.provider == 'CPUExecutionProvider'
    assert model.metadata.class_ids == (0, 40, 10)
    assert model.infer(model.representative_input()).shape == (1, 3, 16, 64)


def test_the_session_threads_sleep_between_runs(tmp_path) -> None:
    # Spinning workers held off the node's other threads and processes on shared cores (bench/bench_node_playback.py).
    model = SegmentationModel.load(write_model(tmp_path / 'm.onnx', lidar_metadata()))
    options = model.session.get_session_options()
    assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'


def test_unavailable_providers_fall_back_to_cpu() -> None:
    assert choose_providers(['NoSuchExecutionProvider', 'CUDAExecutionProvider'])[-1] == 'CPUExecutionProvider'
    assert 'NoSuchExecutionProvider' not in choose_providers(['NoSuchExecutionProvider'])


def test_tensorrt_gets_an_engine_cache_per_model_content(tmp_path) -> None:
    first = write_model(tmp_path / 'a.onnx', lidar_metadata(), winner=1)
    same = tmp_path / 'b.onnx'
    same.write_bytes(first.read_bytes())
    retrained = write_model(tmp_path / 'a2.onnx', lidar_metadata(), winner=2)
    cache = tmp_path / 'trt'
    chosen = ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
    providers = session_providers(first, chosen, cache)
    (name, options), *rest = providers
    assert (name, rest) == ('TensorrtExecutionProvider', chosen[1:])
    assert options['trt_engine_cache_enable'] == 'True'
    directory = Path(options['trt_engine_cache_path'])
    assert directory.is_dir()
    assert directory.parent == cache
    assert session_providers(same, chosen, cache)[0][1]['trt_engine_cache_path'] == str(directory)
    assert session_providers(retrained, chosen, cache)[0][1]['trt_engine_cache_path'] != str(directory)
    assert session_providers(first, chosen, None) == chosen
    assert session_providers(first, chosen[1:], cache) == chosen[1:]


def test_an_engine_cache_that_cannot_be_made_loads_without_one(tmp_path) -> None:
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    model = write_model(tmp_path / 'm.onnx', lidar_metadata())
    assert session_providers(model, ['TensorrtExecutionProvider'], blocker) == ['TensorrtExecutionProvider']


def test_without_tensorrt_in_the_build_no_cache_is_made(tmp_path) -> None:
    model = SegmentationModel.load(write_model(tmp_path / 'm.onnx', lidar_metadata()), tensorrt_cache=tmp_path / 'trt')
    assert model.provider == 'CPUExecutionProvider'
    assert not (tmp_path / 'trt').exists()


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match='does not exist'):
        SegmentationModel.load(tmp_path / 'nope.onnx')


def test_truncated_and_garbage_files(tmp_path) -> None:
    good = write_model(tmp_path / 'm.onnx', lidar_metadata()).read_bytes()
    (tmp_path / 'cut.onnx').write_bytes(good[: len(good) // 2])
    (tmp_path / 'junk.onnx').write_bytes(b'\x00junk' * 100)
    for name in ('cut.onnx', 'junk.onnx'):
        with pytest.raises(ModelLoadError, match='not a loadable ONNX model'):
            SegmentationModel.load(tmp_path / name)


def test_missing_metadata_names_every_key(tmp_path) -> None:
    path = write_model(tmp_path / 'm.onnx', lidar_metadata(), drop_props=('classes', 'input_spec'))
    with pytest.raises(ModelValidationError, match=r'missing css\.classes, css\.input_spec'):
        SegmentationModel.load(path)


def test_output_channels_must_match_classes(tmp_path) -> None:
    path = write_model(tmp_path / 'm.onnx', camera_metadata(), out_channels=5)
    with pytest.raises(ModelValidationError, match='5 output channels but 3 classes'):
        SegmentationModel.load(path)


def test_input_size_must_match_metadata(tmp_path) -> None:
    path = write_model(tmp_path / 'm.onnx', lidar_metadata(height=16))
    model = onnx.load_from_string(path.read_bytes())  # same graph; the metadata now claims a 32-row input
    for prop in model.metadata_props:
        if prop.key == 'css.input_spec':
            prop.value = prop.value.replace('"height": 16', '"height": 32')
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelValidationError, match='input height 16 != 32'):
        SegmentationModel.load(path)


def test_nan_model_is_refused_at_warm_up(tmp_path) -> None:
    with pytest.raises(ModelValidationError, match='non-finite'):
        SegmentationModel.load(write_model(tmp_path / 'm.onnx', lidar_metadata(), nan=True))


def test_lidar_segmenter_labels_every_point(tmp_path) -> None:
    seg = make_segmenter(SegmentationModel.load(write_model(tmp_path / 'm.onnx', lidar_metadata(), winner=2)))
    points = np.random.default_rng(0).uniform(-20, 20, (500, 3)).astype(np.float32)
    points[:5] = np.nan
    result = seg.segment(points, np.ones(500, np.float32))
    assert result.labels.dtype == np.uint16
    np.testing.assert_array_equal(result.labels[:5], 0)
    np.testing.assert_array_equal(result.labels[5:], 10)
    assert (result.scores[5:] > 0.9).all()
    assert result.scores[:5].sum() == 0
    assert set(result.timings) == {'project', 'infer', 'back_project'}


def test_camera_segmenter_returns_frame_sized_labels(tmp_path) -> None:
    seg = make_segmenter(SegmentationModel.load(write_model(tmp_path / 'm.onnx', camera_metadata(), winner=1)))
    result = seg.segment(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8))
    assert result.labels.shape == (45, 70)
    assert (result.labels == 40).all()
    assert result.scores.shape == (45, 70)


def test_unsure_labels_become_unlabelled_and_keep_their_dtype() -> None:
    labels = np.array([[10, 40], [40, 10]], np.uint16)
    scores = np.array([[0.9, 0.4], [0.6, 0.55]], np.float32)
    unsure = unsure_as_unlabelled(labels, scores, 0.6)
    np.testing.assert_array_equal(unsure, [[10, 0], [40, 0]])  # 0.6 itself is sure enough
    assert unsure.dtype == np.uint16
    assert unsure_as_unlabelled(labels, scores, 0.0) is labels
