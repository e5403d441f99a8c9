"""Poses from recorded transforms: quaternion maths, interpolation and a small tf tree.

Quaternions are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``; transforms are (4, 4) float64 matrices
that map points of the child (source) frame into the parent (target) frame, as tf2's
``lookup_transform(target, source)`` does. Everything is vectorised over leading axes, so a whole recording
is posed in one call.

Times outside the recorded range raise :class:`PoseError` rather than clamp: a clamped pose is silently wrong
by the distance travelled, and multi-scan fusion would smear that error into its teacher labels. Readers ask
:meth:`TransformBuffer.time_range` first and leave the scans outside without a pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from css_training.data.errors import PoseError

__all__ = [
    'TransformBuffer',
    'interpolate_pose',
    'interpolate_poses',
    'invert_transform',
    'make_transform',
    'matrix_to_quat',
    'quat_to_matrix',
    'slerp',
    'stamp_to_ns',
]

_EPS = 1e-12


def quat_to_matrix(quat: ArrayLike) -> np.ndarray:
    """(..., 3, 3) rotations from (..., 4) ``xyzw`` quaternions, normalised first (recorded ones drift)."""
    q = np.asarray(quat, np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < _EPS):
        msg = 'a quaternion has zero length; it encodes no rotation'
        raise PoseError(msg)
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(rot: ArrayLike) -> np.ndarray:
    """(..., 4) unit ``xyzw`` quaternions with w >= 0 from (..., 3, 3) rotation matrices.

    Each element uses the branch with the largest diagonal term (Shepperd's method), which keeps the square
    root away from zero for every rotation, 180 degree turns included.
    """
    m = np.asarray(rot, np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    diag = np.stack([m00 + m11 + m22, m00, m11, m22], -1)
    branch = np.argmax(diag, -1)
    largest = np.take_along_axis(diag, branch[..., None], -1)[..., 0]
    big = np.sqrt(np.maximum(1.0 + 2.0 * largest - diag[..., 0], _EPS))  # 2 * the largest component
    s = 0.5 / big
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    candidates = np.stack(
        [
            np.stack([d21 * s, d02 * s, d10 * s, 0.5 * big], -1),
            np.stack([0.5 * big, s01 * s, s02 * s, d21 * s], -1),
            np.stack([s01 * s, 0.5 * big, s12 * s, d02 * s], -1),
            np.stack([s02 * s, s12 * s, 0.5 * big, d10 * s], -1),
        ],
        -2,
    )
    quat = np.take_along_axis(candidates, branch[..., None, None], -2)[..., 0, :]
    quat = np.where(quat[..., 3:] < 0, -quat, quat)
    return quat / np.linalg.norm(quat, axis=-1, keepdims=True)


def slerp(q0: ArrayLike, q1: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Spherical linear interpolation of ``xyzw`` quaternions along the shorter arc; broadcasts over ``t``.

    Nearly equal rotations fall back to a normalised linear blend, where ``sin(angle)`` would divide by ~0.
    """
    a = np.asarray(q0, np.float64)
    b = np.asarray(q1, np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    frac = np.asarray(t, np.float64)[..., None]
    dot = np.sum(a * b, -1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    angle = np.arccos(dot)
    sin = np.sin(angle)
    close = sin < 1e-9
    safe = np.where(close, 1.0, sin)
    wa = np.where(close, 1.0 - frac, np.sin((1.0 - frac) * angle) / safe)
    wb = np.where(close, frac, np.sin(frac * angle) / safe)
    out = wa * a + wb * b
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def make_transform(translation: ArrayLike, quat: ArrayLike) -> np.ndarray:
    """(..., 4, 4) transforms from (..., 3) translations and (..., 4) ``xyzw`` rotations."""
    t = np.asarray(translation, np.float64)
    rot = quat_to_matrix(quat)
    out = np.zeros((*rot.shape[:-2], 4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def invert_transform(transform: ArrayLike) -> np.ndarray:
    """Inverse of rigid (..., 4, 4) transforms, using the transposed rotation instead of a general inverse."""
    m = np.asarray(transform, np.float64)
    rot_t = np.swapaxes(m[..., :3, :3], -1, -2)
    out = np.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum('...ij,...j->...i', rot_t, m[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def _interpolate(
    stamps_ns: ArrayLike, translations: np.ndarray, quats: np.ndarray, t_ns: ArrayLike, what: str
) -> np.ndarray:
    """(K, 4, 4) transforms at ``t_ns`` from samples sorted by strictly increasing stamp."""
    stamps = np.asarray(stamps_ns, np.int64)
    times = np.asarray(t_ns, np.int64).reshape(-1)
    if stamps.size == 0:
        msg = f'{what}: no samples to interpolate'
        raise PoseError(msg)
    if np.any(np.diff(stamps) <= 0):
        msg = f'{what}: sample stamps must increase strictly'
        raise PoseError(msg)
    outside = (times < stamps[0]) | (times > stamps[-1])
    if np.any(outside):
        msg = (
            f'{what}: time {int(times[outside][0])} ns is outside the recorded range '
            f'[{int(stamps[0])}, {int(stamps[-1])}] ns ({int(outside.sum())} of {times.size} requested)'
        )
        raise PoseError(msg)
    if stamps.size == 1:
        return np.broadcast_to(make_transform(translations[0], quats[0]), (times.size, 4, 4)).copy()
    lo = np.clip(np.searchsorted(stamps, times, side='right') - 1, 0, stamps.size - 2)
    alpha = (times - stamps[lo]) / (stamps[lo + 1] - stamps[lo]).astype(np.float64)
    trans = translations[lo] + alpha[:, None] * (translations[lo + 1] - translations[lo])
    return make_transform(trans, slerp(quats[lo], quats[lo + 1], alpha))


def interpolate_poses(stamps_ns: ArrayLike, poses: ArrayLike, t_ns: ArrayLike) -> np.ndarray:
    """(K, 4, 4) poses at the (K,) times ``t_ns``: linear translation, slerp rotation between neighbours.

    Args:
        stamps_ns: (M,) strictly increasing sample stamps.
        poses: (M, 4, 4) rigid transforms at those stamps.
        t_ns: (K,) query times, each within ``[stamps_ns[0], stamps_ns[-1]]``.

    Raises:
        PoseError: stamps not increasing, or a query time outside the recorded range.
    """
    matrices = np.asarray(poses, np.float64)
    return _interpolate(stamps_ns, matrices[:, :3, 3], matrix_to_quat(matrices[:, :3, :3]), t_ns, 'pose')


def interpolate_pose(stamps_ns: ArrayLike, poses: ArrayLike, t_ns: int) -> np.ndarray:
    """(4, 4) pose at one time; see :func:`interpolate_poses`."""
    return interpolate_poses(stamps_ns, poses, np.array([t_ns]))[0]


@dataclass
class _Track:
    """The recorded samples of one dynamic edge; sorted and deduplicated lazily on first use."""

    parent: str
    stamps: list[int] = field(default_factory=list)
    translations: list[tuple[float, float, float]] = field(default_factory=list)
    quats: list[tuple[float, float, float, float]] = field(default_factory=list)
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def sorted_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.arrays is None:
            stamps = np.asarray(self.stamps, np.int64)
            # Last sample wins on a repeated stamp: reverse, keep first occurrences, restore time order.
            _, first = np.unique(stamps[::-1], return_index=True)
            keep = stamps.size - 1 - first
            self.arrays = (stamps[keep], np.asarray(self.translations)[keep], np.asarray(self.quats)[keep])
        return self.arrays


def _frame(name: str) -> str:
    """tf2 strips ROS 1's leading slash; do the same so ``/odom`` and ``odom`` are one frame."""
    return name.lstrip('/')


class TransformBuffer:
    """A tf tree read back from a recording: static edges plus dynamic edges interpolated at lookup time.

    Each frame has one parent, as in tf2. Dynamic edges come from ``/tf`` or odometry, static ones from
    ``/tf_static``. Unlike tf2 there is no cache horizon: the whole recording is in memory, which for poses is
    a few MB per hour.
    """

    def __init__(self) -> None:
        self._static: dict[str, tuple[str, np.ndarray]] = {}
        self._dynamic: dict[str, _Track] = {}

    @property
    def frames(self) -> set[str]:
        """Every frame named by an edge."""
        edges = [(c, p) for c, (p, _) in self._static.items()]
        edges += [(c, track.parent) for c, track in self._dynamic.items()]
        return {f for edge in edges for f in edge}

    def add(
        self,
        parent: str,
        child: str,
        stamp_ns: int,
        translation: tuple[float, float, float],
        quat: tuple[float, float, float, float],
        *,
        static: bool = False,
    ) -> None:
        """Record the transform of ``child`` in ``parent`` at ``stamp_ns`` (ignored for static edges).

        Raises:
            PoseError: ``child`` already has another parent (not a tree).
        """
        parent, child = _frame(parent), _frame(child)
        known = self._parent(child)
        if known is not None and known != parent:
            msg = f'frame {child!r} has two parents, {known!r} and {parent!r}; tf needs a tree'
            raise PoseError(msg)
        if static:
            self._static[child] = (parent, make_transform(translation, quat))
            return
        track = self._dynamic.setdefault(child, _Track(parent))
        track.stamps.append(int(stamp_ns))
        track.translations.append(translation)
        track.quats.append(quat)
        track.arrays = None

    def add_tf_message(self, msg: object, *, static: bool = False) -> None:
        """Add every transform of a ``tf2_msgs/TFMessage`` (rosbags or rclpy), each stamped by its header."""
        for tf in msg.transforms:  # type: ignore[attr-defined]
            t, q = tf.transform.translation, tf.transform.rotation
            self.add(
                tf.header.frame_id,
                tf.child_frame_id,
                stamp_to_ns(tf.header.stamp),
                (t.x, t.y, t.z),
                (q.x, q.y, q.z, q.w),
                static=static,
            )

    def add_odometry(self, msg: object) -> None:
        """Add a ``nav_msgs/Odometry`` as the dynamic edge ``header.frame_id`` -> ``child_frame_id``."""
        pose = msg.pose.pose  # type: ignore[attr-defined]
        p, q = pose.position, pose.orientation
        self.add(
            msg.header.frame_id,  # type: ignore[attr-defined]
            msg.child_frame_id,  # type: ignore[attr-defined]
            stamp_to_ns(msg.header.stamp),  # type: ignore[attr-defined]
            (p.x, p.y, p.z),
            (q.x, q.y, q.z, q.w),
        )

    def lookup(self, target: str, source: str, t_ns: int) -> np.ndarray:
        """(4, 4) transform taking points in ``source`` into ``target`` at ``t_ns``."""
        return self.lookup_many(target, source, np.array([t_ns]))[0]

    def lookup_many(self, target: str, source: str, t_ns: ArrayLike) -> np.ndarray:
        """(K, 4, 4) transforms taking points in ``source`` into ``target`` at each of the (K,) times.

        Raises:
            PoseError: no chain joins the frames, or a time is outside a dynamic edge's recorded range.
        """
        times = np.asarray(t_ns, np.int64).reshape(-1)
        up_source, up_target = self._chains(_frame(target), _frame(source))
        return invert_transform(self._compose(up_target, times)) @ self._compose(up_source, times)

    def time_range(self, target: str, source: str) -> tuple[int, int] | None:
        """Times at which ``lookup`` succeeds: the overlap of the chain's dynamic edges; None if all static.

        Raises:
            PoseError: no chain joins the frames, or the dynamic edges' ranges do not overlap.
        """
        up_source, up_target = self._chains(_frame(target), _frame(source))
        stamps = [self._dynamic[c].sorted_arrays()[0] for c in up_source + up_target if c in self._dynamic]
        if not stamps:
            return None
        start, end = max(int(s[0]) for s in stamps), min(int(s[-1]) for s in stamps)
        if start > end:
            msg = f'the transforms between {target!r} and {source!r} are never recorded at the same time'
            raise PoseError(msg)
        return start, end

    def _parent(self, child: str) -> str | None:
        if child in self._dynamic:
            return self._dynamic[child].parent
        if child in self._static:
            return self._static[child][0]
        return None

    def _ancestors(self, frame: str) -> list[str]:
        """``frame``, its parent, ... up to the root of its tree."""
        chain = [frame]
        while (parent := self._parent(chain[-1])) is not None:
            if parent in chain:
                msg = f'the tf tree has a cycle through {parent!r}'
                raise PoseError(msg)
            chain.append(parent)
        return chain

    def _chains(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Child frames on the way up from ``source`` and from ``target`` to their lowest common ancestor."""
        up_source, up_target = self._ancestors(source), self._ancestors(target)
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            msg = f'no transform chain from {source!r} to {target!r}; recorded frames: {sorted(self.frames) or "none"}'
            raise PoseError(msg)
        return up_source[: up_source.index(common)], up_target[: up_target.index(common)]

    def _compose(self, children: list[str], times: np.ndarray) -> np.ndarray:
        """(K, 4, 4) transform of ``children[0]`` in the parent of ``children[-1]``."""
        out = np.broadcast_to(np.eye(4), (times.size, 4, 4)).copy()
        for child in reversed(children):
            if child in self._dynamic:
                track = self._dynamic[child]
                edge = _interpolate(*track.sorted_arrays(), times, f'{track.parent} -> {child}')
            else:
                edge = self._static[child][1]
            out = out @ edge
        return out


def stamp_to_ns(stamp: object) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (rosbags gives ROS 1 times the same sec/nanosec)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)  # type: ignore[attr-defined]
