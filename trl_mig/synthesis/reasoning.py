"""Teacher prompt templates and the rewriting of a teacher's reasoning into the model-agnostic CoT form.

A teacher answers in a declared frame (the prompt says which), so the boxes inside its reasoning are in that frame
too. The CoT set must serve any student model (DESIGN.md section 3), so every box the reasoning mentions is converted
to canonical `<box image="i">[x1,y1,x2,y2]</box>` tags; prompt templates re-render them per model at training time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..parsing import find_boxes
from ..schema import format_box_tag
from ..scoring import FrameSpec, canonical_box
from ..templates import render_prompt


__all__ = ["TEACHER_TEMPLATES", "TeacherTemplate", "canonical_reasoning", "get_teacher_template", "think_text"]

_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class TeacherTemplate:
    """How a teacher is asked: the student template whose instructions it follows, plus a note on the reasoning.

    Args:
        name, version: recorded in the CoT set's card.
        base: the student prompt template (`mig-think-v1`): the teacher sees the question and answer instructions the
            student will see, in the teacher's frame.
        note: added after the instructions: what the reasoning should contain.
    """

    name: str
    version: int
    base: str
    note: str

    def prompt(self, row: Mapping[str, Any], spec: FrameSpec) -> list[dict[str, Any]]:
        messages = render_prompt(
            row, self.base, spec.frame, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels, factor=spec.factor
        )
        text_part = messages[-1]["content"][-1]
        text_part["text"] = f"{text_part['text']}\n{self.note}"
        return messages


TEACHER_TEMPLATES = {
    "teacher-cot-v1": TeacherTemplate(
        "teacher-cot-v1",
        1,
        "mig-think-v1",
        "In your reasoning, describe what each image shows that matters for the question, compare the candidates, "
        "and give every box you mention as [x1, y1, x2, y2] in the same coordinates as the answer, saying which image "
        "it is in.",
    )
}


def get_teacher_template(name: str) -> TeacherTemplate:
    key = name.strip().lower().replace("_", "-")
    if key not in TEACHER_TEMPLATES:
        raise ValueError(f"unknown teacher template {name!r}; known: {', '.join(TEACHER_TEMPLATES)}")
    return TEACHER_TEMPLATES[key]


def think_text(reply: str) -> str | None:
    """The text inside the first `<think>...</think>` (stripped), or `None` when there is none or it is empty."""
    match = _THINK_RE.search(reply or "")
    text = match.group(1).strip() if match else ""
    return text or None


def canonical_reasoning(
    reasoning: str,
    spec: FrameSpec,
    image_sizes: Sequence[Sequence[int]],
    resized_sizes: Sequence[Sequence[int]] | None = None,
    default_image: int = 0,
) -> tuple[str, int, int]:
    """Rewrite every box in `reasoning` (teacher frame) as a canonical `<box image=...>` tag.

    A box is put in the image the text names next to it, else `default_image` (the answer's image). Boxes that cannot
    be converted (an image the row does not have, non-finite numbers) are left as written and counted.

    Returns:
        `(text, converted, left_as_written)`.

    Example:
    ```python
    >>> canonical_reasoning("In image 2 it is at [100, 200, 300, 400].", FrameSpec("qwen2_vl"), [(64, 64)] * 2)
    ('In image 2 it is at <box image="1">[0.100,0.200,0.300,0.400]</box>.', 1, 0)

    ```
    """
    pieces, last, converted, skipped = [], 0, 0, 0
    n_images = len(image_sizes)
    for (start, end), box, image in find_boxes(reasoning):
        where = image if image is not None and 0 <= image < n_images else default_image
        canon = canonical_box(box, where, spec, image_sizes, resized_sizes) if 0 <= where < n_images else None
        if canon is None:
            skipped += 1
            continue
        pieces.append(reasoning[last:start])
        pieces.append(format_box_tag(canon, where))
        last = end
        converted += 1
    pieces.append(reasoning[last:])
    return "".join(pieces), converted, skipped
