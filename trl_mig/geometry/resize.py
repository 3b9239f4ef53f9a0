"""Pure-Python `smart_resize`: the image size a Qwen-VL processor actually feeds the model.

Qwen2.5-VL answers in absolute pixels of the *resized* image, so turning its answer into canonical
coordinates needs that size. Inside the trainers it comes from the processor's real output
(`image_grid_thw`); standalone, rewards compute it here without importing transformers (which
would pull in torch). `tests/test_geometry.py` checks parity with
`transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`.
"""

from __future__ import annotations

import math


#: transformers 5.24 `Qwen2VLImageProcessor` defaults (`size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}`).
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
#: The released Qwen2.5-VL-7B-Instruct `preprocessor_config.json` raises the ceiling to this value.
QWEN2_5_VL_RELEASED_MAX_PIXELS = 12_845_056
#: patch size (14) x spatial merge size (2) for Qwen2-VL and Qwen2.5-VL.
DEFAULT_FACTOR = 28
#: transformers refuses images whose longer side exceeds this multiple of the shorter one.
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = DEFAULT_FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    strict: bool = True,
) -> tuple[int, int]:
    """Return the `(height, width)` the Qwen-VL image processor resizes an image to.

    Both sides become multiples of `factor`, the area lands in `[min_pixels, max_pixels]` and the aspect ratio is
    kept as closely as possible. Same argument order and result order as transformers' function.

    Args:
        height (`int`): original height in pixels.
        width (`int`): original width in pixels.
        factor (`int`, *optional*, defaults to `28`): both sides become multiples of this.
        min_pixels (`int`, *optional*, defaults to `3136`): smallest area.
        max_pixels (`int`, *optional*, defaults to `1003520`): largest area.
        strict (`bool`, *optional*, defaults to `True`):
            Raise `ValueError` like transformers for an aspect ratio above 200:1 (or a non-positive side). With
            `strict=False` (what rewards use: they never raise) the same arithmetic runs without the check, sides
            below 1 pixel count as 1, and the result is always at least `factor` on each side.

    Returns:
        `tuple[int, int]`: the resized `(height, width)`.

    Example:
    ```python
    >>> smart_resize(480, 640)
    (476, 644)
    >>> smart_resize(1, 300, strict=False)
    (28, 980)

    ```
    """
    if strict:
        if height <= 0 or width <= 0:
            raise ValueError(f"image sides must be positive, got height={height}, width={width}")
        ratio = max(height, width) / min(height, width)
        if ratio > MAX_ASPECT_RATIO:
            raise ValueError(f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got {ratio}")
    else:
        height, width = max(height, 1), max(width, 1)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if not strict:
        h_bar, w_bar = max(factor, h_bar), max(factor, w_bar)
    return h_bar, w_bar


def resized_size(
    image_size: tuple[int, int],
    factor: int = DEFAULT_FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """`smart_resize` in the schema's `(width, height)` order, never raising (used by rewards).

    Example:
    ```python
    >>> resized_size((640, 480))
    (644, 476)

    ```
    """
    width, height = image_size
    h, w = smart_resize(int(height), int(width), factor, min_pixels, max_pixels, strict=False)
    return w, h
