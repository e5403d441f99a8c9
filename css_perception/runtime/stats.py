"""Rolling latency percentiles and message rates for the node's diagnostics."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

__all__ = ['LatencyWindow', 'RateMeter']


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
