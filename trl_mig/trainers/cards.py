"""What trl-mig adds to the model cards TRL's trainers write: the paper, and the grounding settings that make a
checkpoint usable (answer template, coordinate frame, pixel limits, rewards, data).

TRL 1.16's `_BaseTrainer.create_model_card` renders its own template (base model, trainer, citation from the
trainer's `_paper`); trainers call `append_mig_section` after it so the two never drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..geometry import Frame
from ..hub_cards import TEMPLATES_DIR


#: `_paper` of trl-mig's trainers: TRL puts title, link and citation into the card
MIG_PAPER = {
    "title": "Improving the Reasoning of Multi-Image Grounding in MLLMs via Reinforcement Learning",
    "id": "2507.00748",
    "citation": """\
@article{mig-r1-2025,
    title        = {{Improving the Reasoning of Multi-Image Grounding in MLLMs via Reinforcement Learning}},
    journal      = {arXiv preprint arXiv:2507.00748},
    year         = 2025
}""",
}

MIG_TAGS = ["trl-mig", "multi-image-grounding", "grounding"]

_FRAME_TEXT = {
    Frame.QWEN2_VL: "integers on a 0-1000 grid of each image",
    Frame.QWEN2_5_VL: "absolute pixels of each image after the processor's smart_resize",
    Frame.QWEN3_VL: "integers on a 0-1000 grid of each image",
    Frame.PIXEL: "absolute pixels of the original image",
    Frame.NORMALIZED: "fractions of the original image's width and height",
    Frame.COCO_XYWH: "original pixels as x, y, width, height",
}


def append_mig_section(
    readme: str | Path,
    *,
    trainer: str,
    frame: Frame | str,
    settings: Mapping[str, Any],
    answer_format: str = '<think>...</think><answer>{"image": N, "bbox_2d": [x1, y1, x2, y2]}</answer>',
) -> None:
    """Append the trl-mig section (rendered from `hub_cards/model_card_mig_section.md.j2`) to a model card.

    Args:
        readme: the `README.md` TRL wrote.
        trainer: trainer class name.
        frame: the coordinate frame the model answers in.
        settings: rows of the settings table (base model, template, pixel limits, rewards, data, ...).
        answer_format: what the template asks the model to write.
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    frame = Frame.parse(frame)
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)), undefined=StrictUndefined, keep_trailing_newline=True
    )
    section = env.get_template("model_card_mig_section.md.j2").render(
        trainer=trainer,
        frame=frame.value,
        frame_description=_FRAME_TEXT[frame],
        # a "|" inside a value would split the Markdown table row
        settings={
            str(k).replace("|", "\\|"): str(v).replace("|", "\\|") for k, v in settings.items() if v is not None
        },
        answer_format=answer_format,
    )
    path = Path(readme)
    text = path.read_text() if path.exists() else ""
    marker = "\n## Multi-image grounding (trl-mig)\n"
    if marker in text:  # re-saving replaces the section instead of stacking copies
        text = text[: text.index(marker)]
    path.write_text(text.rstrip("\n") + "\n" + section)
