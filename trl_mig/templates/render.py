"""Render one schema row: the conversational prompt, the SFT completion and the gold answer, in a declared frame."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame, frame_for_model
from ..geometry.frames import frame_scale
from ..schema import BOX_TAG_RE
from .registry import NO_TARGET_ANSWER, PromptTemplate, check_syntax, get_template


__all__ = [
    "ANSWER_FRAMES",
    "render_answer",
    "render_boxes_in_text",
    "render_completion",
    "render_prompt",
    "resolve_frame",
]

#: frames a model answers in (`coco_xywh` is a storage frame: no template asks for it)
ANSWER_FRAMES = (Frame.QWEN2_VL, Frame.QWEN2_5_VL, Frame.QWEN3_VL, Frame.PIXEL, Frame.NORMALIZED)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def resolve_frame(frame: Any) -> Frame:
    """The answer frame of a frame name, a model, a config or a `model_type` (`trl_mig.geometry.frame_for_model`).

    Example:
    ```python
    >>> resolve_frame("qwen2-5-vl").value, resolve_frame("qwen3_vl_moe").value
    ('qwen2_5_vl', 'qwen3_vl')

    ```
    """
    if isinstance(frame, str):
        try:
            frame = Frame.parse(frame)
        except ValueError:
            frame = frame_for_model(frame)
    elif not isinstance(frame, Frame):
        frame = frame_for_model(frame)
    if frame not in ANSWER_FRAMES:
        known = ", ".join(f.value for f in ANSWER_FRAMES)
        raise ValueError(f"frame {frame.value!r} is a storage frame, not an answer frame; use one of: {known}")
    return frame


def _limits(min_pixels: int | None, max_pixels: int | None, factor: int | None) -> tuple[int, int, int]:
    return (
        DEFAULT_MIN_PIXELS if min_pixels is None else int(min_pixels),
        DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels),
        DEFAULT_FACTOR if factor is None else int(factor),
    )


@dataclass(frozen=True)
class _Geometry:
    """A frame's per-image scale for one row: frame coordinates = canonical * scale."""

    frame: Frame
    scales: tuple[tuple[float, float], ...]

    @classmethod
    def build(cls, frame: Frame, n_images: int, image_sizes, resized_sizes, limits) -> _Geometry:
        scales = []
        for i in range(n_images):
            size = image_sizes[i] if image_sizes is not None and i < len(image_sizes) else None
            resized = resized_sizes[i] if resized_sizes is not None and i < len(resized_sizes) else None
            if frame is not Frame.QWEN2_5_VL:
                resized = None
            if frame.needs_image_size and size is None and resized is None:
                raise ValueError(f"frame {frame.value!r} needs `image_sizes` for image {i + 1} of {n_images}")
            scales.append(frame_scale(frame, size, resized, *limits))
        return cls(frame, tuple(scales))

    @classmethod
    def of_row(cls, row: Mapping[str, Any], frame: Frame, resized_sizes, limits) -> _Geometry:
        sizes, images = row.get("image_sizes"), row.get("images")
        if images is not None and sizes is not None and len(images) != len(sizes):
            raise ValueError(f"{len(images)} images but {len(sizes)} `image_sizes` entries")
        if sizes is None and images is not None:
            sizes = [getattr(img, "size", None) for img in images]  # decoded PIL images
        if not sizes:
            raise ValueError("the row has no images (`image_sizes` / `images`)")
        resized = resized_sizes if resized_sizes is not None else row.get("resized_sizes")
        return cls.build(frame, len(sizes), sizes, resized, limits)

    def coords(self, box: Sequence[float], image: int) -> list[int] | list[float]:
        """A canonical box in this frame for 0-based `image`, rounded as the model writes it (never collapsing)."""
        if not 0 <= image < len(self.scales):
            raise ValueError(f"a box refers to image {image + 1} (1-based) but the row has {len(self.scales)} images")
        if len(box) != 4:
            raise ValueError(f"a box needs four coordinates, got {list(box)!r}")
        sx, sy = self.scales[image]
        steps = 1000 if self.frame is Frame.NORMALIZED else 1  # rounding steps per frame unit: 3 decimals / integers
        out = [0, 0, 0, 0]
        for (lo, hi), scale, (i, j) in zip(((box[0], box[2]), (box[1], box[3])), (sx, sy), ((0, 2), (1, 3))):
            lo, hi, top = float(lo) * scale * steps, float(hi) * scale * steps, round(scale * steps)
            a, b = round(lo), round(hi)
            if b <= a and hi > lo:  # a positive extent stays positive: the one-step box around its centre
                a = max(0, min(math.floor((lo + hi) / 2), top - 1))
                b = a + 1
            out[i], out[j] = a, b
        return [v / steps for v in out] if steps != 1 else out

    def box_text(self, box: Sequence[float], image: int, answer_syntax: str) -> str:
        c = self.coords(box, image)
        if answer_syntax == "box_tokens":
            return f"<|box_start|>({c[0]},{c[1]}),({c[2]},{c[3]})<|box_end|>"
        return "[" + ", ".join(map(str, c)) + "]"

    def frame_sizes(self) -> list[tuple[float, float]] | None:
        """Per-image sizes the instructions state: resized (`qwen2_5_vl`) or original (`pixel`) pixels."""
        return list(self.scales) if self.frame in (Frame.QWEN2_5_VL, Frame.PIXEL) else None


