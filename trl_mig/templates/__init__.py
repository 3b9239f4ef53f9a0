"""Prompt templates: render schema rows into conversational `prompt` / `completion` messages for a declared frame.

Two named, versioned templates (DESIGN.md section 3): `mig-think-v1` asks for
`<think>...</think><answer>{"image": 2, "bbox_2d": [x1, y1, x2, y2]}</answer>`, `mig-direct-v1` for the
`<answer>...</answer>` block alone. `mig-think-brief-v1` / `mig-direct-brief-v1` ask for the same answers with
one-clause instructions, and put the question and instructions before the images (`PromptTemplate.text_first`), for
small models and CPU budgets. Images are 1-based for the model; "no target" is `{"image": null, "bbox_2d": []}`.
`render_dataset(dataset, "mig-think-v1", frame=model)` adds `prompt` (+ `completion`) and `frame` columns, so a
rendered set trains with plain TRL too.

Choices, and why:

- **Messages** are plain dicts. The prompt is one user message whose content is one `{"type": "image"}` part per
  image, in order, then one `{"type": "text", "text": ...}` part; the completion is one assistant message with one text
  part. Every `content` is a list of parts, never a string, so a rendered column has one Arrow type in every row
  (`role`, `content: [{type, text}]`), and image parts carry no `image` key (a struct with an `image` key makes the
  Qwen chat template render every text part as an image). TRL 1.16 fills the placeholders from the `images` column
  with `trl.data_utils.prepare_multimodal_messages` (`SFTTrainer`'s prompt-completion collator, `GRPOTrainer`), which
  keeps list contents as they are and counts parts without an `image` key; `is_conversational` recognises the rows.
- **Answer syntax**: JSON `bbox_2d` in *every* frame, Qwen2-VL included (on its 0-1000 grid). One contract for the
  parser, the rewards and the format reward, with an explicit image key and an explicit "no target"; Qwen2-VL's box
  tokens are special tokens that TRL strips when decoding completions (`skip_special_tokens=True`) anyway. The native
  Qwen2-VL form is available as `answer_syntax="box_tokens"` (`Image-2: <|box_start|>(x1,y1),(x2,y2)<|box_end|>`,
  which `trl_mig.parsing` reads with or without the tokens; "no target" stays the JSON answer).
- **Numbers**: integers in `qwen2_vl` / `qwen3_vl` (0-1000 grid), `qwen2_5_vl` (pixels of the resized image, whose
  size the instructions state per image) and `pixel` (original pixels, sizes stated too); three decimals in
  `normalized`. A box with a positive extent never rounds to a zero one. `coco_xywh` is a storage frame: refused.
- **Reference boxes** (`<box image="0">[...]</box>` in `question` and `reasoning`) are written in the frame of the
  image they refer to, `[x1, y1, x2, y2] in image 1` (`(x1,y1),(x2,y2)` between box tokens with `box_tokens`).
- **Several targets**: rows with several gold boxes answer a JSON list of objects; the sentence that allows it is
  added per dataset (`multi_target`), never per row, so no prompt reveals how many targets its row has.

Importing this package loads neither torch, transformers nor trl (`datasets` only inside `render_dataset`).
"""

from .dataset import RENDER_INFO_PREFIX, RenderInfo, pixel_limits_from_processor, render_dataset, render_info
from .registry import ANSWER_SYNTAXES, NO_TARGET_ANSWER, TEMPLATES, PromptTemplate, get_template, register_template
from .render import (
    ANSWER_FRAMES,
    render_answer,
    render_boxes_in_text,
    render_completion,
    render_prompt,
    resolve_frame,
)


__all__ = [
    "ANSWER_FRAMES",
    "ANSWER_SYNTAXES",
    "NO_TARGET_ANSWER",
    "RENDER_INFO_PREFIX",
    "TEMPLATES",
    "PromptTemplate",
    "RenderInfo",
    "get_template",
    "pixel_limits_from_processor",
    "register_template",
    "render_answer",
    "render_boxes_in_text",
    "render_completion",
    "render_dataset",
    "render_info",
    "render_prompt",
    "resolve_frame",
]
