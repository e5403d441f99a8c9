"""Model hot swap, off the hot path: watch the registry, validate a candidate, hand it over or refuse it.

The node keeps serving the old model while a candidate is loaded here in a background thread; an accepted
candidate comes back as a ready, warmed-up segmenter, so the node's swap is one reference change between two
frames. A refused version is remembered and not retried until ``CURRENT`` changes again (or a forced reload).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from css_perception.core.errors import CoreError
from css_perception.core.metadata import Modality
from css_perception.runtime.errors import ModelValidationError, RuntimeModelError
from css_perception.runtime.model import DEFAULT_PROVIDERS, SegmentationModel
from css_perception.runtime.registry import Registry, RegistryEntry
from css_perception.runtime.segmenter import CameraSegmenter, LidarSegmenter, make_segmenter

__all__ = ['Canary', 'RegistryWatcher', 'SwapDecision', 'validate_candidate']

_log = logging.getLogger(__name__)

Segmenter = LidarSegmenter | CameraSegmenter
Canary = tuple[np.ndarray, np.ndarray | None] | np.ndarray | None
"""The last frame received: (xyz, intensity) for LiDAR, an RGB array for camera; None before the first frame."""


class SwapDecision(NamedTuple):
    """What became of one candidate. ``segmenter`` is set only when accepted."""

    modality: Modality
    version: str
    accepted: bool
    reason: str
    segmenter: Segmenter | None = None


def validate_candidate(
    registry: Registry,
    entry: RegistryEntry,
    modality: Modality,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    canary: Canary = None,
    tensorrt_cache: Path | None = None,
) -> Segmenter:
    """Load ``entry`` and run every check a model must pass before it may serve; return its segmenter.

    Checks: sha256 against the registry entry, metadata complete (loader), graph shapes agree with the metadata
    (loader), finite warm-up output (loader), the right modality, the file's version equals the metadata's, and a
    finite result on the canary (the last real frame), since a model can be finite on a synthetic input only.
    Raises a ``RuntimeModelError`` subclass (or a core ``ValueError``) naming the failed check.
    """
    registry.verify(entry)
    model = SegmentationModel.load(entry.path, providers=providers, warmup=True, tensorrt_cache=tensorrt_cache)
    if model.metadata.modality is not modality:
        msg = f'{entry.path.name} is a {model.metadata.modality.value} model, expected {modality.value}'
        raise ModelValidationError(msg)
    if model.metadata.version != entry.version:
        msg = f'{entry.path.name} says it is version {model.metadata.version!r}, the registry says {entry.version!r}'
        raise ModelValidationError(msg)
    segmenter = make_segmenter(model)
    if canary is not None:
        result = segmenter.segment(*canary) if isinstance(canary, tuple) else segmenter.segment(canary)
        if not np.all(np.isfinite(result.scores)):
            msg = f'{entry.path.name} gives non-finite scores on the last received frame'
            raise ModelValidationError(msg)
    return segmenter


class RegistryWatcher:
    """Watches one modality's ``CURRENT`` and reports a ``SwapDecision`` for every new version it sees.

    A file-system watch (watchdog, where installed) wakes the loop at once; otherwise ``CURRENT`` is polled
    every ``poll_s`` seconds. ``on_decision`` runs in the watcher's thread: it must only swap a reference.
    """

    def __init__(
        self,
        registry: Registry,
        modality: Modality,
        on_decision: Callable[[SwapDecision], None],
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        poll_s: float = 1.0,
        canary: Callable[[], Canary] = lambda: None,
        tensorrt_cache: Path | None = None,
    ) -> None:
        self.registry = registry
        self.modality = modality
        self.poll_s = poll_s
        self._on_decision = on_decision
        self._providers = tuple(providers)
        self._canary = canary
        self._tensorrt_cache = tensorrt_cache
        self._serving: str | None = None
        self._refused: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer = None

    @property
    def serving(self) -> str | None:
        return self._serving

    @property
    def refused(self) -> str | None:
        return self._refused

    def mark_serving(self, version: str | None) -> None:
        """Tell the watcher which version the node serves (after its initial load or a swap)."""
        self._serving = version

    def check(self, *, force: bool = False) -> SwapDecision | None:
        """Look at ``CURRENT`` once; validate it when it names a version not served and not already refused.

        ``force`` retries a refused version and reloads even the served one (the reload service).
        """
        with self._lock:
            try:
                entry = self.registry.current(self.modality)
            except (RuntimeModelError, OSError) as err:
                return self._decide(SwapDecision(self.modality, '?', False, f'registry unreadable: {err}'))
            if entry is None:
                return None
            if not force and entry.version in (self._serving, self._refused):
                return None
            try:
                segmenter = validate_candidate(
                    self.registry, entry, self.modality, self._providers, self._canary(), self._tensorrt_cache
                )
            except (RuntimeModelError, CoreError, OSError) as err:
                self._refused = entry.version
                return self._decide(SwapDecision(self.modality, entry.version, False, str(err)))
            self._serving, self._refused = entry.version, None
            return self._decide(SwapDecision(self.modality, entry.version, True, 'validated', segmenter))

    def _decide(self, decision: SwapDecision) -> SwapDecision:
        log = _log.info if decision.accepted else _log.warning
        log(
            '%s model %s %s: %s',
            decision.modality.value,
            decision.version,
            'accepted' if decision.accepted else 'refused',
            decision.reason,
        )
        self._on_decision(decision)
        return decision

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._observer = _start_fs_watch(self.registry.root / self.modality.value, self.wake)
        self._thread = threading.Thread(target=self._run, name=f'registry-watch-{self.modality.value}', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.poll_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.check()


def _start_fs_watch(directory, callback: Callable[[], None]):
    """Start a watchdog observer on ``directory`` calling ``callback`` on each change; None where unavailable.

    Only creations, writes, renames and deletions count. Opening a file is an event too (watchdog >= 2.3, and
    closing it unwritten since 5.0); every check reads ``CURRENT``, so answering those woke the next check at
    once, for ever: an idle node kept 1.2 cores busy (two modalities, measured before this filter). A publish
    renames a written temp file onto its place, which is a move.
    """
    try:
        from watchdog.events import (
            EVENT_TYPE_CREATED,
            EVENT_TYPE_DELETED,
            EVENT_TYPE_MODIFIED,
            EVENT_TYPE_MOVED,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer
    except ImportError:
        return None
    if not directory.is_dir():
        return None
    changes = {EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED}

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in changes:
                callback()

    observer = Observer()
    observer.schedule(_Handler(), str(directory), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
