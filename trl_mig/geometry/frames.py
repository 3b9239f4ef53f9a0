"""Coordinate frames and the conversions between them and the canonical form.

The answer's syntax never tells its frame (Qwen2.5-VL and Qwen3-VL both write JSON `bbox_2d`, one in resized pixels,
the other on a 0-1000 grid), so the frame is always *declared*: by the model's `config.model_type`
(`frame_for_model`), by a reward's `frame` argument, or by a per-row `frame` column.

Canonical form: `xyxy` floats in `[0, 1]` of the *original* image, plus the 0-based index of the image the box is in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Any

from .boxes import Box
from .resize import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, resized_size


class Frame(str, enum.Enum):
    """The coordinate frames trl-mig reads and writes.

    - `qwen2_vl`: 0-1000 grid, written `(x1,y1),(x2,y2)`.
    - `qwen2_5_vl`: absolute pixels of the image after `smart_resize`, written as JSON `bbox_2d`.
    - `qwen3_vl`: 0-1000 grid, written as JSON `bbox_2d`.
    - `pixel`: absolute pixels of the original image.
    - `normalized`: `[0, 1]` of the original image (the canonical frame).
    - `coco_xywh`: original pixels as `(x, y, width, height)`.
    """

    QWEN2_VL = "qwen2_vl"
    QWEN2_5_VL = "qwen2_5_vl"
    QWEN3_VL = "qwen3_vl"
    PIXEL = "pixel"
    NORMALIZED = "normalized"
    COCO_XYWH = "coco_xywh"

    @classmethod
    def parse(cls, value: str | Frame) -> Frame:
        """Accept either spelling (`qwen2-5-vl`, `qwen2_5_vl`, `Qwen2.5-VL`).

        Example:
        ```python
        >>> Frame.parse("qwen2-5-vl"), Frame.parse("Qwen2.5-VL")
        (<Frame.QWEN2_5_VL: 'qwen2_5_vl'>, <Frame.QWEN2_5_VL: 'qwen2_5_vl'>)

        ```
        """
        if isinstance(value, Frame):
            return value
        key = str(value).strip().lower().replace("-", "_").replace(".", "_")
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(f.value for f in cls)
            raise ValueError(f"unknown coordinate frame {value!r}; known frames: {known}") from None

    @property
    def needs_resized_size(self) -> bool:
        """Whether converting this frame needs the processor's resized image size."""
        return self is Frame.QWEN2_5_VL

    @property
    def needs_image_size(self) -> bool:
        """Whether converting this frame needs the original image size."""
        return self in (Frame.QWEN2_5_VL, Frame.PIXEL, Frame.COCO_XYWH)

    @property
    def is_integer(self) -> bool:
        """Whether models write this frame as integers (grids and resized pixels)."""
        return self in (Frame.QWEN2_VL, Frame.QWEN2_5_VL, Frame.QWEN3_VL)


#: `config.model_type` -> frame. Real checkpoints and the tiny test models share these types.
MODEL_TYPE_FRAMES: dict[str, Frame] = {
    "qwen2_vl": Frame.QWEN2_VL,
    "qwen2_5_vl": Frame.QWEN2_5_VL,
    "qwen3_vl": Frame.QWEN3_VL,
    "qwen3_vl_moe": Frame.QWEN3_VL,
}


def frame_for_model(model_or_config: Any) -> Frame:
    """The frame a model answers in, from its `config.model_type` (a model, a config or the type string).

    Example:
    ```python
    >>> frame_for_model("qwen2_5_vl").value
    'qwen2_5_vl'

    ```
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    if model_type in MODEL_TYPE_FRAMES:
        return MODEL_TYPE_FRAMES[model_type]
    known = ", ".join(sorted(MODEL_TYPE_FRAMES))
    raise ValueError(
        f"no coordinate frame is known for model_type {model_type!r} (known: {known}); "
        f"declare it explicitly, e.g. `frame='qwen2_5_vl'` or `--frame qwen2_5_vl`"
    )


def frame_scale(
    frame: Frame,
    image_size: Sequence[int] | None,
    resized: Sequence[int] | None,
    min_pixels: int,
    max_pixels: int,
    factor: int,
) -> tuple[float, float]:
    """Width and height of the frame's coordinate space for one image: canonical = frame / scale (xyxy)."""
    if frame is Frame.NORMALIZED:
        return 1.0, 1.0
    if frame in (Frame.QWEN2_VL, Frame.QWEN3_VL):
        return 1000.0, 1000.0
    if frame is Frame.QWEN2_5_VL and resized is not None:
        return float(resized[0]), float(resized[1])
    if image_size is None:
        raise ValueError(f"frame {frame.value!r} needs the original image size `(width, height)`; got none")
    if frame is Frame.QWEN2_5_VL:
        return tuple(float(v) for v in resized_size(image_size, factor, min_pixels, max_pixels))  # type: ignore[return-value]
    width, height = float(image_size[0]), float(image_size[1])
    if not (0 < width < math.inf and 0 < height < math.inf):  # else a ZeroDivisionError or a silent NaN downstream
        raise ValueError(
            f"frame {frame.value!r} needs a positive image size `(width, height)`; got {tuple(image_size)!r}"
        )
    return width, height


