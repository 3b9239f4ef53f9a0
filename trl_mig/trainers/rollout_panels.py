"""Pictures of sampled completions: a row's images with the gold (green) and predicted (red) boxes, and a caption.

Pure (Pillow only, no torch, no trl), so the trainer's drawing step stays a thin loop and other tools (the sampler,
the evaluator's gallery) can draw rows the same way. Boxes come from `rollout_metrics.CompletionScore`, already
canonical, so nothing here knows about frames.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from ..parsing import completion_text
from ..visualize import grounding_panel
from .rollout_columns import row_images
from .rollout_metrics import CompletionScore


__all__ = ["completion_panel", "gold_marks", "panel_file_name"]

#: characters of completion text kept in a caption
CAPTION_CHARS = 600


def gold_marks(row: dict[str, Any], n_images: int) -> list[tuple[Any, int]]:
    """Gold boxes with their image; a box whose image is unknown (`-1`) is drawn on every image."""
    targets = list(row.get("target_image") or [])
    marks = []
    for k, box in enumerate(row.get("solution") or []):
        target = int(targets[k]) if k < len(targets) else int(targets[0]) if len(targets) == 1 else -1
        marks.extend((box, j) for j in ([target] if target >= 0 else range(n_images)))
    return marks


def completion_panel(
    row: dict[str, Any], completion: Any, score: CompletionScore, step: int
) -> tuple[Image.Image, str] | None:
    """The panel of one completion and its one-line title; `None` when the row has no decoded image to draw on.

    Example:
    ```python
    >>> from PIL import Image
    >>> from trl_mig.trainers.rollout_metrics import CompletionScore
    >>> row = {"id": "r1", "images": [Image.new("RGB", (64, 48))], "solution": [[0.1, 0.1, 0.5, 0.5]],
    ...        "target_image": [0]}
    >>> panel, title = completion_panel(row, "<answer>...</answer>", CompletionScore("low_iou", 0.2, False,
    ...                                 (0.3, 0.3, 0.9, 0.9), 0, False), step=7)
    >>> title
    'step 7 | r1 | low_iou | IoU 0.200'

    ```
    """
    images = [img for img in row_images(row) if isinstance(img, Image.Image)]
    if not images:
        return None
    pred = [(score.box, score.image)] if score.box is not None and score.image is not None else []
    title = f"step {step} | {row.get('id', '?')} | {score.outcome} | IoU {score.iou:.3f}"
    caption = f"{title}\n{completion_text(completion)[:CAPTION_CHARS]}"
    return grounding_panel(images, gold_marks(row, len(images)), pred, caption=caption), title


def panel_file_name(rank: int, row_id: Any) -> str:
    """`03-<id>.png`, with the id reduced to characters safe in any file system."""
    return f"{rank:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(row_id))[:60]}.png"
