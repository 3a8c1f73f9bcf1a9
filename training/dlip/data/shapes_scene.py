"""Scene graphs of the synthetic Shapes benchmark: the data card's constants, the geometric rules (regions,
relations, spacing) and the scene sampler. Pure Python + numpy; no rendering, no I/O.

Data card (the rules every renderer and every caption/question generator is held to):

- 256x256 RGB canvas; background one uniform colour, each channel in [200, 255] (pixel noise is added at render time);
- 1 to 4 objects, fully inside the canvas, bounding boxes at least 4 px apart;
- shapes: circle, square, triangle (point up), diamond (square turned 45 degrees), star (five points);
- colours: reference RGB in ``COLORS``, each channel jittered by up to 15;
- sizes: small = bounding box side 28-44 px, large = 64-92 px;
- region: which cell of a 3x3 grid the object's centre falls in (``REGIONS``);
- relations: A is left of B when A's centre x < B's - 20 px (right of likewise); above when A's centre y < B's - 20 px
  (below likewise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CANVAS = 256  # image side in pixels
SHAPES = ("circle", "square", "triangle", "diamond", "star")
COLORS = {  # colour name -> reference RGB
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
}
COLOR_JITTER = 15  # max per-channel deviation of an object's RGB from its reference colour
SIZES = {"small": (28, 44), "large": (64, 92)}  # size class -> inclusive range of the bounding box side in pixels
BACKGROUND_RANGE = (200, 255)  # inclusive range of each background channel
MIN_OBJECTS, MAX_OBJECTS = 1, 4
MIN_GAP = 4  # pixels of empty space required between two bounding boxes
RELATION_MARGIN = 20  # pixels by which centres must differ for left of / right of / above / below to hold
REGIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # row-major 3x3 grid
RELATIONS = ("left of", "right of", "above", "below")

# How a new object's kind relates to the objects already placed: repeated kinds make counting questions and count
# captions ("two yellow stars") non-trivial; uniform kinds alone would almost never repeat (40 combinations).
_P_COPY_KIND = 0.25  # same shape and colour as an earlier object
_P_COPY_SHAPE = 0.15  # same shape, new colour
_P_COPY_COLOR = 0.15  # same colour, new shape
_PLACEMENT_TRIES = 60  # random positions tried per object before the scene is resampled
_SCENE_TRIES = 1000  # never reached in practice: four 92 px boxes fit easily in a 256 px canvas


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene."""

    shape: str  # one of SHAPES
    color: str  # colour name, a key of COLORS
    rgb: tuple[int, int, int]  # the fill actually drawn: COLORS[color] +- COLOR_JITTER per channel
    size: str  # "small" | "large"
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1/y1 exclusive: side = x1 - x0 = y1 - y0

    @property
    def side(self) -> int:
        return self.bbox[2] - self.bbox[0]

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the bounding box (x, y) in pixels; a multiple of 0.5."""
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def region(self) -> str:
        return region_of(*self.center)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``scenes_{split}.jsonl``."""
        return {
            "shape": self.shape,
            "color": self.color,
            "rgb": list(self.rgb),
            "size": self.size,
            "bbox": list(self.bbox),
            "center": list(self.center),
            "region": self.region,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapeObject:
        """Inverse of ``to_dict`` (derived keys "center" and "region" are recomputed, not read)."""
        return cls(
            shape=d["shape"],
            color=d["color"],
            rgb=tuple(int(v) for v in d["rgb"]),
            size=d["size"],
            bbox=tuple(int(v) for v in d["bbox"]),
        )


@dataclass(frozen=True)
class Scene:
    """A scene graph: background colour and objects (in drawing order)."""

    background: tuple[int, int, int]
    objects: tuple[ShapeObject, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"background": list(self.background), "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(
            background=tuple(int(v) for v in d["background"]),
            objects=tuple(ShapeObject.from_dict(o) for o in d["objects"]),
        )


# ---------------------------------------------------------------------------------------------------------------
# Geometric rules
# ---------------------------------------------------------------------------------------------------------------


def region_of(x: float, y: float) -> str:
    """The 3x3 grid cell holding the point (x, y) on the 256 px canvas."""
    col = min(int(x * 3 // CANVAS), 2)
    row = min(int(y * 3 // CANVAS), 2)
    return REGIONS[3 * row + col]


def relation_holds(a: ShapeObject, relation: str, b: ShapeObject) -> bool:
    """True when "a <relation> b" holds by the 20 px rule, e.g. ``relation_holds(a, "left of", b)``."""
    (ax, ay), (bx, by) = a.center, b.center
    if relation == "left of":
        return ax < bx - RELATION_MARGIN
    if relation == "right of":
        return ax > bx + RELATION_MARGIN
    if relation == "above":
        return ay < by - RELATION_MARGIN
    if relation == "below":
        return ay > by + RELATION_MARGIN
    raise ValueError(f"unknown relation '{relation}' (known: {', '.join(RELATIONS)})")


def boxes_apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = MIN_GAP) -> bool:
    """True when at least ``gap`` empty pixels separate the boxes horizontally or vertically (x1/y1 exclusive)."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


# ---------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------


def sample_scene(rng: np.random.Generator, n_objects: int | None = None) -> Scene:
    """Samples a scene that obeys the data card. ``n_objects=None`` draws 1-4 uniformly."""
    if n_objects is None:
        n_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    if not MIN_OBJECTS <= n_objects <= MAX_OBJECTS:
        raise ValueError(f"n_objects must be in [{MIN_OBJECTS}, {MAX_OBJECTS}], got {n_objects}")
    lo, hi = BACKGROUND_RANGE
    background = tuple(int(v) for v in rng.integers(lo, hi + 1, size=3))
    for _ in range(_SCENE_TRIES):
        objects = _sample_objects(rng, n_objects)
        if objects is not None:
            return Scene(background=background, objects=tuple(objects))
    raise AssertionError(f"could not place {n_objects} objects in {_SCENE_TRIES} tries")


def _sample_objects(rng: np.random.Generator, n_objects: int) -> list[ShapeObject] | None:
    """Places objects one by one at random free positions; None when one does not fit (the caller resamples)."""
    objects: list[ShapeObject] = []
    for _ in range(n_objects):
        shape, color = _sample_kind(rng, objects)
        size = ("small", "large")[int(rng.integers(2))]
        lo, hi = SIZES[size]
        side = int(rng.integers(lo, hi + 1))
        bbox = _place(rng, side, [o.bbox for o in objects])
        if bbox is None:
            return None
        ref = np.array(COLORS[color])
        rgb = np.clip(ref + rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3), 0, 255)
        objects.append(ShapeObject(shape, color, tuple(int(v) for v in rgb), size, bbox))
    return objects


def _sample_kind(rng: np.random.Generator, placed: list[ShapeObject]) -> tuple[str, str]:
    """(shape, colour) of the next object, sometimes repeating an earlier object's shape and/or colour."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    color = tuple(COLORS)[int(rng.integers(len(COLORS)))]
    if not placed:
        return shape, color
    earlier = placed[int(rng.integers(len(placed)))]
    u = rng.random()
    if u < _P_COPY_KIND:
        return earlier.shape, earlier.color
    if u < _P_COPY_KIND + _P_COPY_SHAPE:
        return earlier.shape, color
    if u < _P_COPY_KIND + _P_COPY_SHAPE + _P_COPY_COLOR:
        return shape, earlier.color
    return shape, color


def _place(
    rng: np.random.Generator, side: int, taken: list[tuple[int, int, int, int]]
) -> tuple[int, int, int, int] | None:
    """A random box of the given side inside the canvas and MIN_GAP away from every taken box, or None."""
    for _ in range(_PLACEMENT_TRIES):
        x0, y0 = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(boxes_apart(box, other) for other in taken):
            return box
    return None
