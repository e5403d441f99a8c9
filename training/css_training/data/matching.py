"""Stamp matching: pair samples of two streams (scans and their labels, frames and their label images)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ['match_stamps']


def match_stamps(query_ns: ArrayLike, reference_ns: ArrayLike, tolerance_ns: int = 0) -> np.ndarray:
    """Index into ``reference_ns`` of the stamp nearest to each query stamp, or -1 where none is close enough.

    Vectorised with one sort and one ``searchsorted``, so long recordings match in O((N + M) log M). Equal
    distances pick the earlier reference stamp. ``tolerance_ns`` 0 means exact matching, which is what
    recorded labels carry (the label image has its frame's stamp); a positive tolerance pairs streams stamped
    by different clocks.

    Args:
        query_ns: (N,) integer stamps, any order.
        reference_ns: (M,) integer stamps, any order.
        tolerance_ns: largest accepted distance.

    Returns:
        (N,) int64 indices into ``reference_ns``; -1 where no reference stamp lies within the tolerance.
    """
    query = np.asarray(query_ns, np.int64).reshape(-1)
    reference = np.asarray(reference_ns, np.int64).reshape(-1)
    if reference.size == 0:
        return np.full(query.shape, -1, np.int64)
    order = np.argsort(reference, kind='stable')
    ordered = reference[order]
    right = np.clip(np.searchsorted(ordered, query), 0, ordered.size - 1)
    left = np.clip(right - 1, 0, None)
    right_dist = np.abs(ordered[right] - query)
    left_dist = np.abs(ordered[left] - query)
    nearest = np.where(left_dist <= right_dist, left, right)
    dist = np.minimum(left_dist, right_dist)
    return np.where(dist <= tolerance_ns, order[nearest], -1)
