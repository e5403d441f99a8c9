"""Segmentation pipelines without ROS: points -> (labels, scores), image -> (label image, scores).

A segmenter is built from one model and never changes, so the node swaps models by swapping segmenters, and a
frame is always processed wholly by one model (with its own projection and input size).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from css_perception.core.metadata import CameraInputSpec, LidarInputSpec, Modality
from css_perception.core.projection import RangeProjection, back_project, project_scan
from css_perception.runtime.model import SegmentationModel

__all__ = ['CameraResult', 'CameraSegmenter', 'LidarResult', 'LidarSegmenter', 'make_segmenter', 'unsure_as_unlabelled']


@dataclass(frozen=True)
class LidarResult:
    """Per-point ontology ids (uint16) and winning-class probabilities; ``timings`` in seconds per stage."""

    labels: np.ndarray
    scores: np.ndarray
    timings: dict[str, float]
    projection: RangeProjection


@dataclass(frozen=True)
class CameraResult:
    """Per-pixel ontology ids (uint16) and probabilities at the input frame's size; ``timings`` in seconds."""

    labels: np.ndarray
    scores: np.ndarray
    timings: dict[str, float]


def _argmax_scores(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) logits -> channel index and its softmax probability, (H, W) each."""
    top = logits.max(axis=0)
    scores = 1.0 / np.exp(logits - top).sum(axis=0)
    return logits.argmax(axis=0), scores.astype(np.float32)


def unsure_as_unlabelled(labels: np.ndarray, scores: np.ndarray, min_score: float) -> np.ndarray:
    """``labels`` with id 0 (unlabelled) wherever the winning class's probability is below ``min_score``.

    A model that learned a class from one recording is often unsure of it elsewhere; a robot can rather leave such
    points unlabelled (and collect them for the next step) than act on a guess.
    """
    if min_score <= 0.0:
        return labels
    return np.where(scores < min_score, np.zeros((), labels.dtype), labels)


class LidarSegmenter:
    def __init__(self, model: SegmentationModel) -> None:
        self.model = model
        self.metadata = model.metadata
        self.spec: LidarInputSpec = model.metadata.input_spec  # type: ignore[assignment]
        self._ids = np.asarray(self.metadata.class_ids, np.uint16)

    def segment(self, xyz: np.ndarray, intensity: np.ndarray | None = None) -> LidarResult:
        """Label every point; points with no valid range (NaN, inf, 0) get id 0 and score 0."""
        t0 = time.perf_counter()
        projection = project_scan(xyz, intensity, self.spec)
        t1 = time.perf_counter()
        logits = self.model.infer(projection.image[None])[0]
        t2 = time.perf_counter()
        channel, score = _argmax_scores(logits)
        labels = back_project(self._ids[channel], projection, fill=0)
        scores = back_project(score, projection, fill=0.0)
        t3 = time.perf_counter()
        timings = {'project': t1 - t0, 'infer': t2 - t1, 'back_project': t3 - t2}
        return LidarResult(labels, scores, timings, projection)


class CameraSegmenter:
    def __init__(self, model: SegmentationModel) -> None:
        self.model = model
        self.metadata = model.metadata
        self.spec: CameraInputSpec = model.metadata.input_spec  # type: ignore[assignment]
        self._ids = np.asarray(self.metadata.class_ids, np.uint16)
        self._mean = np.asarray(self.spec.mean, np.float32)
        self._std = np.asarray(self.spec.std, np.float32)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 model input, resized bilinearly and normalised."""
        x = resize_bilinear(rgb.astype(np.float32) / 255.0, self.spec.height, self.spec.width)
        return ((x - self._mean) / self._std).transpose(2, 0, 1)[None]

    def segment(self, rgb: np.ndarray) -> CameraResult:
        t0 = time.perf_counter()
        x = self.preprocess(rgb)
        t1 = time.perf_counter()
        logits = self.model.infer(x)[0]
        t2 = time.perf_counter()
        channel, score = _argmax_scores(logits)
        rows, cols = _nearest_index(logits.shape[1], rgb.shape[0]), _nearest_index(logits.shape[2], rgb.shape[1])
        labels = self._ids[channel[rows[:, None], cols[None, :]]]
        scores = score[rows[:, None], cols[None, :]]
        t3 = time.perf_counter()
        return CameraResult(labels, scores, {'preprocess': t1 - t0, 'infer': t2 - t1, 'postprocess': t3 - t2})


def make_segmenter(model: SegmentationModel) -> LidarSegmenter | CameraSegmenter:
    return LidarSegmenter(model) if model.metadata.modality is Modality.LIDAR else CameraSegmenter(model)


def _nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` output positions, sampling at pixel centres."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) float -> (height, width, C), bilinear with pixel-centre alignment (as torch align_corners=False)."""
    src_h, src_w = img.shape[:2]
    if (src_h, src_w) == (height, width):
        return img

    def axis(dst: int, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    r0, r1, fr = axis(height, src_h)
    c0, c1, fc = axis(width, src_w)
    top = img[r0][:, c0] * (1 - fc)[None, :, None] + img[r0][:, c1] * fc[None, :, None]
    bottom = img[r1][:, c0] * (1 - fc)[None, :, None] + img[r1][:, c1] * fc[None, :, None]
    return top * (1 - fr)[:, None, None] + bottom * fr[:, None, None]
