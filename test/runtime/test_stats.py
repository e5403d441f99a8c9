"""The node's rolling statistics: missed input frames counted from the stamps of the frames that arrived."""

from __future__ import annotations

import math

import pytest

from css_perception.runtime.stats import StampGaps

PERIOD_NS = 100_000_000  # 10 Hz


def gaps_over(frames: list[int], **kwargs) -> StampGaps:
    gaps = StampGaps(**kwargs)
    for frame in frames:
        gaps.add(10**12 + frame * PERIOD_NS)
    return gaps


def test_each_missing_frame_is_counted_once() -> None:
    gaps = gaps_over([0, 1, 2, 3, 4, 7, 8, 10, 11])  # 5, 6 and 9 never arrived
    assert gaps.missed == 3
    assert gaps.period_s == pytest.approx(0.1)
    assert gaps.recent_missed_fraction == pytest.approx(3 / 11)  # 8 gaps span 11 frames after the first


def test_losing_every_other_frame_does_not_double_the_period() -> None:
    frames = [0, 1, 2, 3, *range(5, 41, 2)]  # from frame 3 on, every other frame is lost: 18 missed
    gaps = gaps_over(frames)
    assert gaps.period_s == pytest.approx(0.1)
    assert gaps.missed == 18


def test_restarts_pauses_and_the_first_gaps_count_nothing() -> None:
    assert gaps_over([0, 2, 4, 6]).missed == 0  # three gaps: still warming up
    assert gaps_over([0, 1, 2, 3, 4, 0, 1, 2]).missed == 0  # the recording started again
    assert gaps_over([0, 1, 2, 3, 4, 54, 55]).missed == 0  # a 5 s pause, not 49 lost frames
    assert math.isnan(StampGaps().period_s)
    assert StampGaps().recent_missed_fraction == 0.0


def test_the_missed_share_is_over_the_recent_window_only() -> None:
    gaps = gaps_over([0, 1, 2, 3, 4, 7, *range(8, 30)], size=10)  # 5 and 6 missed, then 22 frames in a row
    assert gaps.missed == 2
    assert gaps.recent_missed_fraction == 0.0
