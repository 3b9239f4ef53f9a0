"""The named, versioned prompt templates and their registry: `mig-think-v1`, `mig-direct-v1` and their brief,
text-first variants `mig-think-brief-v1` and `mig-direct-brief-v1`.

A template is frozen text: changing any sentence means a new version under a new name, so a card or a result that
records `mig-think-v1` always means the same prompt.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..geometry import Frame


__all__ = ["ANSWER_SYNTAXES", "NO_TARGET_ANSWER", "TEMPLATES", "PromptTemplate", "get_template", "register_template"]

#: how the box is written inside `<answer>`: JSON `bbox_2d` (default, every frame) or Qwen2-VL's box tokens
ANSWER_SYNTAXES = ("json", "box_tokens")
#: the explicit "no target" answer (DESIGN.md section 4), in every syntax: the parsers read "no target" only from it
NO_TARGET_ANSWER = '{"image": null, "bbox_2d": []}'

_FRAME_TEXTS = {
    "qwen2_5_vl": "Coordinates are integer pixels of each image as you see it, resized to $sizes (width x height), "
    "with (0, 0) at the top-left corner.",
    "pixel": "Coordinates are integer pixels of each image at its original size, $sizes (width x height), "
    "with (0, 0) at the top-left corner.",
    "qwen2_vl": "Coordinates are integers on a 0-1000 grid over each image, whatever its size: (0, 0) is the "
    "top-left corner and (1000, 1000) the bottom-right corner.",
    "normalized": "Coordinates are fractions of each image's width and height, from 0 to 1 with three decimals: "
    "(0, 0) is the top-left corner and (1, 1) the bottom-right corner.",
}
_FRAME_TEXTS["qwen3_vl"] = _FRAME_TEXTS["qwen2_vl"]
_JSON_SHAPE = '{"image": N, "bbox_2d": [x1, y1, x2, y2]}'
_TOKEN_SHAPE = "Image-N: <|box_start|>(x1,y1),(x2,y2)<|box_end|>"
_WHERE = (
    "where N is the number of the image that contains the target and (x1, y1), (x2, y2) are the top-left and "
    "bottom-right corners of its box."
)
_MULTI_TEXTS = {
    "json": f" If several objects are targets, answer a JSON list with one object per target: [{_JSON_SHAPE}, ...].",
    "box_tokens": f" If several objects are targets, write one {_TOKEN_SHAPE} per target.",
}


#: brief frame texts: one clause each, for the brief templates (small models pay for every prompt token)
_BRIEF_FRAME_TEXTS = {
    "qwen2_5_vl": "Coordinates: integer pixels of each image resized to $sizes, (0, 0) top-left.",
    "pixel": "Coordinates: integer pixels of each image at $sizes, (0, 0) top-left.",
    "qwen2_vl": "Coordinates: integers on a 0-1000 grid over each image, (0, 0) top-left.",
    "normalized": "Coordinates: fractions 0-1 of each image, three decimals, (0, 0) top-left.",
}
_BRIEF_FRAME_TEXTS["qwen3_vl"] = _BRIEF_FRAME_TEXTS["qwen2_vl"]


def _brief_instructions(think: bool) -> dict[str, str]:
    start = "<think>...</think><answer>" if think else "<answer>"
    return {
        syntax: f"$images $frame$multi No target: {NO_TARGET_ANSWER}.\nFormat: {start}{shape}</answer>"
        for syntax, shape in (("json", _JSON_SHAPE), ("box_tokens", _TOKEN_SHAPE))
    }


def _instructions(think: bool) -> dict[str, str]:
    lead = "Think step by step inside <think> </think> tags, then give" if think else "Give only"
    start = "<think>...</think><answer>" if think else "<answer>"
    tail = f"$multi If no image contains the target, answer {NO_TARGET_ANSWER}."
    return {
        syntax: f"$images $frame\n{lead} the answer inside <answer> </answer> tags as {kind}{shape}, {_WHERE}{tail}"
        f"\nFormat: {start}{shape}</answer>"
        for syntax, kind, shape in (("json", "JSON: ", _JSON_SHAPE), ("box_tokens", "", _TOKEN_SHAPE))
    }


@dataclass(frozen=True)
class PromptTemplate:
    """A named, versioned prompt template. To change any text, register a new version under a new name.

    Args:
        name (`str`): registry name ending in `-v<version>`, e.g. `"mig-think-v1"` (recorded in cards and results).
        version (`int`): the version the name ends with.
        reasoning (`bool`): whether the answer starts with a `<think>...</think>` block.
        instructions (`Mapping[str, str]`): per answer syntax (`ANSWER_SYNTAXES`), the answer instructions as a
            `string.Template` with `$images` (how images are numbered), `$frame` (the frame text) and `$multi`.
        frame_texts (`Mapping[str, str]`, *optional*): per frame value, how coordinates are written (`$sizes`: the
            per-image sizes, for the pixel frames).
        multi_target_texts (`Mapping[str, str]`, *optional*): per answer syntax, the sentence about several targets.
        text_first (`bool`, *optional*, defaults to `False`): put the question and the instructions *before* the
            image blocks. Why: with the text after the images, the distance between the last image token and the
            answer changes with every question's length, and a small model's relative-position read-out learned
            on one prompt does not carry over to the next (measured in `benchmarks/learning/NOTES.md`). With the
            text first, the images always end right before the answer.
    """

    name: str
    version: int
    reasoning: bool
    instructions: Mapping[str, str] = field(hash=False, repr=False)
    frame_texts: Mapping[str, str] = field(default_factory=lambda: dict(_FRAME_TEXTS), hash=False, repr=False)
    multi_target_texts: Mapping[str, str] = field(default_factory=lambda: dict(_MULTI_TEXTS), hash=False, repr=False)
    text_first: bool = False

    def instruction(
        self,
        frame: Frame,
        n_images: int,
        sizes: Sequence[Sequence[float]] | None = None,
        answer_syntax: str = "json",
        multi_target: bool = False,
    ) -> str:
        """The answer instructions for a row of `n_images` images.

        Args:
            frame (`Frame`): the answer frame.
            n_images (`int`): how many images the prompt shows.
            sizes (`list` of `(width, height)`, *optional*): the frame's per-image sizes, stated for `qwen2_5_vl`
                (resized) and `pixel` (original).
            answer_syntax (`str`, *optional*, defaults to `"json"`), multi_target (`bool`, *optional*): see
                `render_prompt`.
        """
        check_syntax(answer_syntax)
        n = n_images
        where = "below" if self.text_first else "above"
        images = (
            f"The image {where} is image 1." if n == 1 else f"The {n} images {where} are numbered 1 to {n} in order."
        )
        dims = [f"{round(w)}x{round(h)}" for w, h in sizes or ()]
        size_text = dims[0] if len(dims) == 1 else ", ".join(f"image {i}: {d}" for i, d in enumerate(dims, 1))
        frame_text = string.Template(self.frame_texts[frame.value]).substitute(sizes=size_text)
        multi = self.multi_target_texts[answer_syntax] if multi_target else ""
        return string.Template(self.instructions[answer_syntax]).substitute(
            images=images, frame=frame_text, multi=multi
        )

    def completion_text(self, answer: str, reasoning: str | None = None) -> str:
        """The assistant text: `<think>reasoning</think><answer>answer</answer>`, or the answer block alone.

        Example:
        ```python
        >>> get_template("mig-think-v1").completion_text('{"image": 1, "bbox_2d": [1, 2, 3, 4]}', "a cup")
        '<think>a cup</think><answer>{"image": 1, "bbox_2d": [1, 2, 3, 4]}</answer>'

        ```
        """
        block = f"<answer>{answer}</answer>"
        return f"<think>{(reasoning or '').strip()}</think>{block}" if self.reasoning else block


def check_syntax(answer_syntax: str) -> None:
    """Raise `ValueError` for an answer syntax no template knows."""
    if answer_syntax not in ANSWER_SYNTAXES:
        raise ValueError(f"unknown answer syntax {answer_syntax!r}; known: {', '.join(ANSWER_SYNTAXES)}")


#: normalised name (`mig-think-v1`) -> template
TEMPLATES: dict[str, PromptTemplate] = {}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def register_template(template: PromptTemplate) -> PromptTemplate:
    """Add a template to the registry. A taken name is an error: published versions never change."""
    key = _key(template.name)
    if key in TEMPLATES:
        raise ValueError(f"a prompt template named {template.name!r} is already registered; register a new version")
    if not key.endswith(f"-v{template.version}"):
        raise ValueError(f"template name {template.name!r} must end in -v{template.version} (its version)")
    missing = [s for s in ANSWER_SYNTAXES if s not in template.instructions]
    if missing:
        raise ValueError(f"template {template.name!r} has no instructions for answer syntax {missing}")
    TEMPLATES[key] = template
    return template


def get_template(name: str | PromptTemplate) -> PromptTemplate:
    """A registered template by name, either spelling (`mig-think-v1`, `mig_think_v1`); a template passes through.

    Example:
    ```python
    >>> get_template("mig_think_v1").name, get_template("mig-direct-v1").reasoning
    ('mig-think-v1', False)

    ```
    """
    if isinstance(name, PromptTemplate):
        return name
    try:
        return TEMPLATES[_key(name)]
    except KeyError:
        raise ValueError(f"unknown prompt template {name!r}; known templates: {', '.join(TEMPLATES)}") from None


register_template(PromptTemplate("mig-think-v1", 1, reasoning=True, instructions=_instructions(think=True)))
register_template(PromptTemplate("mig-direct-v1", 1, reasoning=False, instructions=_instructions(think=False)))
#: the same answers with about a sixth of the instruction tokens, question and instructions before the images: for
#: small models and CPU budgets (`make bench-learning`), where the v1 instructions are most of every row's tokens
register_template(PromptTemplate("mig-think-brief-v1", 1, reasoning=True, instructions=_brief_instructions(True),
                                 frame_texts=dict(_BRIEF_FRAME_TEXTS), text_first=True))  # fmt: skip
register_template(PromptTemplate("mig-direct-brief-v1", 1, reasoning=False, instructions=_brief_instructions(False),
                                 frame_texts=dict(_BRIEF_FRAME_TEXTS), text_first=True))  # fmt: skip