def _render_tags(text: str, geometry: _Geometry, answer_syntax: str) -> str:
    def _sub(match) -> str:
        image = int(match.group(1))
        try:
            box = [float(v) for v in match.group(2).split(",")]
        except ValueError as exc:
            raise ValueError(f"malformed reference box {match.group(0)!r}") from exc
        return f"{geometry.box_text(box, image, answer_syntax)} in image {image + 1}"

    out = BOX_TAG_RE.sub(_sub, text)
    if "<box" in out:
        start = out.index("<box")
        raise ValueError(
            f"unreadable box tag {out[start : start + 60]!r}; write tags with trl_mig.schema.format_box_tag"
        )
    return out


def render_boxes_in_text(
    text: str,
    frame: Frame | str,
    image_sizes: Sequence[Sequence[int]] | None = None,
    resized_sizes: Sequence[Sequence[int]] | None = None,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    factor: int | None = None,
    answer_syntax: str = "json",
) -> str:
    """Re-render every canonical `<box image="i">[...]</box>` tag of `text` in `frame`, for the image it refers to.

    Example:
    ```python
    >>> render_boxes_in_text('the cup (<box image="0">[0.451,0.265,0.519,0.388]</box>)', "qwen2_vl", [(640, 480)])
    'the cup ([451, 265, 519, 388] in image 1)'

    ```
    """
    frame = resolve_frame(frame)
    check_syntax(answer_syntax)
    sizes = image_sizes if image_sizes is not None else resized_sizes
    n = len(sizes) if sizes is not None else 1 + max((int(m.group(1)) for m in BOX_TAG_RE.finditer(text)), default=0)
    geometry = _Geometry.build(frame, n, image_sizes, resized_sizes, _limits(min_pixels, max_pixels, factor))
    return _render_tags(text, geometry, answer_syntax)


def _answer(boxes: Sequence[Sequence[float]], images: Sequence[int], geometry: _Geometry, answer_syntax: str) -> str:
    check_syntax(answer_syntax)
    boxes, images = list(boxes), [int(i) for i in images]
    if not boxes:
        return NO_TARGET_ANSWER
    if len(images) != len(boxes):
        raise ValueError(f"{len(boxes)} gold boxes but {len(images)} `target_image` entries")
    if len(geometry.scales) == 1:
        images = [0 if i == -1 else i for i in images]  # one image: an unknown target can only be that one
    if any(i == -1 for i in images):
        raise ValueError("a gold box of a multi-image row has an unknown image (-1); the answer must name its image")
    if answer_syntax == "box_tokens":
        return " ".join(f"Image-{i + 1}: {geometry.box_text(b, i, answer_syntax)}" for b, i in zip(boxes, images))
    objects = [f'{{"image": {i + 1}, "bbox_2d": {geometry.box_text(b, i, "json")}}}' for b, i in zip(boxes, images)]
    return objects[0] if len(objects) == 1 else "[" + ", ".join(objects) + "]"


