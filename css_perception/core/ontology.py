"""The class ontology (``config/classes.yaml``) and colour look-ups for RViz."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from css_perception.core.errors import OntologyError
from css_perception.core.metadata import ClassInfo

__all__ = ['DEFAULT_CLASSES_FILE', 'Ontology', 'colour_lut', 'pack_rgb']

DEFAULT_CLASSES_FILE = Path(__file__).resolve().parents[2] / 'config' / 'classes.yaml'


@dataclass(frozen=True)
class Ontology:
    """All known classes by id, plus the SemanticKITTI raw-id map."""

    classes: tuple[ClassInfo, ...]
    semantic_kitti_map: Mapping[int, int]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Ontology:
        path = Path(path) if path is not None else find_classes_file()
        try:
            raw = yaml.safe_load(path.read_text())
            classes = tuple(
                ClassInfo(int(c['id']), str(c['name']), tuple(int(v) for v in c['color'])) for c in raw['classes']
            )
            kitti = {int(k): int(v) for k, v in (raw.get('semantic_kitti_map') or {}).items()}
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
            msg = f'cannot read ontology {path}: {err}'
            raise OntologyError(msg) from err
        if not classes or classes[0].id != 0:
            msg = f'{path}: the first class must be id 0 (unlabelled)'
            raise OntologyError(msg)
        return cls(classes, kitti)

    def by_id(self, class_id: int) -> ClassInfo:
        for c in self.classes:
            if c.id == class_id:
                return c
        msg = f'class id {class_id} is not in the ontology'
        raise OntologyError(msg)

    def by_name(self, name: str) -> ClassInfo:
        for c in self.classes:
            if c.name == name:
                return c
        msg = f'class {name!r} is not in the ontology; known: {[c.name for c in self.classes]}'
        raise OntologyError(msg)

    def subset(self, names: Iterable[str]) -> tuple[ClassInfo, ...]:
        """Channel list for a model: unlabelled first, then ``names`` in the order given."""
        return (self.classes[0], *(self.by_name(n) for n in names if n != self.classes[0].name))


def find_classes_file() -> Path:
    """The ontology shipped with the package: source tree first, then the ament share directory."""
    if DEFAULT_CLASSES_FILE.exists():
        return DEFAULT_CLASSES_FILE
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory('css_perception')) / 'config' / 'classes.yaml'
    except (ImportError, LookupError) as err:
        msg = 'cannot find config/classes.yaml; pass its path explicitly'
        raise OntologyError(msg) from err


def colour_lut(classes: Iterable[ClassInfo], size: int = 65536) -> np.ndarray:
    """(size, 3) uint8 table from ontology id to RGB; ids not listed are black."""
    lut = np.zeros((size, 3), np.uint8)
    for c in classes:
        lut[c.id] = c.color
    return lut


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack (..., 3) uint8 RGB into float32 as RViz's RGB8 transformer reads the ``rgb`` field."""
    rgb = np.asarray(rgb, np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    return packed.view(np.float32)
