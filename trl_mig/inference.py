"""Ground a question in a few images with a trained model: boxes in original pixels, ready to draw.

`ground(model, processor, images, question)` is the one-call inference path. It reuses, unchanged, every piece the
trainers and the evaluator use, so an answer is prompted, generated, decoded and read here exactly as it was during
training and evaluation:

1. the prompt is a schema row rendered with the prompt template (`trl_mig.templates.render_prompt`), in the frame
   the model answers in (`config.model_type`, DESIGN.md section 2) and with the processor's pixel limits, which
   decide the resized sizes a `qwen2_5_vl` prompt states;
2. generation and decoding are `trl_mig.sampling.generation.HFGenerator`'s, greedy by default (cut at the first EOS,
   `skip_special_tokens=True`, as TRL decodes GRPO completions);
3. the answer is read by `trl_mig.parsing.parse_answer` and each box is converted from the declared frame to canonical
   form by `trl_mig.scoring.canonical_box`, then to pixels of the original image it names.

The conversion step alone is `boxes_from_answer` / `GroundingResult.from_answer`: pure Python, no torch.

Which image a box belongs to: the image the answer names (1-based in the text, 0-based here). A box that names no
image belongs to image 0 when there is only one image; with several images, or when the answer names an image that
does not exist (`"image": 0`, `"image": 5` of 3), the box is kept with `image=None` and converted as if it were in
image 0 (the evaluator's fallback, `trl_mig.scoring.scoring_image`): its `box` then only means something if the
images share a size, and `GroundingResult.draw` does not draw it. Coordinates outside the image are clipped to it;
boxes with non-finite coordinates are dropped. Model output never raises: unparsable text gives no boxes and
`parsed=False`, and the text is kept.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from .geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Box, Frame
from .parsing import Prediction, parse_answer
from .scoring import FrameSpec, canonical_box
from .templates.registry import PromptTemplate
from .visualize import PRED_COLOR, BoxMark, draw_boxes


__all__ = ["DEFAULT_TEMPLATE", "GroundedBox", "GroundingResult", "boxes_from_answer", "ground", "load_images"]

#: the template `render_prompt`, the trainer configs and the sampler default to
DEFAULT_TEMPLATE = "mig-think-v1"
#: generation settings `HFGenerator` owns: passing them in `generation_kwargs` would break its batching or decoding
_RESERVED_GENERATION_KWARGS = frozenset(
    {"max_new_tokens", "num_return_sequences", "do_sample", "pad_token_id", "eos_token_id", "input_ids"}
)
#: settings `HFGenerator` itself takes (it turns sampling on for `temperature > 0`)
_SAMPLER_KWARGS = ("temperature", "top_p", "top_k")

ImageInput = Image.Image | str | os.PathLike


@dataclass(frozen=True)
class GroundedBox:
    """One box of an answer, in pixels of the original image it lies in.

    Args:
        image (`int` or `None`): 0-based index of the image; `None` when the answer names no image (with several
            images) or one that does not exist (see the module docstring).
        box (`tuple[float, float, float, float]`): `(x1, y1, x2, y2)` in original pixels, clipped to the image.
        canonical (`tuple[float, float, float, float]`): the same box in `[0, 1]` of the image (DESIGN.md section 2),
            what the rewards and the metrics compare.
        label (`str`): display text for drawings, `"box 1"`, `"box 2"`, ... in answer order.
    """

    image: int | None
    box: Box
    canonical: Box
    label: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: boxes as lists."""
        return {"image": self.image, "box": list(self.box), "canonical": list(self.canonical), "label": self.label}


