"""Greedy evaluation of a model on a schema split: predictions, grounding metrics, and pictures of the answers.

The generation and decoding are the sampler's (`trl_mig.sampling.generation`), so an evaluated answer is read exactly
as RL rewards and rejection sampling read it; the metrics are `trl_mig.metrics.core.compute_grounding_metrics`, the
`grounding` evaluate module's. `trl-mig eval` (benchmarks, model-index) builds on this.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame
from ..metrics.core import compute_grounding_metrics
from ..scoring import FrameSpec
from ..trainers.rollout_metrics import CompletionScore, score_completions


__all__ = ["EvalResult", "evaluate_generator", "draw_predictions"]

_THRESHOLD = 0.5


@dataclass
class EvalResult:
    """What `evaluate_generator` returns.

    Args:
        metrics: `compute_grounding_metrics`'s dict (`overall`, `tasks`, `flags`).
        predictions: one dict per row, the `predictions.jsonl` layout of DESIGN.md section 4
            (`id`, `output`, `pred_boxes`, `pred_image` (0-based), `iou`, `correct`).
        scores: per row, the `CompletionScore` (outcome bucket, box, image) used for drawing.
    """

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    scores: list[CompletionScore]

    def write_predictions(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for prediction in self.predictions:
                handle.write(json.dumps(prediction, ensure_ascii=False) + "\n")
        return path


def evaluate_generator(
    generator: Any,
    rendered: Any,
    *,
    frame: Frame | str,
    pixel_limits: dict[str, int] | None = None,
    require_think: bool = True,
    batch_size: int = 8,
) -> EvalResult:
    """One greedy answer per row of a rendered split (`render_dataset`), scored.

    Args:
        generator: an `HFGenerator` / `VLLMGenerator` set up for greedy decoding (`temperature=0`).
        rendered (`datasets.Dataset`): schema rows with `prompt` (+ `frame`, `resized_sizes`).
        frame: the frame the model answers in.
        pixel_limits: `min_pixels`, `max_pixels`, `factor` of the processor (for rows without `resized_sizes`).
        require_think: the format `format_rate` checks (`False` for `mig-direct-v1`).
    """
    limits = {"min_pixels": DEFAULT_MIN_PIXELS, "max_pixels": DEFAULT_MAX_PIXELS, "factor": DEFAULT_FACTOR}
    limits.update(pixel_limits or {})
    outputs: list[str] = []
    for start in range(0, len(rendered), batch_size):
        batch = list(rendered.select(range(start, min(start + batch_size, len(rendered)))))
        texts = generator.generate([r["prompt"] for r in batch], [r.get("images") for r in batch], n=1)
        outputs.extend(t[0] for t in texts)
    columns = {c: rendered[c] for c in ("solution", "target_image", "image_sizes", "resized_sizes", "id", "task")
               if c in rendered.column_names}  # fmt: skip
    spec = FrameSpec(frame, limits["min_pixels"], limits["max_pixels"], limits["factor"])
    scores = score_completions(
        outputs, columns["solution"], columns.get("target_image"), columns.get("image_sizes"),
        columns.get("resized_sizes"), None, spec=spec, require_think=require_think, ids=columns.get("id"),
    )  # fmt: skip
    metrics = compute_grounding_metrics(
        outputs, columns["solution"], target_images=columns.get("target_image"),
        image_sizes=columns.get("image_sizes"), tasks=columns.get("task"), frame=frame,
        resized_sizes=columns.get("resized_sizes"), require_think=require_think, ids=columns.get("id"), **limits,
    )  # fmt: skip
    predictions = [
        {
            "id": str(rid),
            "output": text,
            "pred_boxes": [list(s.box)] if s.box is not None else [],
            "pred_image": s.image,
            "iou": round(float(s.iou), 6),
            "correct": bool(s.outcome is not None and s.iou >= _THRESHOLD),
        }
        for rid, text, s in zip(columns["id"], outputs, scores)
    ]
    return EvalResult(metrics, predictions, scores)


def draw_predictions(
    rendered: Any, result: EvalResult, output_dir: str | os.PathLike, *, limit: int = 6, label: str = ""
) -> list[Path]:
    """Save the first `limit` rows with gold (green) and predicted (red) boxes drawn, as PNG files."""
    from PIL import Image

    from ..parsing import completion_text
    from ..trainers.rollout_panels import CAPTION_CHARS, gold_marks
    from ..visualize import grounding_panel

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(limit, len(rendered))):
        row = rendered[i]
        images = [img for img in row.get("images") or [] if isinstance(img, Image.Image)]
        if not images:
            continue
        score, prediction = result.scores[i], result.predictions[i]
        pred = [(score.box, score.image)] if score.box is not None and score.image is not None else []
        title = f"{label or 'model'} | {row['id']} | {score.outcome} | IoU {score.iou:.3f}"
        caption = f"{title}\n{completion_text(prediction['output'])[:CAPTION_CHARS]}"
        panel = grounding_panel(images, gold_marks(row, len(images)), pred, caption=caption)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}-{i:02d}-{row['id']}")[:80] + ".png"
        panel.save(output_dir / name)
        paths.append(output_dir / name)
    return paths


def overall(result: EvalResult, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The overall metrics (optionally only `keys`)."""
    values = result.metrics["overall"]
    return {k: values.get(k) for k in keys} if keys is not None else dict(values)
