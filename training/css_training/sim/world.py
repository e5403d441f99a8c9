"""A procedural urban street built from meshes, and ray casting into it at any time.

The street runs along +x of the odom frame, centred on y = 0: road (|y| < 4.5, parking bays on the right),
sidewalks, terrain with trees, bushes and fences, then buildings with gaps. Parked cars, trucks and motorcycles
stand in the bays and along the kerb; cars and motorcyclists drive the oncoming lane, bicyclists the right edge,
persons walk the sidewalks. Counts, sizes and places are random per seed; rare classes stay rare.

Static meshes go into one Embree scene built once; moving ones into a small scene rebuilt per query time, and a
ray keeps the nearer hit. Every mesh part carries its ontology id, an instance id (vehicles, persons and riders;
0 for stuff), an RGB albedo for the camera and a LiDAR reflectivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from css_perception.core.ontology import Ontology
from css_training.sim.config import SceneConfig

__all__ = ['Hits', 'World']

_INVALID = o3d.t.geometry.RaycastingScene.INVALID_ID

# Per class: camera albedo (RGB 0..1; None: a random colour per object) and LiDAR reflectivity.
_MATERIAL: dict[str, tuple[tuple[float, float, float] | None, float]] = {
    'road': ((0.27, 0.27, 0.29), 0.12),
    'parking': ((0.38, 0.36, 0.36), 0.18),
    'sidewalk': ((0.60, 0.58, 0.55), 0.30),
    'terrain': ((0.45, 0.52, 0.25), 0.38),
    'building': (None, 0.42),
    'fence': ((0.50, 0.40, 0.30), 0.35),
    'vegetation': ((0.20, 0.45, 0.16), 0.48),
    'trunk': ((0.36, 0.24, 0.14), 0.30),
    'pole': ((0.65, 0.65, 0.68), 0.55),
    'traffic-sign': ((0.80, 0.12, 0.12), 0.95),
    'car': (None, 0.60),
    'truck': (None, 0.55),
    'motorcycle': ((0.12, 0.12, 0.14), 0.50),
    'bicycle': ((0.15, 0.15, 0.16), 0.40),
    'person': (None, 0.28),
    'bicyclist': (None, 0.28),
    'motorcyclist': (None, 0.28),
}
_THINGS = {'car', 'truck', 'motorcycle', 'bicycle', 'person', 'bicyclist', 'motorcyclist'}
Part = tuple[np.ndarray, np.ndarray, str]  # vertices (V, 3), triangles (T, 3), class name


@dataclass(frozen=True)
class Hits:
    """What each ray hit: distance (inf: nothing), unit normal facing the ray, class id, instance, materials."""

    t: np.ndarray
    normal: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    albedo: np.ndarray
    reflectivity: np.ndarray


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    mesh = o3d.geometry.TriangleMesh.create_box(*(h - lo_ for lo_, h in zip(lo, hi, strict=True)))
    return np.asarray(mesh.vertices) + lo, np.asarray(mesh.triangles)


def _cylinder(radius: float, height: float, base: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius, height, resolution=10, split=1)
    offset = np.array([base[0], base[1], base[2] + height / 2])
    return np.asarray(mesh.vertices) + offset, np.asarray(mesh.triangles)


def _ellipsoid(radii: tuple[float, float, float], centre: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    mesh = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=6)
    return np.asarray(mesh.vertices) * radii + centre, np.asarray(mesh.triangles)


def _wheel(radius: float, width: float, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """A wheel standing on the ground with its axle along y."""
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius, width, resolution=10, split=1)
    v = np.asarray(mesh.vertices)[:, [0, 2, 1]] + (x, y, radius)
    return v, np.asarray(mesh.triangles)


def _part(mesh: tuple[np.ndarray, np.ndarray], name: str) -> Part:
    return mesh[0], mesh[1], name


def _rider(rng: np.random.Generator, name: str, seat: float) -> list[Part]:
    return [
        _part(_box((-0.25, -0.2, seat), (0.15, 0.2, seat + 0.6)), name),
        _part(_ellipsoid((0.12, 0.12, 0.13), (0.0, 0.0, seat + 0.72)), name),
    ]


def _vehicle(rng: np.random.Generator, kind: str) -> list[list[Part]]:
    """Parts of one object in its own frame (x forward, on the ground), grouped per instance."""
    if kind == 'car':
        hl, hw, body = rng.uniform(1.9, 2.45), rng.uniform(0.85, 0.98), rng.uniform(0.6, 0.8)
        roof = 0.3 + body + rng.uniform(0.45, 0.6)
        parts = [
            _part(_box((-hl, -hw, 0.3), (hl, hw, 0.3 + body)), kind),
            _part(_box((-hl * 0.5, -hw * 0.9, 0.3 + body), (hl * 0.35, hw * 0.9, roof)), kind),
        ]
        return [
            parts
            + [_part(_wheel(0.32, 0.22, sx * hl * 0.68, sy * (hw - 0.12)), kind) for sx in (-1, 1) for sy in (-1, 1)]
        ]
    if kind == 'truck':
        hl, hw, cargo = rng.uniform(3.2, 4.5), rng.uniform(1.15, 1.27), rng.uniform(2.6, 3.4)
        cab = hl * 0.55
        parts = [
            _part(_box((-hl, -hw, 0.55), (cab - 0.2, hw, cargo)), kind),
            _part(_box((cab, -hw, 0.5), (hl, hw, 2.6)), kind),
        ]
        return [
            parts + [_part(_wheel(0.5, 0.3, sx * hl * 0.7, sy * (hw - 0.15)), kind) for sx in (-1, 1) for sy in (-1, 1)]
        ]
    if kind in ('bicycle', 'motorcycle'):
        r = 0.34 if kind == 'bicycle' else 0.32
        frame_h = 0.12 if kind == 'bicycle' else 0.45
        parts = [
            _part(_wheel(r, 0.06, -0.55, 0.0), kind),
            _part(_wheel(r, 0.06, 0.55, 0.0), kind),
            _part(_box((-0.5, -0.05 - frame_h / 4, r), (0.5, 0.05 + frame_h / 4, r + frame_h + 0.2)), kind),
        ]
        return [parts]
    # person
    height = rng.uniform(1.55, 1.9)
    return [
        [
            _part(_box((-0.12, -0.2, 0.0), (0.12, 0.2, height * 0.5)), 'person'),
            _part(_box((-0.15, -0.24, height * 0.5), (0.15, 0.24, height * 0.86)), 'person'),
            _part(_ellipsoid((0.11, 0.11, 0.13), (0.0, 0.0, height * 0.93)), 'person'),
        ]
    ]


@dataclass
class _Mover:
    parts: list[Part]
    instance: int
    albedo: tuple[float, float, float] | None
    start: np.ndarray
    yaw: float
    speed: float


class World:
    """A street of ``length`` metres from x = -margin, with its static and moving objects."""

    def __init__(self, config: SceneConfig, length: float, seed: int, ontology: Ontology | None = None) -> None:
        ontology = ontology or Ontology.load()
        self._ids = {name: ontology.by_name(name).id for name in config.classes}
        self.sky_id = ontology.by_name('sky').id
        self._rng = np.random.default_rng(seed)
        self._density = config.density
        self._next_instance = 1
        self._static_labels: list[tuple[int, int, tuple[float, float, float], float]] = []
        self._static = o3d.t.geometry.RaycastingScene()
        self._movers: list[_Mover] = []
        self._build(-40.0, length + 40.0)
        self._mover_labels = [self._label(name, m.instance, m.albedo) for m in self._movers for _, _, name in m.parts]

    @property
    def movers(self) -> int:
        return len(self._movers)

    def cast(self, origins: np.ndarray, directions: np.ndarray, time_s: float) -> Hits:
        """Hits of rays (N, 3) origins and unit directions, moving objects placed at ``time_s``."""
        rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
        static = self._static.cast_rays(rays)
        t = static['t_hit'].numpy().astype(np.float64)
        gid = static['geometry_ids'].numpy().astype(np.int64)
        normal = static['primitive_normals'].numpy().astype(np.float64)
        labels = self._static_labels
        if self._movers:
            dynamic = self._dynamic_scene(time_s).cast_rays(rays)
            td = dynamic['t_hit'].numpy().astype(np.float64)
            nearer = td < t
            t = np.where(nearer, td, t)
            offset = len(labels)
            gid = np.where(nearer, dynamic['geometry_ids'].numpy().astype(np.int64) + offset, gid)
            normal = np.where(nearer[:, None], dynamic['primitive_normals'].numpy(), normal)
            labels = labels + self._mover_labels
        hit = np.isfinite(t)
        table_sem = np.array([lab[0] for lab in labels] + [0], np.uint16)
        table_inst = np.array([lab[1] for lab in labels] + [0], np.uint16)
        table_albedo = np.array([lab[2] for lab in labels] + [(0.0, 0.0, 0.0)], np.float64)
        table_refl = np.array([lab[3] for lab in labels] + [0.0], np.float64)
        index = np.where(hit & (gid != _INVALID), gid, len(labels))
        facing = np.sign(-np.einsum('ij,ij->i', normal, directions))[:, None]
        return Hits(
            t=t,
            normal=normal * np.where(facing == 0, 1.0, facing),
            semantic=table_sem[index],
            instance=table_inst[index],
            albedo=table_albedo[index],
            reflectivity=table_refl[index],
        )

    # --- construction -------------------------------------------------------------------------------------

    def _label(
        self, name: str, instance: int, albedo: tuple[float, float, float] | None
    ) -> tuple[int, int, tuple[float, float, float], float]:
        colour, reflectivity = _MATERIAL[name]
        return self._ids[name], instance, colour or albedo or (0.5, 0.5, 0.5), reflectivity

    def _has(self, name: str) -> bool:
        return name in self._ids

    def _count(self, per_100m: float, length: float) -> int:
        return int(self._rng.poisson(per_100m * self._density * length / 100.0))

    def _instance(self, name: str) -> int:
        if name not in _THINGS:
            return 0
        self._next_instance += 1
        return self._next_instance - 1

    def _random_colour(self) -> tuple[float, float, float]:
        return tuple(float(c) for c in self._rng.uniform(0.1, 0.9, 3))  # type: ignore[return-value]

    def _add_static(self, parts: list[Part], pose: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """Adds an object's parts at (x, y, yaw); things get one instance id per object."""
        x, y, yaw = pose
        instance = self._instance(parts[0][2]) if parts else 0  # the object's first part names it
        colour = self._random_colour()
        rot = _yaw(yaw)
        for vertices, triangles, name in parts:
            if not self._has(name):
                continue
            world = vertices @ rot.T + (x, y, 0.0)
            self._static.add_triangles(world.astype(np.float32), triangles.astype(np.uint32))
            self._static_labels.append(self._label(name, instance if name in _THINGS else 0, colour))

    def _add_mover(self, kind: str, start: tuple[float, float], yaw: float, speed: float) -> None:
        groups = _vehicle(self._rng, kind) if kind != 'bicyclist' else _vehicle(self._rng, 'bicycle')
        if kind in ('bicyclist', 'motorcyclist'):
            base = 'bicycle' if kind == 'bicyclist' else 'motorcycle'
            ride = groups[0] if self._has(base) else []
            groups = [ride, _rider(self._rng, kind, 0.75 if kind == 'bicyclist' else 0.6)]
        for parts in groups:
            parts = [p for p in parts if self._has(p[2])]
            if parts:
                self._movers.append(
                    _Mover(
                        parts,
                        self._instance(parts[0][2]),
                        self._random_colour(),
                        np.array([start[0], start[1], 0.0]),
                        yaw,
                        speed,
                    )
                )

    def _dynamic_scene(self, time_s: float) -> o3d.t.geometry.RaycastingScene:
        scene = o3d.t.geometry.RaycastingScene()
        for mover in self._movers:
            rot = _yaw(mover.yaw)
            position = mover.start + mover.speed * time_s * rot[:, 0]
            for vertices, triangles, _ in mover.parts:
                scene.add_triangles((vertices @ rot.T + position).astype(np.float32), triangles.astype(np.uint32))
        return scene

    def _build(self, x0: float, x1: float) -> None:
        rng, length = self._rng, x1 - x0
        ground = [
            ('road', -4.5, 4.5, 0.0),
            ('sidewalk', 6.5, 9.0, 0.15),
            ('sidewalk', -9.0, -6.5, 0.15),
            ('terrain', 9.0, 14.0, 0.05),
            ('terrain', -14.0, -9.0, 0.05),
            ('road', 4.5, 6.5, 0.0),
        ]
        for name, y0, y1, top in ground:
            self._add_static([_part(_box((x0, y0, top - 0.3), (x1, y1, top)), name)])
        # Right edge: parking bays between stretches of road.
        x = x0
        while x < x1:
            span = rng.uniform(10, 35)
            bay = self._has('parking') and rng.random() < 0.5
            self._add_static(
                [_part(_box((x, -6.5, -0.28), (min(x + span, x1), -4.5, 0.02)), 'parking' if bay else 'road')]
            )
            if bay:
                for cx in np.arange(x + 3, min(x + span, x1) - 3, 6.0):
                    kind = rng.choice(['car', 'car', 'car', 'truck', 'motorcycle'], p=[0.3, 0.3, 0.25, 0.08, 0.07])
                    if rng.random() < 0.75 * min(self._density, 1.0):
                        self._add_static(_vehicle(rng, str(kind))[0], (cx, -5.5, rng.normal(0, 0.05)))
            x += span
        for side in (-1, 1):
            self._buildings(side, x0, x1)
            self._street_furniture(side, x0, length)
        for _ in range(self._count(6, length)):  # cars parked at the left kerb
            kind = 'truck' if rng.random() < 0.15 else 'car'
            self._add_static(_vehicle(rng, kind)[0], (rng.uniform(x0, x1), 5.4, np.pi + rng.normal(0, 0.04)))
        self._traffic(x0, length)

    def _buildings(self, side: int, x0: float, x1: float) -> None:
        rng, x = self._rng, x0
        while x < x1:
            width = rng.uniform(8, 28)
            if rng.random() < 0.8:
                depth, height = rng.uniform(8, 16), rng.uniform(5, 22)
                near = 14.5 + rng.uniform(0, 3)
                y0, y1 = sorted((side * near, side * (near + depth)))
                self._add_static([_part(_box((x, y0, 0.0), (x + width, y1, height)), 'building')])
            elif self._has('fence'):
                y = side * 13.6
                self._add_static(
                    [_part(_box((x, y - 0.03, 0.0), (x + width, y + 0.03, rng.uniform(1.0, 2.0))), 'fence')]
                )
            x += width + rng.uniform(0, 6)

    def _street_furniture(self, side: int, x0: float, length: float) -> None:
        rng = self._rng
        for _ in range(self._count(9, length)):  # trees
            x, y = rng.uniform(x0, x0 + length), side * rng.uniform(9.8, 13.0)
            trunk_h, crown = rng.uniform(1.8, 3.5), rng.uniform(1.2, 2.6)
            self._add_static(
                [
                    _part(_cylinder(rng.uniform(0.12, 0.25), trunk_h + crown * 0.5, (0, 0, 0)), 'trunk'),
                    _part(_ellipsoid((crown, crown, crown * 0.9), (0, 0, trunk_h + crown * 0.8)), 'vegetation'),
                ],
                (x, y, 0.0),
            )
        for _ in range(self._count(12, length)):  # bushes and hedges
            x, y = rng.uniform(x0, x0 + length), side * rng.uniform(9.6, 13.2)
            size = rng.uniform(0.4, 1.2, 3) * (rng.uniform(1, 4), 1, 1)
            self._add_static([_part(_ellipsoid(tuple(size), (0, 0, size[2] * 0.6)), 'vegetation')], (x, y, 0.0))
        for _ in range(self._count(5, length)):  # poles, some carrying a traffic sign
            x, height = rng.uniform(x0, x0 + length), rng.uniform(3.5, 7.0)
            parts = [_part(_cylinder(0.07, height, (0, 0, 0.15)), 'pole')]
            if rng.random() < 0.45:
                z = height * rng.uniform(0.5, 0.8)
                parts.append(_part(_box((-0.04, -0.35, z), (0.04, 0.35, z + 0.7)), 'traffic-sign'))
            self._add_static(parts, (x, side * 6.8, 0.0))
        for _ in range(self._count(1.5, length)):  # motorcycles parked on the sidewalk
            x = rng.uniform(x0, x0 + length)
            self._add_static(_vehicle(rng, 'motorcycle')[0], (x, side * 7.2, rng.uniform(-0.3, 0.3) + np.pi / 2))
        for _ in range(self._count(3, length)):  # standing persons
            x = rng.uniform(x0, x0 + length)
            self._add_static(_vehicle(rng, 'person')[0], (x, side * rng.uniform(7.0, 8.5), rng.uniform(-np.pi, np.pi)))

    def _traffic(self, x0: float, length: float) -> None:
        rng = self._rng
        for _ in range(self._count(4, length)):  # oncoming cars and trucks
            kind = 'truck' if rng.random() < 0.2 else 'car'
            self._add_mover(kind, (rng.uniform(x0, x0 + 2 * length), 2.2), np.pi, rng.uniform(6, 12))
        for _ in range(self._count(5, length)):  # walking persons
            side = rng.choice([-1, 1])
            self._add_mover(
                'person', (rng.uniform(x0, x0 + length), side * 7.8), rng.choice([0.0, np.pi]), rng.uniform(1.0, 1.6)
            )
        for _ in range(self._count(1.5, length)):  # bicyclists on the right edge, ahead of the ego
            self._add_mover('bicyclist', (rng.uniform(0, length), -3.6), 0.0, rng.uniform(3.5, 6.0))
        for _ in range(self._count(1.0, length)):  # oncoming motorcyclists
            self._add_mover('motorcyclist', (rng.uniform(x0, x0 + 2 * length), 1.6), np.pi, rng.uniform(8, 14))


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
