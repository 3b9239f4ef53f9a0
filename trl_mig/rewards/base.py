"""Shared plumbing of the grounding rewards: reading TRL's per-row keyword columns, once, the same way.

TRL calls a reward as `reward(prompts=..., completions=..., completion_ids=..., **columns)`, every dataset column
arriving as a list with one entry per completion. This module turns those lists into validated rows. Errors in the
*data* (a malformed gold box, columns of the wrong length, a frame that needs image sizes nobody gave) raise
`ValueError` naming the row and the field; model output is never a reason to raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame
from ..scoring import FrameSpec


@dataclass(slots=True)
class Row:
    """One completion with its gold, as a reward sees it."""

    completion: Any
    gold: list[tuple[float, float, float, float]] | None
    targets: list[int]
    spec: FrameSpec
    image_sizes: Sequence[Sequence[int]] | None
    resized_sizes: Sequence[Sequence[int]] | None


def _column(name: str, values: Sequence[Any] | None, n: int) -> Sequence[Any]:
    if values is None:
        return [None] * n
    if len(values) != n:
        raise ValueError(f"column `{name}` has {len(values)} entries for {n} completions; pass one per completion")
    return values


def _row_label(i: int, ids: Sequence[Any]) -> str:
    return f"row {i} (id={ids[i]!r})" if ids[i] is not None else f"row {i}"


def _gold_boxes(value: Any, i: int, ids: Sequence[Any]) -> list[tuple[float, float, float, float]] | None:
    if value is None:
        return None
    boxes = list(value)
    if boxes and not isinstance(boxes[0], (list, tuple)) and not hasattr(boxes[0], "__len__"):
        boxes = [boxes]  # a single flat box `[x1, y1, x2, y2]`
    out = []
    for box in boxes:
        try:
            coords = tuple(map(float, box))
        except (TypeError, ValueError):
            coords = ()  # not numbers: the data error below names the row
        # sum() is NaN or inf when any coordinate is (canonical boxes never come near overflow)
        if len(coords) != 4 or not math.isfinite(sum(coords)):
            raise ValueError(
                f"{_row_label(i, ids)}: `solution` boxes must be four finite canonical coordinates, got {list(box)!r}; "
                "repair gold boxes at build time (trl_mig.geometry.repair_box)"
            )
        out.append(coords)
    return out


def _targets(value: Any, n_gold: int, i: int, ids: Sequence[Any]) -> list[int]:
    if value is None:
        return [-1] * n_gold
    try:
        targets = [int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{_row_label(i, ids)}: `target_image` must be 0-based image indices, got {value!r}"
        ) from None
    if len(targets) == 1 and n_gold > 1:
        targets = targets * n_gold
    if len(targets) != n_gold:
        raise ValueError(f"{_row_label(i, ids)}: `target_image` has {len(targets)} entries for {n_gold} gold boxes")
    return targets


def _check_sizes(sizes: Any, targets: list[int], i: int, ids: Sequence[Any]) -> None:
    """`image_sizes` of a labelled row: positive finite `(width, height)` pairs, one per image a target names."""
    try:
        ok = all(len(s) == 2 and all(math.isfinite(float(v)) and float(v) > 0 for v in s) for s in sizes)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{_row_label(i, ids)}: `image_sizes` must be positive (width, height) pairs, got {sizes!r}")
    if any(t >= len(sizes) for t in targets):
        raise ValueError(
            f"{_row_label(i, ids)}: `target_image` {targets} names an image beyond its {len(sizes)} sizes"
        )


def _sizes_from_images(images: Any) -> list[tuple[int, int]] | None:
    """Original sizes read from already-decoded PIL images (`.size` is an attribute: no file is opened)."""
    if images is None:
        return None
    if not isinstance(images, (list, tuple)):
        images = [images]
    sizes = [getattr(img, "size", None) for img in images]
    return sizes if sizes and all(isinstance(s, tuple) and len(s) == 2 for s in sizes) else None


class GroundingReward:
    """Base of the configurable grounding rewards: frame, pixel limits, a stable per-instance `__name__`.

    Args:
        frame (`Frame` or `str`, *optional*, defaults to `"qwen2_5_vl"`):
            Frame answers are written in; a per-row `frame` column overrides it.
        min_pixels (`int`, *optional*, defaults to `3136`), max_pixels (`int`, *optional*, defaults to `1003520`),
        factor (`int`, *optional*, defaults to `28`):
            `smart_resize` limits, used for `qwen2_5_vl` when no `resized_sizes` column is given.
    """

    base_name: str = "grounding_reward"

    def __init__(
        self,
        frame: Frame | str = Frame.QWEN2_5_VL,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        factor: int = DEFAULT_FACTOR,
    ) -> None:
        self.spec = FrameSpec(frame, min_pixels, max_pixels, factor)
        self.__name__ = self.base_name + self._name_suffix()

    def _name_suffix(self) -> str:
        parts = []
        if self.spec.frame is not Frame.QWEN2_5_VL:
            parts.append(self.spec.frame.value)
        if (self.spec.min_pixels, self.spec.max_pixels, self.spec.factor) != (
            DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, DEFAULT_FACTOR,
        ):  # fmt: skip
            parts.append(f"px{self.spec.min_pixels}-{self.spec.max_pixels}-f{self.spec.factor}")
        return "".join(f"_{p}" for p in parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, spec={self.spec!r})"

    def rows(
        self,
        completions: Sequence[Any],
        solution: Sequence[Any] | None,
        target_image: Sequence[Any] | None,
        image_sizes: Sequence[Any] | None,
        resized_sizes: Sequence[Any] | None,
        frame: Sequence[Any] | None,
        kwargs: dict[str, Any],
    ) -> Iterator[Row]:
        """Validated rows; raises `ValueError` naming the row for data errors, never for model output."""
        n = len(completions)
        if solution is None:
            raise ValueError(f"{self.__name__} needs a `solution` column (canonical gold boxes per row)")
        solution = _column("solution", solution, n)
        target_image = _column("target_image", target_image, n)
        image_sizes = _column("image_sizes", image_sizes, n)
        resized_sizes = _column("resized_sizes", resized_sizes, n)
        frames = _column("frame", frame, n)
        images = _column("images", kwargs.get("images"), n)
        ids = _column("id", kwargs.get("id"), n)
        for i in range(n):
            spec = self.spec.with_frame(frames[i])
            gold = _gold_boxes(solution[i], i, ids)
            targets = _targets(target_image[i], len(gold), i, ids) if gold else []
            sizes = image_sizes[i] if image_sizes[i] is not None else _sizes_from_images(images[i])
            if gold and sizes is not None:
                _check_sizes(sizes, targets, i, ids)
            if gold and spec.frame.needs_image_size and sizes is None and resized_sizes[i] is None:
                raise ValueError(
                    f"{_row_label(i, ids)}: frame {spec.frame.value!r} needs the `image_sizes` column (original (width, height) "
                    "per image) or `resized_sizes`; the MIG builders write `image_sizes`"
                )
            yield Row(completions[i], gold, targets, spec, sizes, resized_sizes[i])
