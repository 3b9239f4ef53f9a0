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


#: the markers around the evaluation slot of the trl-mig section; `add_eval_results` rewrites what is between them
EVAL_START, EVAL_END = "<!-- trl-mig:eval-results:start -->", "<!-- trl-mig:eval-results:end -->"
NO_RESULTS_TEXT = (
    "No evaluation results yet. `trl-mig eval --model <this folder> --benchmark mig-bench --image-root DIR "
    "--update-model-card` fills this section and the card's `model-index`."
)


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
        eval_text=NO_RESULTS_TEXT,
    )
    path = Path(readme)
    text = path.read_text() if path.exists() else ""
    marker = "\n## Multi-image grounding (trl-mig)\n"
    if marker in text:  # re-saving replaces the section instead of stacking copies
        text = text[: text.index(marker)]
    path.write_text(text.rstrip("\n") + "\n" + section)


def _results_table(eval_results: list[Any]) -> str:
    """The slot's Markdown: one table per benchmark, from the card's `model-index` entries (one source of truth)."""
    if not eval_results:
        return NO_RESULTS_TEXT
    blocks: dict[str, list[Any]] = {}
    for result in eval_results:
        blocks.setdefault(result.dataset_name, []).append(result)
    parts = []
    for dataset, results in blocks.items():
        rows = "\n".join(f"| {r.metric_name} | {r.metric_value:.4f} |" for r in results)
        parts.append(f"**{dataset}** (`{results[0].dataset_type}`, split `{results[0].dataset_split}`)\n\n"
                     f"| metric | value |\n| --- | ---: |\n{rows}")  # fmt: skip
    return "\n\n".join(parts) + "\n\nMetrics are fractions in [0, 1], computed by `trl-mig eval` (see `results.json`)."


def add_eval_results(readme: str | Path, results: Mapping[str, Any], *, model_name: str | None = None) -> None:
    """Write an evaluation (`results.json` dict of `trl-mig eval`) into a model card: `model-index` in the YAML
    header (what the Hub shows as evaluation results) and the trl-mig section's evaluation slot.

    Entries of other benchmarks already in the card are kept; an entry with the same dataset and metric is replaced,
    so re-evaluating does not stack copies. A card without the trl-mig section gets an evaluation section appended.
    """
    from huggingface_hub import ModelCard

    from ..evaluation.results import model_index

    path = Path(readme)
    card = ModelCard(path.read_text(encoding="utf-8")) if path.exists() else ModelCard("---\n---\n")
    new = model_index(results)
    keys = {(r.dataset_type, r.dataset_split, r.metric_name) for r in new}
    kept = [r for r in (card.data.eval_results or []) if (r.dataset_type, r.dataset_split, r.metric_name) not in keys]
    card.data.eval_results = kept + new
    card.data.model_name = model_name or card.data.model_name or path.parent.name
    table = _results_table(card.data.eval_results)
    text = card.text
    if EVAL_START in text and EVAL_END in text:
        head, rest = text.split(EVAL_START, 1)
        text = f"{head}{EVAL_START}\n{table}\n{EVAL_END}{rest.split(EVAL_END, 1)[1]}"
    else:
        text = f"{text.rstrip()}\n\n## Evaluation (trl-mig)\n\n{EVAL_START}\n{table}\n{EVAL_END}\n"
    card.text = text
    card.save(str(path))
