"""Range projection: hand-computed pixels, the nearest point wins, every point gets a label back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from css_perception.core.errors import ProjectionError
from css_perception.core.metadata import LidarInputSpec
from css_perception.core.projection import back_project, project_scan

SPEC = LidarInputSpec(height=8, width=16, fov_up_deg=10.0, fov_down_deg=-30.0, max_range=50.0)


def test_point_straight_ahead_lands_in_the_centre_column() -> None:
    # yaw 0 -> col W/2; pitch 0 -> row (1 - 30/40) * 8 = 2
    proj = project_scan(np.array([[10.0, 0.0, 0.0]]), np.array([0.5]), SPEC)
    assert (proj.rows[0], proj.cols[0]) == (2, 8)
    assert proj.occupied.sum() == 1
    expected = (np.array([10.0, 10.0, 0.0, 0.0, 0.5]) - np.array(SPEC.mean)) / np.array(SPEC.std)
    np.testing.assert_allclose(proj.image[:, 2, 8], expected, rtol=1e-6)
    assert np.count_nonzero(proj.image) == np.count_nonzero(expected)


def test_nearest_point_wins_and_hidden_point_gets_the_label_back() -> None:
    points = np.array([[20.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 7.0, 0.0]])
    proj = project_scan(points, None, SPEC)
    range_channel = proj.image[0] * SPEC.std[0] + SPEC.mean[0]
    assert range_channel[2, 8] == pytest.approx(5.0)
    pixel_labels = np.zeros((8, 16), np.uint16)
    pixel_labels[2, 8] = 40
    pixel_labels[proj.rows[2], proj.cols[2]] = 10
    np.testing.assert_array_equal(back_project(pixel_labels, proj), [40, 40, 10])


def test_out_of_fov_and_invalid_points() -> None:
    points = np.array(
        [
            [10.0, 0.0, 8.0],  # 38.7 deg up: above the FOV, clipped to row 0
            [10.0, 0.0, -10.0],  # 45 deg down: below, clipped to the last row
            [np.nan, 0.0, 0.0],
            [np.inf, 1.0, 0.0],
            [0.0, 0.0, 0.0],
            [100.0, 0.0, 0.0],  # beyond max_range
        ]
    )
    proj = project_scan(points, np.ones(6), SPEC)
    np.testing.assert_array_equal(proj.valid, [True, True, False, False, False, False])
    np.testing.assert_array_equal(proj.in_fov, [False] * 6)
    assert (proj.rows[0], proj.rows[1]) == (0, 7)
    assert not proj.occupied.any()
    labels = back_project(np.full((8, 16), 9, np.uint16), proj)
    np.testing.assert_array_equal(labels, [9, 9, 0, 0, 0, 0])


def test_bad_shapes_raise() -> None:
    with pytest.raises(ProjectionError, match=r'\(N, 3\)'):
        project_scan(np.zeros((4, 2)), None, SPEC)
    with pytest.raises(ProjectionError, match='3 intensities for 4 points'):
        project_scan(np.zeros((4, 3)), np.zeros(3), SPEC)


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(0, 300), st.just(3)),
        elements=st.floats(-100, 100, width=32) | st.sampled_from([np.nan, np.inf, 0.0]),
    )
)
@settings(max_examples=100, deadline=None)
def test_every_valid_point_has_a_pixel_in_range(points: np.ndarray) -> None:
    proj = project_scan(points, None, SPEC)
    assert proj.image.shape == (5, 8, 16)
    assert np.isfinite(proj.image).all()
    v = proj.valid
    assert ((proj.rows[v] >= 0) & (proj.rows[v] < 8) & (proj.cols[v] >= 0) & (proj.cols[v] < 16)).all()
    assert (proj.rows[~v] == -1).all()
    assert proj.occupied.sum() <= proj.in_fov.sum()


@given(arrays(np.float32, st.tuples(st.integers(1, 400), st.just(3)), elements=st.floats(-30, 30, width=32)))
@settings(max_examples=100, deadline=None)
def test_each_pixel_holds_its_nearest_point(points: np.ndarray) -> None:
    proj = project_scan(points, None, SPEC)
    rng = np.linalg.norm(points, axis=1)
    nearest = np.full(8 * 16, np.inf)
    m = proj.in_fov
    np.minimum.at(nearest, proj.rows[m] * 16 + proj.cols[m], rng[m])
    stored = (proj.image[0] * SPEC.std[0] + SPEC.mean[0]).ravel()
    occupied = proj.occupied.ravel()
    np.testing.assert_array_equal(occupied, np.isfinite(nearest))
    np.testing.assert_allclose(stored[occupied], nearest[occupied], rtol=1e-5, atol=1e-4)
    winner = proj.winner.ravel()[occupied]  # the index of the point that fills the pixel: its range is the nearest
    np.testing.assert_array_equal(rng[winner], nearest[occupied])
    assert len(back_project(np.zeros((8, 16)), proj)) == len(points)
