"""Scoring one answer against its gold: the logic the rewards, the metric and the evaluator share.

Turns a parsed answer into canonical form for its row (declared frame, original and resized image sizes) and
measures it against the gold, so that a reward and a metric can never disagree about the same completion.

Which image a box is converted in (`scoring_image`): the image the answer names, when the row has it (a box lies in
the image it is named for, and the canonical form is relative to that image); otherwise the target image when it is
known; otherwise image 0. Box-only scores (`acc@t`, the benchmarks' rule) compare with the gold
box whatever image the answer names; image-aware scores (rewards, `strict_acc@t`) also require the right image, and
an answer that names no image when the target is known counts as the wrong image.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from math import isfinite
from numbers import Integral
from typing import Any

from .geometry import (
    DEFAULT_FACTOR,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    Box,
    Frame,
    iou,
    match_boxes,
)
from .geometry.frames import frame_scale
from .geometry.resize import resized_size
from .parsing import Prediction, parse_answer


__all__ = ["FrameSpec", "Outcome", "canonical_box", "score_multi", "score_single", "scoring_image"]


@dataclass(frozen=True)
class FrameSpec:
    """A declared frame and the processor pixel limits used when resized sizes must be computed.

    Args:
        frame (`Frame` or `str`, *optional*, defaults to `"qwen2_5_vl"`): the frame answers are written in.
        min_pixels (`int`, *optional*, defaults to `3136`): `smart_resize` lower bound.
        max_pixels (`int`, *optional*, defaults to `1003520`): `smart_resize` upper bound (transformers 5.24
            default; the released Qwen2.5-VL-7B-Instruct processor uses `12845056`).
        factor (`int`, *optional*, defaults to `28`): patch size x merge size.
    """

    frame: Frame | str = Frame.QWEN2_5_VL
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    factor: int = DEFAULT_FACTOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", Frame.parse(self.frame))
        if not (
            isinstance(self.factor, Integral) and self.factor >= 1
        ):  # 0 divided by zero on the first scored answer
            raise ValueError(f"factor must be a positive integer (patch size x merge size), got {self.factor!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"need 0 < min_pixels <= max_pixels, got min_pixels={self.min_pixels}, max_pixels={self.max_pixels}"
            )

    def with_frame(self, frame: Frame | str | None) -> FrameSpec:
        """This spec with a per-row `frame` override (the column wins over the instance)."""
        if frame is None or Frame.parse(frame) is self.frame:
            return self
        return FrameSpec(frame, self.min_pixels, self.max_pixels, self.factor)


_SIZED_FRAMES = frozenset(f for f in Frame if f.needs_image_size)


@functools.lru_cache(maxsize=65536)
def _cached_resized(size: tuple[int, int], factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    return resized_size(size, factor, min_pixels, max_pixels)


def scoring_image(target: int, named: int | None, n_images: int | None) -> int:
    """Index of the image whose size converts the answer (see the module docstring); `n_images=None`: unknown."""
    if named is not None and named >= 0 and (n_images is None or named < n_images):
        return named
    if target >= 0 and (n_images is None or target < n_images):
        return target
    return 0


def _n_images(image_sizes: Sequence[Any] | None, resized_sizes: Sequence[Any] | None) -> int | None:
    """How many images a row has, when the row says (frames on a fixed grid need no sizes)."""
    if image_sizes is not None:
        return len(image_sizes)
    return len(resized_sizes) if resized_sizes is not None else None


def canonical_box(
    box: Sequence[float],
    image: int,
    spec: FrameSpec,
    image_sizes: Sequence[Sequence[int]] | None,
    resized_sizes: Sequence[Sequence[int]] | None,
    clip: bool = True,
) -> Box | None:
    """Convert one answer box for image `image` of a row to canonical form; `None` if it cannot be converted.

    `clip=False` keeps out-of-image coordinates (the trainers' failure taxonomy judges bounds with it).
    """
    frame = spec.frame
    size = resized = None
    if frame in _SIZED_FRAMES:  # set lookups: Enum properties cost ~0.4 us each on this hot path
        if resized_sizes is not None and frame is Frame.QWEN2_5_VL and image < len(resized_sizes):
            resized = tuple(resized_sizes[image])
        elif image_sizes is not None and image < len(image_sizes):
            width, height = image_sizes[image]
            size = (int(width), int(height))
            if frame is Frame.QWEN2_5_VL:
                resized = _cached_resized(size, spec.factor, spec.min_pixels, spec.max_pixels)
        else:
            return None
    try:
        x1, y1, x2, y2 = map(float, box)
        if frame is Frame.COCO_XYWH:
            x2, y2 = x1 + x2, y1 + y2
        sx, sy = frame_scale(frame, size, resized, spec.min_pixels, spec.max_pixels, spec.factor)
        x1, y1, x2, y2 = x1 / sx, y1 / sy, x2 / sx, y2 / sy
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        return None
    if not (isfinite(x1) and isfinite(y1) and isfinite(x2) and isfinite(y2)):
        return None  # box rule 2: a non-finite coordinate is invalid (clipping must not make it valid)
    if not clip:
        return x1, y1, x2, y2
    # box rule 4, inlined from `to_canonical(..., clip=True)`: this is the reward hot path
    return (min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0), min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0))


@dataclass(slots=True)
class Outcome:
    """How one answer scores against a single gold box.

    Args:
        prediction (`Prediction` or `None`): the parse (`None` = unparsable).
        box (`Box` or `None`): the first predicted box, canonical; `None` when unparsable or not convertible.
        image (`int` or `None`): the 0-based image the answer names for that box.
        iou (`float`): box-only IoU with the first gold box (0 when there is no box).
        right_image (`bool` or `None`): whether the named image is the target; `None` when the target is unknown.
    """

    prediction: Prediction | None
    box: Box | None
    image: int | None
    iou: float
    right_image: bool | None

    @property
    def strict_iou(self) -> float:
        """IoU that also requires the right image where it is known (what the rewards pay)."""
        return 0.0 if self.right_image is False else self.iou


def score_single(
    completion: Any,
    gold: Sequence[float],
    target: int,
    spec: FrameSpec,
    image_sizes: Sequence[Sequence[int]] | None = None,
    resized_sizes: Sequence[Sequence[int]] | None = None,
) -> Outcome:
    """Score the first box of an answer (raw text, messages or a `Prediction`) against one canonical gold box.

    Example:
    ```python
    >>> spec = FrameSpec("qwen2_vl")
    >>> out = score_single('{"image": 2, "bbox_2d": [100, 100, 500, 500]}', [0.1, 0.1, 0.5, 0.5], 1, spec)
    >>> round(out.iou, 6), out.right_image
    (1.0, True)

    ```
    """
    prediction = completion if isinstance(completion, Prediction) or completion is None else parse_answer(completion)
    if prediction is None or not prediction.boxes:
        return Outcome(prediction, None, None, 0.0, None if target < 0 else False)
    named = prediction.image
    where = scoring_image(target, named, _n_images(image_sizes, resized_sizes))
    box = canonical_box(prediction.box, where, spec, image_sizes, resized_sizes)
    right = None if target < 0 else named == target
    return Outcome(prediction, box, named, iou(box, gold) if box is not None else 0.0, right)


def score_multi(
    completion: Any,
    gold: Sequence[Sequence[float]],
    targets: Sequence[int],
    spec: FrameSpec,
    image_sizes: Sequence[Sequence[int]] | None = None,
    resized_sizes: Sequence[Sequence[int]] | None = None,
) -> float:
    """Several gold boxes across images: optimal one-to-one IoU matching per image, over `max(#pred, #gold)`.

    `[]` gold with an explicit "no target" answer scores 1; boxes where there is no target, or "no target" where there
    is one, score 0. When every gold image is unknown (`-1`), boxes match across images; otherwise predictions that
    name no image, or an image the row does not have, match nothing (and still count in `#pred`).
    """
    prediction = completion if isinstance(completion, Prediction) or completion is None else parse_answer(completion)
    if prediction is None:
        return 0.0
    if not gold:
        return 1.0 if prediction.no_target and not prediction.boxes else 0.0
    if not prediction.boxes:
        return 0.0
    n_images = _n_images(image_sizes, resized_sizes)
    any_image = all(t < 0 for t in targets)
    groups: dict[int, tuple[list[Box], list[Sequence[float]]]] = {}
    for box, named in zip(prediction.boxes, prediction.images):
        if not any_image and (named is None or named < 0 or (n_images is not None and named >= n_images)):
            continue  # unmatched: still counts in max(#pred, #gold)
        where = scoring_image(-1, named, n_images)
        canon = canonical_box(box, where, spec, image_sizes, resized_sizes)
        if canon is not None:
            groups.setdefault(-1 if any_image else where, ([], []))[0].append(canon)
    for box, target in zip(gold, targets):
        groups.setdefault(-1 if any_image else target, ([], []))[1].append(box)
    total = 0.0
    for preds, golds in groups.values():
        if not preds or not golds:
            continue
        if len(preds) == 1 and len(golds) == 1:
            total += iou(preds[0], golds[0])
        else:
            total += float(match_boxes(preds, golds)[1].sum())
    return total / max(len(prediction.boxes), len(gold))
