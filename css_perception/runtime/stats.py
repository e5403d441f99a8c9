"""Rolling latency percentiles, message rates and missed input frames for the node's diagnostics."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

__all__ = ['LatencyWindow', 'RateMeter', 'StampGaps']


class LatencyWindow:
    """The last ``size`` latencies (seconds); percentiles over that window."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(float(seconds))

    @property
    def count(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile in seconds; NaN while empty."""
        with self._lock:
            values = np.fromiter(self._values, float, len(self._values))
        return float(np.percentile(values, q)) if values.size else float('nan')

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)


class RateMeter:
    """Events per second over the last ``window_s`` seconds of a monotonic clock."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._stamps.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._stamps and self._stamps[0] < now - self.window_s:
                self._stamps.popleft()
            n = len(self._stamps)
            if n < 2:
                return 0.0
            span = max(now - self._stamps[0], self._stamps[-1] - self._stamps[0])
            return (n - 1) / span if span > 0 else 0.0


class StampGaps:
    """Input frames that never reached the node, counted from the gaps between the stamps of those that did.

    A frame lost in transport, or overwritten in the keep-last-1 reader queue while the node was busy, leaves a gap
    of k sensor periods between two received stamps: k - 1 frames missed. The period is the 10th percentile of the
    last ``size`` gaps, which losses do not stretch while one gap in ten is a single period (a node that gets every
    other frame for ``size`` frames reads a doubled period and stops counting). Nothing is counted before
    ``warmup`` gaps, for a stamp that goes back (a recording restarted), or for a gap of more than ``pause``
    periods (a sensor paused).
    """

    def __init__(self, size: int = 100, warmup: int = 3, pause: float = 10.0) -> None:
        self._gaps: deque[int] = deque(maxlen=size)
        self._missed_per_gap: deque[int] = deque(maxlen=size)
        self._last: int | None = None
        self._warmup, self._pause = warmup, pause
        self.missed = 0
        self._lock = threading.Lock()

    def add(self, stamp_ns: int) -> None:
        with self._lock:
            last, self._last = self._last, stamp_ns
            if last is None or stamp_ns <= last:
                return
            gap = stamp_ns - last
            self._gaps.append(gap)
            missed = 0
            if len(self._gaps) > self._warmup:
                periods = gap / self._period_ns()
                if 1.5 <= periods <= self._pause:
                    missed = round(periods) - 1
            self._missed_per_gap.append(missed)
            self.missed += missed

    def _period_ns(self) -> float:
        return float(np.percentile(np.fromiter(self._gaps, float, len(self._gaps)), 10))

    @property
    def period_s(self) -> float:
        """The sensor period the gaps show, in seconds; NaN before two stamps."""
        with self._lock:
            return self._period_ns() * 1e-9 if self._gaps else float('nan')

    @property
    def recent_missed_fraction(self) -> float:
        """Of the frames the last ``size`` gaps span, the share that never arrived; 0 before any gap."""
        with self._lock:
            missed = sum(self._missed_per_gap)
            return missed / (missed + len(self._missed_per_gap)) if self._missed_per_gap else 0.0
