"""Pose maths, the tf tree and stamp matching against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from css_training.data.errors import PoseError
from css_training.data.matching import match_stamps
from css_training.data.poses import (
    TransformBuffer,
    interpolate_pose,
    interpolate_poses,
    invert_transform,
    make_transform,
    matrix_to_quat,
    quat_to_matrix,
    slerp,
)

S = np.sqrt(0.5)
YAW_90 = np.array([0.0, 0.0, S, S])  # xyzw
IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def yaw(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def pose(deg: float, xyz: tuple[float, float, float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = yaw(deg)
    out[:3, 3] = xyz
    return out


def test_quat_to_matrix_of_a_90_degree_yaw() -> None:
    np.testing.assert_allclose(quat_to_matrix(YAW_90), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)


def test_quat_to_matrix_normalises_and_rejects_zero() -> None:
    np.testing.assert_allclose(quat_to_matrix(2 * YAW_90), yaw(90), atol=1e-15)
    with pytest.raises(PoseError, match='zero length'):
        quat_to_matrix(np.zeros(4))


def test_matrix_to_quat_inverts_quat_to_matrix_including_half_turns() -> None:
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(500, 4))
    quats = np.concatenate([quats, np.eye(4)])  # the four half-turn and identity cases
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    back = matrix_to_quat(quat_to_matrix(quats))
    np.testing.assert_allclose(np.abs(np.sum(back * quats, axis=1)), 1.0, atol=1e-12)  # q and -q are one turn
    assert np.all(back[:, 3] >= 0)


def test_slerp_halfway_from_identity_to_90_degrees_is_45_degrees() -> None:
    half = slerp(IDENTITY, YAW_90, 0.5)
    np.testing.assert_allclose(half, [0, 0, np.sin(np.pi / 8), np.cos(np.pi / 8)], atol=1e-15)
    np.testing.assert_allclose(slerp(IDENTITY, YAW_90, [0.0, 1.0]), [IDENTITY, YAW_90], atol=1e-15)


def test_slerp_takes_the_shorter_arc_and_handles_equal_rotations() -> None:
    np.testing.assert_allclose(quat_to_matrix(slerp(IDENTITY, -YAW_90, 0.5)), yaw(45), atol=1e-12)
    np.testing.assert_allclose(slerp(YAW_90, YAW_90, 0.3), YAW_90, atol=1e-15)


def test_interpolate_pose_halfway_between_two_poses() -> None:
    stamps = np.array([0, 10])
    poses = np.stack([pose(0, (0, 0, 0)), pose(90, (2, 4, 6))])
    np.testing.assert_allclose(interpolate_pose(stamps, poses, 5), pose(45, (1, 2, 3)), atol=1e-12)


def test_interpolate_poses_is_exact_at_the_samples_and_vectorised() -> None:
    stamps = np.array([0, 10, 30])
    poses = np.stack([pose(0, (0, 0, 0)), pose(90, (2, 4, 6)), pose(180, (2, 4, 10))])
    out = interpolate_poses(stamps, poses, np.array([0, 10, 30, 20]))
    np.testing.assert_allclose(out[:3], poses, atol=1e-12)
    np.testing.assert_allclose(out[3], pose(135, (2, 4, 8)), atol=1e-12)


def test_interpolate_pose_refuses_times_outside_the_range_and_unsorted_stamps() -> None:
    poses = np.stack([np.eye(4), np.eye(4)])
    with pytest.raises(PoseError, match=r'time 11 ns is outside the recorded range \[0, 10\] ns'):
        interpolate_pose(np.array([0, 10]), poses, 11)
    with pytest.raises(PoseError, match='must increase strictly'):
        interpolate_pose(np.array([10, 0]), poses, 5)


def test_a_single_pose_is_valid_only_at_its_stamp() -> None:
    only = pose(30, (1, 2, 3))[None]
    np.testing.assert_allclose(interpolate_pose(np.array([7]), only, 7), only[0], atol=1e-12)
    with pytest.raises(PoseError, match='outside'):
        interpolate_pose(np.array([7]), only, 8)


def test_invert_transform() -> None:
    t = pose(70, (1, -2, 3))
    np.testing.assert_allclose(invert_transform(t) @ t, np.eye(4), atol=1e-12)


def robot_tree() -> TransformBuffer:
    """odom -> base_link (yaw 0 at t=0, yaw 90 at t=10, moving (2, 4, 6)), base_link -> velodyne static."""
    tf = TransformBuffer()
    tf.add('odom', 'base_link', 0, (0.0, 0.0, 0.0), tuple(IDENTITY))
    tf.add('odom', 'base_link', 10, (2.0, 4.0, 6.0), tuple(YAW_90))
    tf.add('base_link', 'velodyne', 0, (1.0, 0.0, 0.5), tuple(IDENTITY), static=True)
    tf.add('base_link', 'camera', 0, (0.0, 1.0, 0.0), tuple(YAW_90), static=True)
    return tf


def test_tf_chain_composes_the_dynamic_and_the_static_edge() -> None:
    tf = robot_tree()
    expected = pose(45, (1, 2, 3)) @ pose(0, (1, 0, 0.5))
    np.testing.assert_allclose(tf.lookup('odom', 'velodyne', 5), expected, atol=1e-12)
    # 1 m ahead of the sensor at t=10; the sensor is 1 m ahead of base_link, which faces +y at (2, 4, 6).
    point = tf.lookup('odom', 'velodyne', 10) @ np.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(point, [2.0, 6.0, 6.5, 1.0], atol=1e-12)


def test_tf_lookup_in_the_other_direction_and_between_siblings() -> None:
    tf = robot_tree()
    np.testing.assert_allclose(
        tf.lookup('velodyne', 'odom', 5), invert_transform(tf.lookup('odom', 'velodyne', 5)), atol=1e-12
    )
    camera_in_velodyne = tf.lookup('velodyne', 'camera', 3)
    np.testing.assert_allclose(camera_in_velodyne, pose(90, (-1, 1, -0.5)), atol=1e-12)
    np.testing.assert_allclose(tf.lookup('velodyne', 'velodyne', 3), np.eye(4))


def test_tf_lookup_many_matches_single_lookups() -> None:
    tf = robot_tree()
    times = np.array([0, 2, 5, 10])
    many = tf.lookup_many('odom', 'velodyne', times)
    np.testing.assert_allclose(many, [tf.lookup('odom', 'velodyne', t) for t in times], atol=1e-12)


def test_tf_time_range_and_errors() -> None:
    tf = robot_tree()
    assert tf.time_range('odom', 'velodyne') == (0, 10)
    assert tf.time_range('base_link', 'velodyne') is None
    with pytest.raises(PoseError, match=r'base_link: time 11 ns is outside'):
        tf.lookup('odom', 'velodyne', 11)
    with pytest.raises(PoseError, match=r"no transform chain from 'map' to 'odom'.*'base_link', 'camera'"):
        tf.lookup('odom', 'map', 0)
    with pytest.raises(PoseError, match="'velodyne' has two parents"):
        tf.add('camera', 'velodyne', 0, (0.0, 0.0, 0.0), tuple(IDENTITY))


def test_tf_keeps_the_last_sample_of_a_repeated_stamp_and_strips_slashes() -> None:
    tf = TransformBuffer()
    tf.add('/odom', '/base_link', 0, (9.0, 9.0, 9.0), tuple(IDENTITY))
    tf.add('odom', 'base_link', 0, (1.0, 0.0, 0.0), tuple(IDENTITY))
    tf.add('odom', 'base_link', 4, (3.0, 0.0, 0.0), tuple(IDENTITY))
    np.testing.assert_allclose(tf.lookup('odom', 'base_link', 2)[:3, 3], [2.0, 0.0, 0.0])
    assert tf.frames == {'odom', 'base_link'}


def test_make_transform_broadcasts() -> None:
    out = make_transform(np.zeros((3, 3)), np.tile(YAW_90, (3, 1)))
    assert out.shape == (3, 4, 4)
    np.testing.assert_allclose(out[2, :3, :3], yaw(90), atol=1e-15)


def test_match_stamps_exact_and_within_a_tolerance() -> None:
    reference = np.array([300, 100, 200])  # unsorted on purpose
    np.testing.assert_array_equal(match_stamps([100, 200, 300, 250], reference), [1, 2, 0, -1])
    np.testing.assert_array_equal(match_stamps([105, 260, 500], reference, tolerance_ns=40), [1, 0, -1])


def test_match_stamps_ties_pick_the_earlier_stamp_and_empty_reference() -> None:
    np.testing.assert_array_equal(match_stamps([150], [100, 200], tolerance_ns=50), [0])
    np.testing.assert_array_equal(match_stamps([1, 2], np.array([], np.int64), tolerance_ns=10), [-1, -1])
    np.testing.assert_array_equal(match_stamps([0, 10**18], [10**18]), [-1, 0])