def render_answer(
    boxes: Sequence[Sequence[float]],
    images: Sequence[int],
    frame: Frame | str = Frame.QWEN2_5_VL,
    image_sizes: Sequence[Sequence[int]] | None = None,
    resized_sizes: Sequence[Sequence[int]] | None = None,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    factor: int | None = None,
    answer_syntax: str = "json",
) -> str:
    """The text inside `<answer>` for canonical gold boxes: one JSON object, a JSON list, or "no target".

    Args:
        boxes (`Sequence` of 4 `float`): canonical gold boxes; `[]` = no target.
        images (`Sequence[int]`): the 0-based image of each box (written 1-based).
        frame (`Frame` or `str`, *optional*, defaults to `"qwen2_5_vl"`): the answer frame.
        image_sizes (`list` of `(width, height)`, *optional*): original sizes (needed by `qwen2_5_vl`, `pixel`).
        resized_sizes (`list` of `(width, height)`, *optional*): the processor's sizes; win for `qwen2_5_vl`.
        min_pixels, max_pixels, factor (`int`, *optional*): `smart_resize` limits (transformers 5.24 defaults).
        answer_syntax (`str`, *optional*, defaults to `"json"`): `"json"` or `"box_tokens"`.

    Example:
    ```python
    >>> render_answer([[0.451, 0.265, 0.519, 0.388]], [1], "qwen2_vl", image_sizes=[(640, 480)] * 2)
    '{"image": 2, "bbox_2d": [451, 265, 519, 388]}'
    >>> render_answer([[0.1, 0.1, 0.3, 0.5]], [0], "qwen2_5_vl", image_sizes=[(640, 480)])  # resized to 644x476
    '{"image": 1, "bbox_2d": [64, 48, 193, 238]}'
    >>> render_answer([], [], "qwen3_vl")
    '{"image": null, "bbox_2d": []}'

    ```
    """
    frame = resolve_frame(frame)
    sizes = image_sizes if image_sizes is not None else resized_sizes
    n = len(sizes) if sizes is not None else 1 + max([int(i) for i in images], default=0)
    geometry = _Geometry.build(frame, n, image_sizes, resized_sizes, _limits(min_pixels, max_pixels, factor))
    return _answer(boxes, images, geometry, answer_syntax)


def _row_error(row: Mapping[str, Any], exc: Exception) -> ValueError:
    return ValueError(f"row {row.get('id', '?')!r}: {exc}")


