"""Generator settings, the sample every task returns, and the random draws the tasks share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from .scene import (
    COLOURS,
    SHAPES,
    SIZES,
    TEXTURES,
    ObjectSpec,
    Scene,
    choose_background,
    place_objects,
    render_scene,
)
from .text import canonical_box, matches


IDENTITY = ("shape", "colour", "texture")
#: the reasonings every task writes (`GeneratorConfig.reasoning` picks the one a row carries)
REASONINGS = ("full", "brief")
_VALUES = {"shape": SHAPES, "colour": tuple(COLOURS), "texture": TEXTURES, "size": SIZES}
#: named presets of `GeneratorConfig` fields (`GeneratorConfig.from_style`); "simple" is a world a tiny model learns
#: to ground in minutes: two upright shapes, six far-apart colours, no textures, one flat background colour
STYLES: dict[str, dict[str, Any]] = {
    "rich": {},
    "simple": {
        "shapes": ("square", "circle"),
        "colours": ("red", "green", "blue", "yellow", "white", "black"),
        "rotate": False,
        "plain_background": True,
        "texture_prob": 0.0,
    },
}


@dataclass(frozen=True)
class GeneratorConfig:
    """What the generator draws. Sides in pixels; fractions of an image's shorter side.

    Args:
        image_min_side (`int`, *optional*, defaults to `112`): smallest image side.
        image_max_side (`int`, *optional*, defaults to `224`): largest image side.
        max_aspect_ratio (`float`, *optional*, defaults to `2.0`): largest long/short side ratio of an image.
        min_images (`int`, *optional*, defaults to `3`): fewest images of `common_object` and `group_grounding`.
        max_images (`int`, *optional*, defaults to `5`): most images of `common_object`, `group_grounding` and
            `multi_view` (`diff` and `refer_grounding` always have 2, `single` 1).
        max_objects (`int`, *optional*, defaults to `5`): most objects per image, target included (objects that do
            not fit are dropped).
        min_object_frac (`float`, *optional*, defaults to `0.08`): every object's box sides are at least this
            fraction of its image's shorter side.
        texture_prob (`float`, *optional*, defaults to `0.4`): probability that an object is striped or dotted.
        shapes (`tuple[str, ...]`, *optional*, defaults to all of `SHAPES`): the shapes objects are drawn from (at
            least 2; kept in `SHAPES` order, so the order given does not change the rows).
        colours (`tuple[str, ...]`, *optional*, defaults to all of `COLOURS`): the colours objects are drawn from
            (at least 2; kept in `COLOURS` order).
        rotate (`bool`, *optional*, defaults to `True`): rotate shapes (within each shape's range); `False` draws
            every object upright (angle 0).
        plain_background (`bool`, *optional*, defaults to `False`): one uniform background colour per image (no
            gradient, pattern or noise), still at least `COLOUR_MARGIN` away from every object colour.
        reasoning (`str`, *optional*, defaults to `"full"`): the `reasoning` a row carries: `"full"` lists every
            object of every image with its position, the near misses and the target's box; `"brief"` is one or two
            sentences with only the facts that decide the answer (the target's attributes, its image, a coarse
            position; no box, no other object). Both are written from the same draws, so the images, questions and
            boxes of a seed do not depend on it.

    Presets of these fields: `GeneratorConfig.from_style("simple")` (see `STYLES`).
    """

    image_min_side: int = 112
    image_max_side: int = 224
    max_aspect_ratio: float = 2.0
    min_images: int = 3
    max_images: int = 5
    max_objects: int = 5
    min_object_frac: float = 0.08
    texture_prob: float = 0.4
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    rotate: bool = True
    plain_background: bool = False
    reasoning: str = "full"

    @classmethod
    def from_style(cls, style: str = "rich", **overrides) -> GeneratorConfig:
        """The preset `style` of `STYLES` (`"rich"`: the defaults, `"simple"`), with `overrides` winning over it."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}; got {style!r}")
        return cls(**{**STYLES[style], **overrides})

    def __post_init__(self):
        # frozen: normalise through object.__setattr__ (a list or "a,b" string becomes a tuple in canonical order)
        object.__setattr__(self, "shapes", _names("shapes", self.shapes, SHAPES))
        object.__setattr__(self, "colours", _names("colours", self.colours, tuple(COLOURS)))
        for name in ("rotate", "plain_background"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.reasoning not in REASONINGS:
            raise ValueError(f"reasoning must be one of {', '.join(map(repr, REASONINGS))}; got {self.reasoning!r}")
        if not 48 <= self.image_min_side <= self.image_max_side:
            raise ValueError(
                f"image sides must satisfy 48 <= image_min_side <= image_max_side; got {self.image_min_side} and "
                f"{self.image_max_side}"
            )
        if self.max_aspect_ratio < 1:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if not 2 <= self.min_images <= self.max_images <= 10:
            raise ValueError(
                f"image counts must satisfy 2 <= min_images <= max_images <= 10; got {self.min_images} and "
                f"{self.max_images}"
            )
        if not 2 <= self.max_objects <= 8:
            raise ValueError(f"max_objects must be in [2, 8], got {self.max_objects}")
        if not 0 < self.min_object_frac <= 0.2:
            raise ValueError(f"min_object_frac must be in (0, 0.2], got {self.min_object_frac}")
        if not 0 <= self.texture_prob <= 1:
            raise ValueError(f"texture_prob must be in [0, 1], got {self.texture_prob}")


def _names(field_name: str, given: str | Iterable[str], known: tuple[str, ...]) -> tuple[str, ...]:
    """`given` (names, comma-separated or not) validated against `known`, in `known`'s order."""
    items = [given] if isinstance(given, str) else list(given)
    names = [name for item in items for name in str(item).replace(",", " ").split()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"{field_name}: unknown name(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    chosen = tuple(n for n in known if n in names)
    if len(chosen) < 2:
        raise ValueError(
            f"{field_name}: need at least 2 distinct names (near misses change one attribute), got {chosen or None}"
        )
    return chosen


def allowed_values(cfg: GeneratorConfig, attribute: str) -> tuple[str, ...]:
    """The values `attribute` may take under `cfg` (shapes and colours as configured)."""
    return {"shape": cfg.shapes, "colour": cfg.colours}.get(attribute) or _VALUES[attribute]


@dataclass
class TaskSample:
    """One generated question with everything it was made from.

    `boxes[i][k]` is the canonical box of object `k` of image `i`; the answer is
    `boxes[target_image][target_object]`. `reference` is the `(image, object)` whose box the question quotes;
    `info` holds task-specific ground truth: `attributes` the description names (`single`, `group_grounding`),
    `change` (`diff`: `"added"`, `"changed"` or `"moved"`). `reasonings` holds every reasoning the task wrote, by
    name (`REASONINGS`); `reasoning` is the one the config chose.
    """

    task: str
    scenes: list[Scene]
    images: list[Image.Image]
    boxes: list[list[list[float]]]
    question: str
    reasoning: str
    target_image: int
    target_object: int
    reference: tuple[int, int] | None = None
    info: dict = field(default_factory=dict)
    reasonings: dict[str, str] = field(default_factory=dict)

    @property
    def solution(self) -> list[float]:
        return self.boxes[self.target_image][self.target_object]


def render(scenes: list[Scene]) -> tuple[list[Image.Image], list[list[list[float]]]]:
    """Images and canonical object boxes of `scenes`."""
    images, boxes = [], []
    for scene in scenes:
        image, pixel_boxes = render_scene(scene)
        images.append(image)
        boxes.append([canonical_box(b, scene.width, scene.height) for b in pixel_boxes])
    return images, boxes


def sample_size(rng: np.random.Generator, cfg: GeneratorConfig) -> tuple[int, int]:
    """A random `(width, height)` within the configured sides and aspect ratio."""
    width, height = (int(v) for v in rng.integers(cfg.image_min_side, cfg.image_max_side + 1, size=2))
    if max(width, height) > cfg.max_aspect_ratio * min(width, height):
        if width > height:
            width = int(cfg.max_aspect_ratio * height)
        else:
            height = int(cfg.max_aspect_ratio * width)
    return width, height


def random_value(rng: np.random.Generator, cfg: GeneratorConfig, attribute: str, other_than: str | None = None) -> str:
    if attribute == "texture":
        p = np.asarray([1 - cfg.texture_prob, cfg.texture_prob / 2, cfg.texture_prob / 2])
        values = list(TEXTURES)
    else:
        values = list(allowed_values(cfg, attribute))
        p = np.full(len(values), 1 / len(values))
    if other_than is not None:
        keep = [v != other_than for v in values]
        values, p = [v for v, k in zip(values, keep) if k], p[keep]
        if p.sum() == 0:  # texture_prob 0 and a plain object asked to change texture: any other texture
            p = np.ones(len(values))
        p = p / p.sum()
    return str(values[rng.choice(len(values), p=p)])


def random_object(rng: np.random.Generator, cfg: GeneratorConfig) -> ObjectSpec:
    """An unplaced object with random shape, colour, texture and size class."""
    return ObjectSpec(**{a: random_value(rng, cfg, a) for a in ("shape", "colour", "texture", "size")})


def random_size(rng: np.random.Generator, obj: ObjectSpec) -> ObjectSpec:
    return replace(obj, size=str(rng.choice(SIZES)))


def changeable(cfg: GeneratorConfig, attributes) -> list[str]:
    """The attributes a variation may change: texture only when textures are drawn at all."""
    return [a for a in attributes if a != "texture" or cfg.texture_prob > 0]


def near_miss(rng: np.random.Generator, cfg: GeneratorConfig, target: ObjectSpec, attributes) -> ObjectSpec:
    """`target` with exactly one of `attributes` changed (and a random size class unless size is among them)."""
    changed = str(rng.choice(changeable(cfg, attributes)))
    obj = replace(target, **{changed: random_value(rng, cfg, changed, other_than=getattr(target, changed))})
    return obj if "size" in attributes else random_size(rng, obj)


def distractor(
    rng: np.random.Generator, cfg: GeneratorConfig, target: ObjectSpec, attributes, near_p: float = 0.5
) -> ObjectSpec:
    """An object that does not fit `target` restricted to `attributes`: a near miss with probability `near_p`."""
    if rng.random() < near_p:
        return near_miss(rng, cfg, target, attributes)
    while True:
        obj = random_object(rng, cfg)
        if not matches(obj, target, attributes):
            return obj


def choose_attributes(rng: np.random.Generator, cfg: GeneratorConfig, target: ObjectSpec) -> tuple[str, ...]:
    """Which attributes a description of `target` names: always its shape, usually its colour."""
    chosen = {"shape"}
    if rng.random() < 0.85:
        chosen.add("colour")
    if rng.random() < (0.6 if target.texture != "plain" else 0.2) and cfg.texture_prob > 0:
        chosen.add("texture")
    if rng.random() < 0.3:
        chosen.add("size")
    return tuple(a for a in ("size", "colour", "texture", "shape") if a in chosen)


def layout(
    rng: np.random.Generator,
    cfg: GeneratorConfig,
    size: tuple[int, int],
    required: list[ObjectSpec],
    optional: list[ObjectSpec] = (),
) -> list[ObjectSpec]:
    """Placed objects of one image: all of `required` (first, in order), then those of `optional` that fit."""
    placed, extra = place_objects(
        rng, *size, required, optional, min_object_frac=cfg.min_object_frac, rotate=cfg.rotate
    )
    return placed + extra


def make_scene(
    rng: np.random.Generator, cfg: GeneratorConfig, size: tuple[int, int], objects: list[ObjectSpec]
) -> Scene:
    """A scene of placed `objects` on a background (plain if configured) that keeps a colour margin from them."""
    background = choose_background(rng, tuple(objects), plain=cfg.plain_background)
    return Scene(size[0], size[1], background, tuple(objects))


def n_distractors(rng: np.random.Generator, cfg: GeneratorConfig, required: int = 1) -> int:
    """How many distractors to draw beside `required` objects (at least one, at most up to `max_objects`)."""
    return int(rng.integers(1, max(2, cfg.max_objects - required + 1)))
