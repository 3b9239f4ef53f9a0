"""Scenes as pure specifications and their rendering: shapes, colours, textures, placement, exact pixel boxes.

A `Scene` (size, `Background`, `ObjectSpec`s) holds no pixels and no random state: `render_scene` is a pure function
of it, so two scenes that share a `Background` share every background pixel (the `diff` task), and a test can render
a scene without one object to see exactly which pixels that object covers. Objects never overlap (placement keeps
their bounding circles apart), every object colour keeps a margin from every background pixel, and an object's box
is the tight box of the pixels its mask covers, in pixel edges: `(x_min, y_min, x_max + 1, y_max + 1)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from . import background as _background
from .background import Background, PlacementError, background_pixels


SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 215, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 210),
    "blue": (40, 80, 220),
    "purple": (140, 60, 200),
    "pink": (240, 110, 180),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
TEXTURES = ("plain", "striped", "dotted")
SIZES = ("small", "large")
_LUMINANCE = {name: (0.299 * r + 0.587 * g + 0.114 * b) / 255 for name, (r, g, b) in COLOURS.items()}
_TEXTURE_COLOURS = {name: (240, 240, 240) if y < 0.45 else (25, 25, 25) for name, y in _LUMINANCE.items()}
#: narrowest box side of any shape at any allowed rotation, as a fraction of its bounding-circle diameter (the
#: square and the diamond, unrotated)
MIN_EXTENT_RATIO = 0.7
_GAP = 3.0  # pixels between two objects' bounding circles, and between a circle and the image border

#: (min, max) rotation in degrees per shape; shapes whose identity a rotation would change turn only a little
_ROTATION = {
    "circle": (0, 0), "ring": (0, 0), "square": (-12, 12), "cross": (-12, 12), "diamond": (-12, 12),
    "triangle": (0, 360), "star": (0, 360), "hexagon": (0, 360),
}  # fmt: skip


def _regular(n: int, radius: float = 1.0, phase: float = -90.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(math.radians(phase + 360 * k / n)), radius * math.sin(math.radians(phase + 360 * k / n)))
        for k in range(n)
    ]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5), _regular(5, 0.45, -90 + 36)
    return [p for pair in zip(outer, inner) for p in pair]


def _cross(half_width: float = 0.3) -> list[tuple[float, float]]:
    w, a = half_width, math.sqrt(1 - half_width**2)
    return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]


#: unit polygons (circumradius 1, y down) of the polygonal shapes
_POLYGONS = {
    "square": _regular(4, phase=-45),
    "triangle": _regular(3),
    "star": _star(),
    "cross": _cross(),
    "diamond": [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
    "hexagon": _regular(6, phase=0),
}


@dataclass(frozen=True)
class ObjectSpec:
    """One shape: identity (`shape`, `colour`, `texture`), size class, and placement (pixels of its image).

    `diameter` is the bounding circle's; `angle` rotates the shape, `texture_angle` the stripes, `texture_period`
    is the stripe or dot period in pixels. Placement fields are zero until `place_objects` sets them.
    """

    shape: str
    colour: str
    texture: str = "plain"
    size: str = "small"
    cx: float = 0.0
    cy: float = 0.0
    diameter: float = 0.0
    angle: float = 0.0
    texture_angle: float = 0.0
    texture_period: float = 0.0

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.shape, self.colour, self.texture)


@dataclass(frozen=True)
class Scene:
    """One image: its size (pixels), background and placed objects (which never overlap)."""

    width: int
    height: int
    background: Background
    objects: tuple[ObjectSpec, ...]


def texture_colour(colour: str) -> tuple[int, int, int]:
    """Second colour of a striped or dotted object: near-white on dark colours, near-black on light ones."""
    return _TEXTURE_COLOURS[colour]


def object_colours(objects: Sequence[ObjectSpec]) -> list[tuple[int, int, int]]:
    """The colours `objects` are drawn in (texture colours included)."""
    colours = []
    for obj in objects:
        colours.append(COLOURS[obj.colour])
        if obj.texture != "plain":
            colours.append(texture_colour(obj.colour))
    return colours


def choose_background(
    rng: np.random.Generator, objects: Sequence[ObjectSpec], tries: int = 40, *, plain: bool = False
) -> Background:
    """A random background every colour of `objects` stands out from; `PlacementError` when none is found.

    `plain` draws a uniform colour (no gradient, pattern or noise), with the same colour margin.
    """
    return _background.choose_background(rng, object_colours(objects), tries, plain=plain)


def diameter_range(size: str, min_side: int, min_object_frac: float) -> tuple[float, float]:
    """Bounding-circle diameters (pixels) of a size class, such that every box side is >= `min_object_frac`.

    Two pixels of slack cover the rasterisation of a shape's narrowest extent.
    """
    low = max(0.13 * min_side, (min_object_frac * min_side + 2) / MIN_EXTENT_RATIO)
    if size == "small":
        return low, low + 0.06 * min_side
    return low + 0.11 * min_side, low + 0.19 * min_side


def place_objects(
    rng: np.random.Generator,
    width: int,
    height: int,
    required: list[ObjectSpec],
    optional: list[ObjectSpec] = (),
    fixed: tuple[ObjectSpec, ...] = (),
    *,
    min_object_frac: float,
    rotate: bool = True,
    tries: int = 60,
) -> tuple[list[ObjectSpec], list[ObjectSpec]]:
    """Give objects a size, position and rotation, apart from each other and from `fixed` (already placed).

    `required` objects must all fit (else `PlacementError`); `optional` ones that do not fit are dropped.
    `rotate=False` leaves every object unrotated (see `with_pose`). Returns the placed required and optional objects.
    """
    circles = [(o.cx, o.cy, o.diameter / 2) for o in fixed]
    placed_required, placed_optional = [], []
    for is_required, pending, out in ((True, required, placed_required), (False, optional, placed_optional)):
        for obj in pending:
            spot = _place_one(rng, width, height, obj, circles, min_object_frac, tries, rotate)
            if spot is None:
                if is_required:
                    raise PlacementError(f"no room for a {obj.size} {obj.shape} in a {width}x{height} image")
                continue
            circles.append((spot.cx, spot.cy, spot.diameter / 2))
            out.append(spot)
    return placed_required, placed_optional


def _place_one(rng, width, height, obj, circles, min_object_frac, tries, rotate) -> ObjectSpec | None:
    """A free spot for `obj`; an object that already has a diameter keeps its size and pose (it is being moved)."""
    moving = obj.diameter > 0
    if moving:
        diameter = obj.diameter
    else:
        low, high = diameter_range(obj.size, min(width, height), min_object_frac)
        diameter = float(rng.uniform(low, high))
    r = diameter / 2
    if 2 * (r + _GAP) > min(width, height):
        return None
    for _ in range(tries):
        cx = float(rng.uniform(r + _GAP, width - r - _GAP))
        cy = float(rng.uniform(r + _GAP, height - r - _GAP))
        if all(math.hypot(cx - x, cy - y) >= r + rr + _GAP for x, y, rr in circles):
            placed = replace(obj, cx=cx, cy=cy, diameter=diameter)
            return placed if moving else with_pose(rng, placed, rotate=rotate)
    return None


def with_pose(rng: np.random.Generator, obj: ObjectSpec, *, rotate: bool = True) -> ObjectSpec:
    """`obj` with a random rotation (within its shape's range) and texture angle and period.

    `rotate=False` gives angle 0 (and draws no angle, so the stream differs from a rotating one's).
    """
    low, high = _ROTATION[obj.shape] if rotate else (0, 0)
    return replace(
        obj,
        angle=float(rng.uniform(low, high)) if high > low else 0.0,
        texture_angle=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        texture_period=float(max(4.0, obj.diameter / rng.uniform(4.0, 6.0))),
    )


def _object_mask(obj: ObjectSpec, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """Boolean mask of `obj` over a crop of its image, and the crop's top-left corner (x0, y0)."""
    r = obj.diameter / 2
    x0, y0 = max(0, int(math.floor(obj.cx - r)) - 1), max(0, int(math.floor(obj.cy - r)) - 1)
    x1, y1 = min(width, int(math.ceil(obj.cx + r)) + 2), min(height, int(math.ceil(obj.cy + r)) + 2)
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = obj.cx - x0, obj.cy - y0
    if obj.shape in ("circle", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if obj.shape == "ring":
            inner = 0.55 * r
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    else:
        cos, sin = math.cos(math.radians(obj.angle)), math.sin(math.radians(obj.angle))
        points = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in _POLYGONS[obj.shape]]
        draw.polygon(points, fill=255)
    return np.asarray(canvas) > 0, x0, y0


def _texture(obj: ObjectSpec, x0: int, y0: int, shape: tuple[int, int]) -> np.ndarray:
    ys, xs = np.mgrid[y0 : y0 + shape[0], x0 : x0 + shape[1]].astype(np.float32)
    period = obj.texture_period
    if obj.texture == "striped":
        theta = math.radians(obj.texture_angle)
        u = xs * math.cos(theta) + ys * math.sin(theta)
        return np.floor(u / (period / 2)) % 2 == 1
    # dotted
    dx, dy = xs % period - period / 2, ys % period - period / 2
    return dx * dx + dy * dy <= (0.3 * period) ** 2


def render_scene(scene: Scene, skip: int | None = None) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Render `scene` (without object `skip`, if given). Returns the image and each object's pixel box.

    Boxes are tight, in pixel edges `(x_min, y_min, x_max + 1, y_max + 1)`, one per object of the scene (the
    skipped one included, as if drawn).
    """
    pixels = np.array(background_pixels(scene.background, scene.width, scene.height))
    boxes = []
    for k, obj in enumerate(scene.objects):
        mask, x0, y0 = _object_mask(obj, scene.width, scene.height)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            raise PlacementError(f"object {k} ({obj.shape}) covers no pixel")
        boxes.append((x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1))
        if k == skip:
            continue
        region = pixels[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        region[mask] = COLOURS[obj.colour]
        if obj.texture != "plain":
            region[mask & _texture(obj, x0, y0, mask.shape)] = texture_colour(obj.colour)
    return Image.fromarray(pixels, "RGB"), boxes