def render_prompt(
    row: Mapping[str, Any],
    template: str | PromptTemplate = "mig-think-v1",
    frame: Any = Frame.QWEN2_5_VL,
    *,
    resized_sizes: Sequence[Sequence[int]] | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    factor: int | None = None,
    answer_syntax: str = "json",
    multi_target: bool = False,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """The conversational prompt of a schema row: one user message with the images in order, then one text part (the
    question, reference boxes re-rendered in the frame, and the answer instructions); a `text_first` template
    (`mig-think-brief-v1`) puts the text part first. Bad data raises `ValueError` naming the row id.

    Args:
        row (`Mapping`): a schema row: `question`, `image_sizes` (or decoded `images`), optional `resized_sizes`.
        template (`str` or `PromptTemplate`, *optional*, defaults to `"mig-think-v1"`): the template.
        frame (*optional*, defaults to `"qwen2_5_vl"`): the answer frame, or a model / config / `model_type`.
        resized_sizes (`list` of `(width, height)`, *optional*): the processor's sizes (`qwen2_5_vl`); else the
            row's `resized_sizes`, else `smart_resize` of `image_sizes` with `min_pixels` / `max_pixels` / `factor`.
        min_pixels, max_pixels, factor (`int`, *optional*): `smart_resize` limits (transformers 5.24 defaults).
        answer_syntax (`str`, *optional*, defaults to `"json"`): `"json"` or `"box_tokens"` (Qwen2-VL's native form).
        multi_target (`bool`, *optional*, defaults to `False`): say how to answer several targets (decide per dataset).
        system_prompt (`str`, *optional*): a system message before the user message (none by default).

    Example:
    ```python
    >>> row = {"id": "7", "question": 'Find <box image="0">[0.1,0.2,0.3,0.4]</box> in the 2nd image.',
    ...        "image_sizes": [(640, 480), (800, 600)]}
    >>> prompt = render_prompt(row, "mig-direct-v1", "qwen3_vl")
    >>> [part["type"] for part in prompt[0]["content"]]
    ['image', 'image', 'text']
    >>> prompt[0]["content"][2]["text"].splitlines()[0]
    'Find [100, 200, 300, 400] in image 1 in the 2nd image.'

    ```
    """
    template, frame = get_template(template), resolve_frame(frame)
    try:
        geometry = _Geometry.of_row(row, frame, resized_sizes, _limits(min_pixels, max_pixels, factor))
        question = _render_tags(str(row.get("question") or ""), geometry, answer_syntax).strip()
        n = len(geometry.scales)
        instruction = template.instruction(frame, n, geometry.frame_sizes(), answer_syntax, multi_target)
    except ValueError as exc:
        raise _row_error(row, exc) from exc
    text = {"type": "text", "text": f"{question}\n\n{instruction}" if question else instruction}
    images: list[dict[str, Any]] = [{"type": "image"} for _ in range(n)]
    content = [text, *images] if template.text_first else [*images, text]
    messages = [{"role": "user", "content": content}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    return messages


def render_completion(
    row: Mapping[str, Any],
    template: str | PromptTemplate = "mig-think-v1",
    frame: Any = Frame.QWEN2_5_VL,
    *,
    resized_sizes: Sequence[Sequence[int]] | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    factor: int | None = None,
    answer_syntax: str = "json",
) -> list[dict[str, Any]]:
    """The SFT completion of a row: `[{"role": "assistant", "content": [{"type": "text", "text": ...}]}]`.

    The text is `<think>reasoning</think><answer>...</answer>` for `mig-think-v1` (boxes in `reasoning` re-rendered in
    the frame) and `<answer>...</answer>` for `mig-direct-v1`; the answer comes from `solution` and `target_image`.
    Raises `ValueError` naming the row id when `solution` is null, when the template needs a `reasoning` the row lacks,
    or when the reasoning holds think/answer tags. Arguments as in `render_prompt`.

    Example:
    ```python
    >>> row = {"id": "a", "solution": [[0.1, 0.2, 0.3, 0.4]], "target_image": [1], "image_sizes": [(9, 9), (9, 9)],
    ...        "reasoning": 'Like <box image="0">[0.5,0.5,0.6,0.6]</box>, it is right.'}
    >>> render_completion(row, "mig-think-v1", "qwen3_vl")[0]["content"][0]["text"]
    '<think>Like [500, 500, 600, 600] in image 1, it is right.</think><answer>{"image": 2, "bbox_2d": [100, 200, 300, 400]}</answer>'

    ```
    """
    template, frame = get_template(template), resolve_frame(frame)
    try:
        solution = row.get("solution")
        if solution is None:
            raise ValueError("`solution` is null (unlabeled); a completion needs gold boxes (`[]` = no target)")
        geometry = _Geometry.of_row(row, frame, resized_sizes, _limits(min_pixels, max_pixels, factor))
        reasoning = None
        if template.reasoning:
            reasoning = str(row.get("reasoning") or "").strip()
            if not reasoning:
                raise ValueError(f"template {template.name!r} needs a non-empty `reasoning`")
            if any(tag in reasoning for tag in _TAGS):
                raise ValueError("`reasoning` contains <think>/<answer> tags; store the reasoning text alone")
            reasoning = _render_tags(reasoning, geometry, answer_syntax)
        targets = row.get("target_image")
        answer = _answer(solution, [-1] * len(solution) if targets is None else targets, geometry, answer_syntax)
    except ValueError as exc:
        raise _row_error(row, exc) from exc
    return [{"role": "assistant", "content": [{"type": "text", "text": template.completion_text(answer, reasoning)}]}]
