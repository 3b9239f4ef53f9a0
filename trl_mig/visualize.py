"""Draw grounding boxes on images with Pillow: gold boxes in green, predictions in red, each image labelled.

Generic on purpose: the GRPO trainer draws sampled completions with it and the evaluator's gallery can reuse it.
Boxes are canonical (`xyxy` in `[0, 1]` of the original image, DESIGN.md section 2) and carry the 0-based image they
lie in, so drawing needs no frame and no processor: convert answers with `trl_mig.scoring` first.

Drawing never raises on model output: non-finite boxes are skipped, inverted ones are drawn with their corners
sorted, and boxes reaching past the image are clipped to it (the failure taxonomy, not the picture, says so).

Example:
```python
>>> from PIL import Image
>>> panel = grounding_panel([Image.new("RGB", (80, 60)), Image.new("RGB", (40, 40))],
...                         gold=[((0.1, 0.1, 0.5, 0.5), 1)], pred=[((0.2, 0.2, 0.6, 0.7), 1)], caption="IoU 0.41")
>>> panel.mode, panel.height > 128
('RGB', True)

```
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont


__all__ = ["GOLD_COLOR", "PRED_COLOR", "BoxMark", "draw_boxes", "grounding_panel"]

GOLD_COLOR = (0, 200, 0)
PRED_COLOR = (230, 0, 0)
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
_PAD = 6


@dataclass(frozen=True)
class BoxMark:
    """One box to draw on one image.

    Args:
        box (`Sequence[float]`): canonical `xyxy` in `[0, 1]` of the image.
        color (`tuple[int, int, int]`): outline colour.
        label (`str`, *optional*): text written at the box's top-left corner.
    """

    box: Sequence[float]
    color: tuple[int, int, int]
    label: str | None = None


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _pixel_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    """A canonical box in pixels of a `width` x `height` image: corners sorted, clipped; `None` when not drawable."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = sorted((min(max(x1, 0.0), 1.0), min(max(x2, 0.0), 1.0)))
    y1, y2 = sorted((min(max(y1, 0.0), 1.0), min(max(y2, 0.0), 1.0)))
    return x1 * (width - 1), y1 * (height - 1), x2 * (width - 1), y2 * (height - 1)


def draw_boxes(image: Image.Image, marks: Iterable[BoxMark], line_width: int | None = None) -> Image.Image:
    """Return an RGB copy of `image` with each mark's box outlined (and labelled); the input is left untouched.

    Args:
        image (`PIL.Image.Image`): the image the canonical boxes refer to.
        marks (`Iterable[BoxMark]`): boxes to draw, in order (later ones on top).
        line_width (`int`, *optional*): outline width in pixels; defaults to ~1% of the longer side, at least 2.
    """
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    width, height = out.size
    line_width = line_width or max(2, round(max(width, height) / 100))
    draw = ImageDraw.Draw(out)
    font = _font(max(10, min(width, height) // 16))
    for mark in marks:
        pixels = _pixel_box(mark.box, width, height)
        if pixels is None:
            continue
        draw.rectangle(pixels, outline=mark.color, width=line_width)
        if mark.label:
            left, top, right, bottom = font.getbbox(mark.label)
            text_w, text_h = right - left, bottom - top
            # above the box when there is room, else just inside its top edge
            y = pixels[1] - text_h - 3 if pixels[1] >= text_h + 3 else pixels[1] + line_width
            draw.rectangle((pixels[0], y, pixels[0] + text_w + 3, y + text_h + 3), fill=mark.color)
            draw.text((pixels[0] + 1 - left, y + 1 - top), mark.label, fill=(255, 255, 255), font=font)
    return out


def grounding_panel(
    images: Sequence[Image.Image],
    gold: Iterable[tuple[Sequence[float], int]] = (),
    pred: Iterable[tuple[Sequence[float], int]] = (),
    caption: str | None = None,
    height: int = 256,
    caption_width: int = 100,
    caption_lines: int = 6,
) -> Image.Image:
    """The images of one row side by side, titled `image 1..n`, gold boxes in green and predicted ones in red.

    Args:
        images (`Sequence[PIL.Image.Image]`): the row's images, in order (originals: boxes are canonical).
        gold (`Iterable[tuple[box, int]]`): canonical gold boxes with their 0-based image.
        pred (`Iterable[tuple[box, int]]`): canonical predicted boxes with the 0-based image they are drawn in.
            Boxes naming an image the row does not have are not drawn.
        caption (`str`, *optional*): text under the images (completion, IoU, outcome), wrapped and truncated.
        height (`int`, *optional*, defaults to `256`): every image is scaled to this height (tiny training images
            stay legible, huge ones stay small).
        caption_width (`int`, *optional*, defaults to `100`): characters per caption line.
        caption_lines (`int`, *optional*, defaults to `6`): lines kept (then `...`); text costs most of the drawing.

    Returns:
        `PIL.Image.Image`: one RGB image, ready to save or to hand to a tracker.
    """
    marks: list[list[BoxMark]] = [[] for _ in images]
    for box, index in gold:
        if 0 <= index < len(images):
            marks[index].append(BoxMark(box, GOLD_COLOR, "gold"))
    for box, index in pred:
        if 0 <= index < len(images):
            marks[index].append(BoxMark(box, PRED_COLOR, "pred"))
    tiles = []
    for image, image_marks in zip(images, marks):
        scale = height / max(image.height, 1)
        resized = image.resize((max(1, round(image.width * scale)), height), Image.Resampling.BILINEAR)
        tiles.append(draw_boxes(resized, image_marks))
    title_font, caption_font = _font(14), _font(12)
    title_h = 20
    lines = []
    if caption:
        for paragraph in caption.splitlines() or [""]:
            lines.extend(textwrap.wrap(paragraph, caption_width) or [""])
        lines = lines[:caption_lines] + (["..."] if len(lines) > caption_lines else [])
    caption_h = 16 * len(lines) + (_PAD if lines else 0)
    width = sum(t.width for t in tiles) + _PAD * (len(tiles) + 1) if tiles else 2 * _PAD
    if lines:
        width = max(width, 2 * _PAD + max(round(caption_font.getlength(line)) for line in lines))
    panel = Image.new("RGB", (width, _PAD + title_h + height + _PAD + caption_h), _BACKGROUND)
    draw = ImageDraw.Draw(panel)
    x = _PAD
    for i, tile in enumerate(tiles):
        draw.text((x, _PAD), f"image {i + 1}", fill=_TEXT, font=title_font)
        panel.paste(tile, (x, _PAD + title_h))
        x += tile.width + _PAD
    y = _PAD + title_h + height + _PAD
    for line in lines:
        draw.text((_PAD, y), line, fill=_TEXT, font=caption_font)
        y += 16
    return panel
