"""A self-describing ONNX segmentation model in ONNX Runtime: load, check against its metadata, warm up.

Only onnxruntime is used (no ``onnx`` package: robots install ``python3-onnxruntime-pip`` and nothing else):
metadata comes from the session's model metadata, shapes from the session's inputs and outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from css_perception.core.errors import MetadataError
from css_perception.core.metadata import Modality, ModelMetadata
from css_perception.runtime.errors import ModelLoadError, ModelValidationError
from css_perception.runtime.registry import sha256_of

__all__ = ['DEFAULT_PROVIDERS', 'SegmentationModel', 'choose_providers', 'session_providers', 'tensorrt_options']

_log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider')
_CPU = 'CPUExecutionProvider'
_TENSORRT = 'TensorrtExecutionProvider'


def tensorrt_options(cache_root: Path, model_sha256: str) -> dict[str, str]:
    """TensorRT's engine cache, in a directory named after the model's content.

    Without a cache TensorRT builds its engine at every session start, which takes minutes on an embedded GPU: the
    node would wait that long at every start and for every hot swap. ONNX Runtime's documentation asks to delete
    cached engines whenever the model changes; one directory per model content makes a retrained model build its
    own engine instead of loading a stale one.
    """
    return {'trt_engine_cache_enable': 'True', 'trt_engine_cache_path': str(cache_root / model_sha256[:16])}


def session_providers(
    path: Path, providers: Sequence[str], tensorrt_cache: Path | None
) -> list[str | tuple[str, dict[str, str]]]:
    """``providers`` as ONNX Runtime takes them, TensorRT with its engine cache (:func:`tensorrt_options`) when
    ``tensorrt_cache`` is set and its directory can be made."""
    if tensorrt_cache is None or _TENSORRT not in providers:
        return list(providers)
    options = tensorrt_options(tensorrt_cache.expanduser(), sha256_of(path))
    try:
        Path(options['trt_engine_cache_path']).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _log.warning('no TensorRT engine cache for %s (%s): its engine is built at every load', path.name, err)
        return list(providers)
    return [(p, options) if p == _TENSORRT else p for p in providers]


def choose_providers(preferred: Sequence[str]) -> list[str]:
    """The preferred providers this onnxruntime build has, in order, always ending with CPU."""
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available and p != _CPU]
    missing = [p for p in preferred if p not in available]
    if missing:
        _log.info('execution providers not available in this onnxruntime build: %s', ', '.join(missing))
    return [*chosen, _CPU]


class SegmentationModel:
    """An ONNX Runtime session plus the metadata it carries; immutable once loaded."""

    def __init__(self, path: Path, session: ort.InferenceSession, metadata: ModelMetadata) -> None:
        self.path = path
        self.session = session
        self.metadata = metadata
        self.provider = session.get_providers()[0]
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name

    @classmethod
    def load(
        cls,
        path: str | Path,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        *,
        warmup: bool = True,
        tensorrt_cache: Path | None = None,
    ) -> SegmentationModel:
        """Load ``path`` on the first provider that works, check it against its metadata, and warm it up.

        ``tensorrt_cache``: where TensorRT keeps its engines (:func:`tensorrt_options`); None builds them anew.

        Raises:
            ModelLoadError: the file is missing or not a readable ONNX model.
            ModelValidationError: metadata missing or malformed, shapes that contradict it, non-finite warm-up.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f'model file {path} does not exist')
        session = _session(path, session_providers(path, choose_providers(providers), tensorrt_cache))
        try:
            metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
        except MetadataError as err:
            raise ModelValidationError(f'{path.name}: {err}') from err
        model = cls(path, session, metadata)
        model.check_graph()
        _log.info('loaded %s model %s (%s) on %s', metadata.modality.value, metadata.version, path, model.provider)
        if warmup:
            logits = model.infer(model.representative_input())
            if not np.all(np.isfinite(logits)):
                raise ModelValidationError(f'{path.name} gives non-finite outputs on a representative input')
        return model

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(1, C, H, W) as the metadata prescribes."""
        spec = self.metadata.input_spec
        channels = len(spec.channels) if self.metadata.modality is Modality.LIDAR else 3
        return (1, channels, spec.height, spec.width)

    def check_graph(self) -> None:
        """The graph's input and output shapes must agree with the metadata (where the graph fixes them)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        name = self.path.name
        if len(inputs) != 1 or not outputs:
            raise ModelValidationError(f'{name} must have one input and a logits output, has {len(inputs)} inputs')
        expected = self.input_shape
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if len(in_shape) != 4 or len(out_shape) != 4:
            raise ModelValidationError(f'{name}: input {in_shape} / output {out_shape} are not 4-D (N, C, H, W)')
        for axis, what in ((1, 'channels'), (2, 'height'), (3, 'width')):
            if isinstance(in_shape[axis], int) and in_shape[axis] != expected[axis]:
                msg = f'{name}: input {what} {in_shape[axis]} != {expected[axis]} from the metadata input_spec'
                raise ModelValidationError(msg)
        if isinstance(out_shape[1], int) and out_shape[1] != self.metadata.num_classes:
            msg = f'{name}: {out_shape[1]} output channels but {self.metadata.num_classes} classes in the metadata'
            raise ModelValidationError(msg)
        logits = self.infer(np.zeros(expected, np.float32))
        if logits.shape != (1, self.metadata.num_classes, *expected[2:]):
            msg = (
                f'{name}: output shape {logits.shape} != (1, {self.metadata.num_classes}, {expected[2]}, '
                f'{expected[3]}) expected from the metadata'
            )
            raise ModelValidationError(msg)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """(1, C, H, W) float32 input -> (1, K, H, W) float32 logits."""
        return np.asarray(self.session.run([self._output], {self._input: x.astype(np.float32, copy=False)})[0])

    def representative_input(self) -> np.ndarray:
        """A fixed, plausible input (standard-normal, seeded) for warm-up and validation."""
        return np.random.default_rng(0).standard_normal(self.input_shape).astype(np.float32)


def _session(path: Path, providers: list[str | tuple[str, dict[str, str]]]) -> ort.InferenceSession:
    """A session on ``providers``; a GPU provider that fails to initialise falls back to CPU.

    Its intra-op threads sleep between runs instead of spinning: the node's two sessions share the cores with the
    ROS executor and with other processes, and spinning workers of one session held off everything else
    (docs/lab-notebook.md, main job, nineteenth session: LiDAR latency p95 27-59 ms against 42-268 ms on 2 cores).
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:
        if providers != [_CPU]:
            _log.warning('%s failed on %s (%s); falling back to CPU', path.name, providers[0], err)
            try:
                return ort.InferenceSession(str(path), options, providers=[_CPU])
            except Exception as err_cpu:
                err = err_cpu
        raise ModelLoadError(f'{path} is not a loadable ONNX model: {err}') from err
