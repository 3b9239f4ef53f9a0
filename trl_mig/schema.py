"""The one row schema every trl-mig dataset shares (DESIGN.md section 3), as `datasets.Features`.

Rows hold no model-specific text: the question as the source states it (markup stripped, reference boxes written
canonically as `<box image="0">[x1,y1,x2,y2]</box>`), canonical gold boxes, and the images. Prompt templates render
them per model (`trl_mig.templates`).

`datasets` is imported inside the functions: `import trl_mig.schema` stays light.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any


#: columns every row has, in order
BASE_COLUMNS = ("id", "images", "question", "solution", "target_image", "image_sizes", "task", "source")
#: columns added by the CoT/SFT sets and the RL set
REASONING_COLUMN = "reasoning"
RL_COLUMNS = ("pass_rate", "mean_iou")

#: a reference box inside a question, canonical, 0-based image: `<box image="0">[0.451,0.265,0.519,0.388]</box>`
BOX_TAG_RE = re.compile(r'<box image="(-?\d+)">\[([^\]]*)\]</box>')


def format_box_tag(box: Sequence[float], image: int) -> str:
    """Write a canonical reference box the way rows store it (3 decimals, 0-based image).

    Example:
    ```python
    >>> format_box_tag([0.4512, 0.265, 0.519, 0.388], 0)
    '<box image="0">[0.451,0.265,0.519,0.388]</box>'

    ```
    """
    return f'<box image="{int(image)}">[' + ",".join(f"{float(v):.3f}" for v in box) + "]</box>"


def features(reasoning: bool = False, rl: bool = False):
    """The `datasets.Features` of a schema set (`reasoning` for CoT/SFT sets, `rl` for the RL set)."""
    from datasets import Features, Image, List, Value

    spec: dict[str, Any] = {
        "id": Value("string"),
        "images": List(Image()),
        "question": Value("string"),
        "solution": List(List(Value("float32"))),
        "target_image": List(Value("int32")),
        "image_sizes": List(List(Value("int32"))),
        "task": Value("string"),
        "source": Value("string"),
    }
    if reasoning:
        spec[REASONING_COLUMN] = Value("string")
    if rl:
        spec["pass_rate"] = Value("float32")
        spec["mean_iou"] = Value("float32")
    return Features(spec)


def validate_row(row: Mapping[str, Any]) -> None:
    """Raise `ValueError` naming the row id and the field when a row breaks the schema's invariants.

    Checks: required columns present; one `image_sizes` entry per image with positive sides; `solution` is `None` or a
    list of four finite canonical coordinates with `x1 <= x2`, `y1 <= y2`, all in `[0, 1]`; one `target_image` per
    gold box, each `-1` or a valid 0-based index; reference boxes in the question well formed.
    """
    rid = row.get("id", "?")
    for column in BASE_COLUMNS:
        if column not in row:
            raise ValueError(f"row {rid!r}: missing column `{column}`")
    n_images = len(row["images"])
    sizes = row["image_sizes"]
    if len(sizes) != n_images:
        raise ValueError(f"row {rid!r}: `image_sizes` has {len(sizes)} entries for {n_images} images")
    for size in sizes:
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"row {rid!r}: `image_sizes` entry {list(size)!r} is not a positive (width, height)")
    solution = row["solution"]
    if solution is None:
        return
    targets = row["target_image"]
    if len(targets) != len(solution):
        raise ValueError(f"row {rid!r}: `target_image` has {len(targets)} entries for {len(solution)} gold boxes")
    for box, target in zip(solution, targets):
        if len(box) != 4 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in box):
            raise ValueError(f"row {rid!r}: `solution` box {list(box)!r} is not canonical (four values in [0, 1])")
        if box[0] > box[2] or box[1] > box[3]:
            raise ValueError(f"row {rid!r}: `solution` box {list(box)!r} is inverted; repair it at build time")
        if not -1 <= target < n_images:
            raise ValueError(f"row {rid!r}: `target_image` {target} is outside its {n_images} images")
    for match in BOX_TAG_RE.finditer(row["question"]):
        image, coords = int(match.group(1)), match.group(2).split(",")
        if not 0 <= image < n_images or len(coords) != 4:
            raise ValueError(f"row {rid!r}: malformed reference box {match.group(0)!r} in `question`")
