"""Nets export to ONNX that the node's loader accepts and whose labels equal torch's argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from css_perception.core.metadata import CameraInputSpec, LidarInputSpec, Modality, ModelMetadata
from css_perception.core.ontology import Ontology
from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry
from css_perception.runtime.segmenter import make_segmenter
from css_training.export import export_and_publish
from css_training.models import ModelConfig, build_model, list_models

CLASSES = tuple(Ontology.load().by_name(n) for n in ('unlabeled', 'car', 'road', 'building'))
SPECS = {
    'rangenet': (Modality.LIDAR, LidarInputSpec(height=16, width=64, fov_up_deg=2.0, fov_down_deg=-24.8), 5),
    'imagenet': (Modality.CAMERA, CameraInputSpec(height=32, width=48), 3),
}


@pytest.mark.parametrize(('arch', 'preset'), list_models())
def test_every_net_has_named_features_and_full_resolution_logits(arch: str, preset: str) -> None:
    _, spec, channels = SPECS[arch]
    net = build_model(ModelConfig(arch, preset, channels, len(CLASSES))).eval()
    x = torch.randn(2, channels, spec.height, spec.width)
    with torch.no_grad():
        feats = net.forward_features(x)
        logits = net(x)
    assert logits.shape == (2, len(CLASSES), spec.height, spec.width)
    assert {f.name for f in net.feature_info} <= set(feats)


@pytest.mark.parametrize('arch', ['rangenet', 'imagenet'])
def test_export_publish_and_node_segmenter_match_torch(tmp_path, arch: str) -> None:
    modality, spec, channels = SPECS[arch]
    torch.manual_seed(0)
    net = build_model(ModelConfig(arch, 'lite', channels, len(CLASSES)))
    with torch.no_grad():  # a random, confident classifier so predictions vary across pixels
        net.classifier.weight.normal_(0.0, 3.0)
    meta = ModelMetadata(modality, 'draft', CLASSES, spec)
    sample = np.random.default_rng(0).standard_normal((1, channels, spec.height, spec.width)).astype(np.float32)
    entry, check = export_and_publish(net, meta, tmp_path / 'models', [sample])
    assert entry.version == 'v1'
    assert Registry(tmp_path / 'models').current(modality).version == 'v1'
    assert check['argmax_agreement'] >= 0.999
    assert check['max_abs_diff'] < 1e-3
    model = SegmentationModel.load(entry.path)
    assert model.metadata.version == 'v1'
    assert model.metadata.provenance['export_parity']['pixels'] == spec.height * spec.width
    segmenter = make_segmenter(model)
    if modality is Modality.CAMERA:
        rgb = np.random.default_rng(1).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
        labels = segmenter.segment(rgb).labels
        x = segmenter.preprocess(rgb)
    else:
        xyz = np.random.default_rng(1).uniform(-20, 20, (400, 3)).astype(np.float32)
        result = segmenter.segment(xyz, None)
        x = result.projection.image[None]
    with torch.no_grad():
        channel = net.eval()(torch.from_numpy(x)).argmax(1)[0].numpy()
    ids = np.asarray([c.id for c in CLASSES])[channel]
    if modality is Modality.CAMERA:
        assert (labels == ids).mean() >= 0.999
    else:
        valid = result.projection.valid
        expected = ids[result.projection.rows[valid], result.projection.cols[valid]]
        assert (result.labels[valid] == expected).mean() >= 0.999
    assert len(np.unique(ids)) > 1