@dataclass
class GroundingResult:
    """What `ground` returns: the raw answer, the boxes it gives in original pixels, and how it was read.

    Args:
        text (`str`): the decoded answer, exactly as generated (special tokens skipped).
        boxes (`list[GroundedBox]`): the answer's boxes, in answer order; `[]` when unparsable or "no target".
        no_target (`bool`): the answer says explicitly that no image contains the target.
        parsed (`bool`): whether the answer could be read at all (`False`: `boxes` is empty because of the text,
            not because the model found nothing).
        frame (`str`): the coordinate frame the answer was read in.
        image_sizes (`list[tuple[int, int]]`): original `(width, height)` of each input image.
    """

    text: str
    boxes: list[GroundedBox] = field(default_factory=list)
    no_target: bool = False
    parsed: bool = False
    frame: str = Frame.QWEN2_5_VL.value
    image_sizes: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def from_answer(
        cls,
        text: str,
        image_sizes: Sequence[Sequence[int]],
        *,
        frame: Frame | str,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        factor: int = DEFAULT_FACTOR,
        resized_sizes: Sequence[Sequence[int]] | None = None,
    ) -> GroundingResult:
        """Read a model answer into a result without running a model (see `boxes_from_answer` for the arguments)."""
        sizes = [(int(w), int(h)) for w, h in image_sizes]
        spec = FrameSpec(frame, min_pixels, max_pixels, factor)
        prediction = parse_answer(text)
        boxes = _grounded_boxes(prediction, sizes, spec, resized_sizes) if prediction is not None else []
        no_target = bool(prediction is not None and prediction.no_target and not prediction.boxes)
        return cls(text, boxes, no_target, prediction is not None, spec.frame.value, sizes)

    def draw(
        self, images: Sequence[ImageInput], color: tuple[int, int, int] = PRED_COLOR, line_width: int | None = None
    ) -> list[Image.Image]:
        """Copies of `images` (the inputs of `ground`, in order) with each box outlined and labelled.

        Boxes with `image=None` are not drawn: the answer did not say which image they are in. The inputs are left
        untouched; every output has its input's size.
        """
        loaded = load_images(images)
        if len(loaded) != len(self.image_sizes):
            raise ValueError(f"the answer was read for {len(self.image_sizes)} images, got {len(loaded)} to draw on")
        marks: list[list[BoxMark]] = [[] for _ in loaded]
        for grounded in self.boxes:
            if grounded.image is not None:
                marks[grounded.image].append(BoxMark(grounded.canonical, color, grounded.label))
        return [draw_boxes(image, image_marks, line_width) for image, image_marks in zip(loaded, marks)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for logs, `json.dumps`, a web API)."""
        out = asdict(self)
        out["boxes"] = [b.to_dict() for b in self.boxes]
        out["image_sizes"] = [list(size) for size in self.image_sizes]
        return out


def _grounded_boxes(
    prediction: Prediction,
    sizes: list[tuple[int, int]],
    spec: FrameSpec,
    resized_sizes: Sequence[Sequence[int]] | None,
) -> list[GroundedBox]:
    """Each parsed box in canonical form, then in original pixels of the image it names (module docstring rule)."""
    out: list[GroundedBox] = []
    for box, named in zip(prediction.boxes, prediction.images):
        image = _owning_image(named, len(sizes))
        canonical = canonical_box(box, 0 if image is None else image, spec, sizes, resized_sizes)
        if canonical is None:
            continue  # a non-finite coordinate: nothing to report in pixels
        width, height = sizes[0 if image is None else image]
        x1, y1, x2, y2 = canonical
        pixels = (x1 * width, y1 * height, x2 * width, y2 * height)
        out.append(GroundedBox(image, pixels, canonical, f"box {len(out) + 1}"))
    return out


def _owning_image(named: int | None, n_images: int) -> int | None:
    """The 0-based image a box lies in: the named one if it exists, the only one if none is named, else unknown."""
    if named is None:
        return 0 if n_images == 1 else None
    return named if 0 <= named < n_images else None


def boxes_from_answer(
    text: str,
    image_sizes: Sequence[Sequence[int]],
    *,
    frame: Frame | str,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    factor: int = DEFAULT_FACTOR,
    resized_sizes: Sequence[Sequence[int]] | None = None,
) -> list[GroundedBox]:
    """The boxes of a model answer in original pixels of the images they name; `[]` when the text cannot be read.

    The pure conversion step of `ground`, with no model: useful to read answers produced elsewhere (a server, vLLM).

    Args:
        text (`str`): the model's answer, e.g. `<think>...</think><answer>{"image": 2, "bbox_2d": [...]}</answer>`.
        image_sizes (`list` of `(width, height)`): original sizes of the images, in prompt order.
        frame (`Frame` or `str`): the frame the answer is written in (`trl_mig.geometry.frame_for_model(model)`).
        min_pixels, max_pixels, factor (`int`, *optional*): the processor's `smart_resize` limits; only `qwen2_5_vl`
            uses them (its coordinates are pixels of the *resized* image).
        resized_sizes (`list` of `(width, height)`, *optional*): the processor's real resized sizes; win over the
            limits for `qwen2_5_vl`.

    Example:
    ```python
    >>> boxes = boxes_from_answer('<answer>{"image": 2, "bbox_2d": [250, 500, 750, 1000]}</answer>',
    ...                           [(800, 600), (640, 480)], frame="qwen3_vl")
    >>> boxes[0].image, boxes[0].box
    (1, (160.0, 240.0, 480.0, 480.0))

    ```
    """
    return GroundingResult.from_answer(
        text,
        image_sizes,
        frame=frame,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        factor=factor,
        resized_sizes=resized_sizes,
    ).boxes


def load_images(images: ImageInput | Sequence[ImageInput]) -> list[Image.Image]:
    """PIL images from images, local paths or URLs (`transformers.image_utils.load_image`: RGB, EXIF-rotated).

    Original pixels are those of the loaded image, after EXIF rotation: what the model sees and what is drawn on.
    """
    if isinstance(images, (Image.Image, str, os.PathLike)):
        images = [images]
    loaded = []
    for image in images:
        if isinstance(image, Image.Image):
            loaded.append(image)
            continue
        from transformers.image_utils import load_image

        loaded.append(load_image(os.fspath(image)))
    if not loaded:
        raise ValueError("ground needs at least one image")
    return loaded


def _pixel_limits(processor: Any, min_pixels: int | None, max_pixels: int | None) -> dict[str, int]:
    """The processor's `smart_resize` limits, explicit values winning, defaults where it says nothing."""
    from .templates import pixel_limits_from_processor

    limits = {"min_pixels": DEFAULT_MIN_PIXELS, "max_pixels": DEFAULT_MAX_PIXELS, "factor": DEFAULT_FACTOR}
    limits.update(pixel_limits_from_processor(processor))
    if min_pixels is not None:
        limits["min_pixels"] = int(min_pixels)
    if max_pixels is not None:
        limits["max_pixels"] = int(max_pixels)
    if not 0 < limits["min_pixels"] <= limits["max_pixels"]:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {limits['min_pixels']} and {limits['max_pixels']}")
    return limits


