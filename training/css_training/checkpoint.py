"""Checkpoints: one dict of plain values, written atomically, read with ``weights_only=True``.

A checkpoint holds ``model`` (unwrapped state dict), ``optimizer``, ``lr_scheduler``, ``scaler``, ``epoch``
(epochs completed), ``step``, ``model_config`` and ``run_config`` (plain dicts), ``best_metric``, ``rng``
(python, numpy, torch and CUDA generator states) and the self-description export needs: ``modality``,
``classes`` (``{id, name, color}`` per output channel) and ``input_spec``. Only tensors, numbers, strings,
lists and dicts are stored, so loading never unpickles code.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from css_training.models import ModelConfig, ModelConfigError, SegmentationNet, build_model

__all__ = [
    'CheckpointError',
    'get_rng_state',
    'load_checkpoint',
    'read_checkpoint',
    'save_checkpoint',
    'set_rng_state',
]

_log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint cannot be read or lacks what the caller needs."""


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` to a temp file beside ``path``, fsync, then ``os.replace``: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with tmp.open('wb') as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True``.

    Raises:
        CheckpointError: missing, unreadable, or not a css_training checkpoint.
    """
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # else torch's error suggests weights_only=False
        msg = f'{path} is not a torch checkpoint, or is truncated (torch saves a zip archive)'
        raise CheckpointError(msg)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        msg = f'cannot read checkpoint {path}: {err}'
        raise CheckpointError(msg) from err
    if not isinstance(ckpt, dict) or 'model' not in ckpt or 'model_config' not in ckpt:
        msg = f'{path} is not a css_training checkpoint (needs "model" and "model_config")'
        raise CheckpointError(msg)
    return ckpt


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = 'cpu'
) -> tuple[SegmentationNet, dict[str, Any]]:
    """The net rebuilt from the stored config with its weights (in eval mode), and the checkpoint dict.

    Raises:
        CheckpointError: unreadable file, unknown architecture, or weights that do not fit the config.
    """
    ckpt = read_checkpoint(path, map_location)
    try:
        model = build_model(ModelConfig.from_dict(ckpt['model_config']))
        model.load_state_dict(ckpt['model'])
    except (ModelConfigError, RuntimeError, TypeError) as err:
        msg = f'{path}: cannot rebuild the model: {err}'
        raise CheckpointError(msg) from err
    model.to(map_location).eval()
    _log.info('loaded %s (%s/%s, epoch %s)', path, model.config.arch, model.config.preset, ckpt.get('epoch'))
    return model, ckpt


def get_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        'python': [version, list(internal), gauss],
        'numpy': {
            'key': torch.from_numpy(np_state['state']['key'].astype(np.int64)),
            'pos': int(np_state['state']['pos']),
            'has_gauss': int(np_state['has_gauss']),
            'gauss': float(np_state['gauss']),
        },
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured, so a resumed run draws the same numbers."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np_state = state['numpy']
    np.random.set_state(
        {
            'bit_generator': 'MT19937',
            'state': {'key': np_state['key'].numpy().astype(np.uint32), 'pos': np_state['pos']},
            'has_gauss': np_state['has_gauss'],
            'gauss': np_state['gauss'],
        }
    )
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