def _clip01(value: float) -> float:
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else value


def to_canonical(
    box: Sequence[float],
    frame: Frame | str,
    image_size: Sequence[int] | None = None,
    resized_size: Sequence[int] | None = None,
    *,
    clip: bool = True,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    factor: int = DEFAULT_FACTOR,
) -> Box:
    """Convert one box from `frame` to canonical `xyxy` in `[0, 1]` of the original image.

    Args:
        box (`Sequence[float]`): four numbers in `frame` (`xywh` for `coco_xywh`, `xyxy` otherwise).
        frame (`Frame` or `str`): the declared frame.
        image_size (`(width, height)`, *optional*): original size; needed by `pixel`, `coco_xywh`, and by
            `qwen2_5_vl` when `resized_size` is not given.
        resized_size (`(width, height)`, *optional*): the processor's resized size (`qwen2_5_vl`); computed with
            `smart_resize` from `image_size` and the pixel limits when absent.
        clip (`bool`, *optional*, defaults to `True`): clip to `[0, 1]` (box rule 4). Order is never changed.
        min_pixels, max_pixels, factor: `smart_resize` limits used when `resized_size` is computed.

    Example:
    ```python
    >>> to_canonical([100, 50, 300, 150], "qwen2_5_vl", image_size=(640, 480))  # resized to 644x476
    (0.15527950310559005, 0.10504201680672269, 0.4658385093167702, 0.31512605042016806)
    >>> to_canonical([10, 10, 20, 40], "coco_xywh", image_size=(100, 100))
    (0.1, 0.1, 0.3, 0.5)

    ```
    """
    frame = Frame.parse(frame)
    x1, y1, a, b = (float(v) for v in box)
    x2, y2 = (x1 + a, y1 + b) if frame is Frame.COCO_XYWH else (a, b)
    sx, sy = frame_scale(frame, image_size, resized_size, min_pixels, max_pixels, factor)
    out = (x1 / sx, y1 / sy, x2 / sx, y2 / sy)
    if clip:
        out = tuple(_clip01(v) for v in out)
    return out  # type: ignore[return-value]


def from_canonical(
    box: Sequence[float],
    frame: Frame | str,
    image_size: Sequence[int] | None = None,
    resized_size: Sequence[int] | None = None,
    *,
    integer: bool | None = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    factor: int = DEFAULT_FACTOR,
) -> tuple[float, ...]:
    """Convert a canonical box into `frame`, e.g. to render a gold answer for a given model.

    Args:
        integer (`bool`, *optional*): round to integers; defaults to `frame.is_integer` (what the model writes).
        Other arguments as in `to_canonical`.

    Example:
    ```python
    >>> from_canonical([0.451, 0.265, 0.519, 0.388], "qwen2_vl")
    (451, 265, 519, 388)
    >>> from_canonical([0.1, 0.1, 0.3, 0.5], "coco_xywh", image_size=(100, 100))
    (10.0, 10.0, 20.0, 40.0)

    ```
    """
    frame = Frame.parse(frame)
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = frame_scale(frame, image_size, resized_size, min_pixels, max_pixels, factor)
    out: tuple[float, ...] = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    if frame is Frame.COCO_XYWH:
        out = (out[0], out[1], out[2] - out[0], out[3] - out[1])
    if frame.is_integer if integer is None else integer:
        return tuple(int(round(v)) for v in out)
    return tuple(round(v, 10) for v in out)