def _with_pixel_limits(processor: Any, limits: Mapping[str, int]) -> Any:
    """`processor` itself when its limits already match, else a copy resizing with `limits`.

    The prompt states, and the answer is read with, the sizes these limits give: the model must see the images at
    those sizes too. The caller's processor is never changed.
    """
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    wanted = {"shortest_edge": limits["min_pixels"], "longest_edge": limits["max_pixels"]}
    if size is None or "longest_edge" not in size or all(size.get(k) == v for k, v in wanted.items()):
        return processor
    copied = copy.copy(processor)
    copied.image_processor = copy.deepcopy(image_processor)
    copied.image_processor.size = {**dict(size), **wanted}
    return copied


class _GenerateWith:
    """A model whose `generate` adds the caller's extra settings (`num_beams`, `repetition_penalty`, ...).

    `HFGenerator` owns the prompt batching, the EOS cut and the decoding; wrapping the model keeps all of that its
    code while letting `generation_kwargs` reach `model.generate`.
    """

    def __init__(self, model: Any, extra: Mapping[str, Any]) -> None:
        self._model, self._extra = model, dict(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, **kwargs: Any) -> Any:
        return self._model.generate(**kwargs, **self._extra)


def _generator(model: Any, processor: Any, max_new_tokens: int, generation_kwargs: Mapping[str, Any] | None) -> Any:
    """An `HFGenerator`, greedy unless `generation_kwargs` sets a `temperature > 0`."""
    from .sampling.generation import HFGenerator

    extra = dict(generation_kwargs or {})
    reserved = sorted(_RESERVED_GENERATION_KWARGS & extra.keys())
    if reserved:
        raise ValueError(
            f"generation_kwargs may not set {reserved}: use `max_new_tokens`, or `temperature` > 0 to sample"
        )
    sampler = {key: extra.pop(key) for key in _SAMPLER_KWARGS if key in extra}
    sampler.setdefault("temperature", 0.0)
    return HFGenerator(
        _GenerateWith(model, extra) if extra else model, processor, max_new_tokens=max_new_tokens, **sampler
    )


def ground(
    model: Any,
    processor: Any,
    images: ImageInput | Sequence[ImageInput],
    question: str,
    *,
    template: str | PromptTemplate = DEFAULT_TEMPLATE,
    frame: Frame | str | None = None,
    max_new_tokens: int = 1024,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    multi_target: bool = False,
    generation_kwargs: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> GroundingResult:
    """Ask `model` where `question`'s target is in `images`; the boxes come back in original pixels of each image.

    Args:
        model: a Qwen-VL-class image-text-to-text model, on its device, in eval mode.
        processor: its processor (`AutoProcessor.from_pretrained`; run `import trl_mig.models` first for checkpoints
            saved with trl-mig's processor classes, such as the tiny test models).
        images: PIL images, local paths or URLs, in the order the question counts them (or a single one).
        question (`str`): what to find, without model markup; reference boxes may be written
            `<box image="0">[x1,y1,x2,y2]</box>` in canonical form (DESIGN.md section 3).
        template (`str` or `PromptTemplate`, *optional*, defaults to `"mig-think-v1"`): the prompt template the model
            was trained with (`"mig-direct-v1"` for models answering without reasoning).
        frame (`Frame` or `str`, *optional*): the frame the model answers in; defaults to the one of
            `model.config.model_type` (`qwen2_5_vl`: pixels of the resized image; `qwen2_vl` / `qwen3_vl`: 0-1000).
        max_new_tokens (`int`, *optional*, defaults to `1024`): longest answer.
        min_pixels, max_pixels (`int`, *optional*): `smart_resize` limits; default to the processor's. When given,
            the images are also processed with them (on a copy of the processor), so the prompt, the model input and
            the reading of the answer agree.
        multi_target (`bool`, *optional*, defaults to `False`): tell the model how to answer several targets.
        generation_kwargs (`dict`, *optional*): `temperature` / `top_p` / `top_k` (sampling when `temperature > 0`;
            greedy otherwise, like the evaluator) and any other `model.generate` setting (`num_beams`, ...).
        seed (`int`, *optional*): reseeds torch before generating (matters only when sampling).

    Returns:
        `GroundingResult`: `text`, `boxes` (`GroundedBox(image, box, canonical, label)`), `no_target`, `parsed`;
        `.draw(images)` outlines the boxes, `.to_dict()` serialises. Never raises on the model's output.

    Example:
    ```python
    >>> import trl_mig.models  # registers the tiny checkpoint's processor class
    >>> from transformers import AutoModelForImageTextToText, AutoProcessor
    >>> from trl_mig.testing import tiny_checkpoint
    >>> path = tiny_checkpoint()
    >>> model = AutoModelForImageTextToText.from_pretrained(path)
    >>> processor = AutoProcessor.from_pretrained(path)
    >>> images = [Image.new("RGB", (96, 64), "white"), Image.new("RGB", (64, 64), "gray")]
    >>> result = ground(model, processor, images, "Find the gray square.", max_new_tokens=8)
    >>> result.frame, [im.size for im in result.draw(images)]
    ('qwen2_5_vl', [(96, 64), (64, 64)])

    ```
    """
    from .templates import render_prompt, resolve_frame

    loaded = load_images(images)
    frame = resolve_frame(model if frame is None else frame)
    limits = _pixel_limits(processor, min_pixels, max_pixels)
    processor = _with_pixel_limits(processor, limits)
    sizes = [image.size for image in loaded]
    row = {"id": "ground", "question": question, "image_sizes": sizes}
    prompt = render_prompt(row, template, frame, multi_target=multi_target, **limits)
    generator = _generator(model, processor, max_new_tokens, generation_kwargs)
    text = generator.generate([prompt], [loaded], n=1, seed=seed)[0][0]
    return GroundingResult.from_answer(text, sizes, frame=frame, **limits)
