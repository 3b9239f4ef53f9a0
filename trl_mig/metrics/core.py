"""Grounding metrics as plain functions: per-row scores, then aggregation overall and per task.

`compute_grounding_metrics` is what the `evaluate` module (`trl_mig.metrics.load("grounding")`), the evaluator and
the demo report call; its keys are the project-wide metric keys (DESIGN.md section 4):

| key | meaning |
| --- | --- |
| `acc@0.3`, `acc@0.5`, `acc@0.7` | fraction with IoU >= t, box only (the benchmarks' rule) |
| `strict_acc@0.5` | the same, and the right image where it is known |
| `miou` | mean box-only IoU, unparsable answers count 0 |
| `parse_fail_rate` | fraction of answers `trl_mig.parsing` cannot read |
| `wrong_image_rate` | among rows whose target image is known, fraction of readable answers naming another image or none |
| `format_rate` | fraction passing `trl_mig.rewards.FormatReward` (raw text only; `None` for parsed predictions) |
| `mig_bench_avg_acc@0.5` | plain mean of the per-task `acc@0.5` when every task is a MIG-Bench task |

Rows whose gold is `[]` ("no target") score IoU 1 for the explicit no-target answer and 0 otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame, iou, is_valid_box
from ..parsing import Prediction, parse_answer
from ..rewards.format import FormatReward
from ..scoring import FrameSpec, Outcome, score_single


THRESHOLDS = (0.3, 0.5, 0.7)
MIG_BENCH_TASKS = (
    "common_object", "correspondence", "diff", "group_grounding", "multi_view",
    "object_tracking", "reasoning", "refer_grounding", "region", "view_diff",
)  # fmt: skip


@dataclass(slots=True)
class RowScore:
    """One scored answer: what `predictions.jsonl` lines and the aggregates are made of."""

    pred_boxes: list[list[float]]
    pred_image: int | None
    iou: float
    right_image: bool | None
    parsed: bool
    format_ok: bool | None
    gold_valid: bool


def _as_gold(value: Any) -> list[list[float]]:
    boxes = [] if value is None else list(value)
    if boxes and not hasattr(boxes[0], "__len__"):
        boxes = [boxes]
    return [[float(v) for v in box] for box in boxes]


def _as_target(value: Any) -> int:
    if value is None:
        return -1
    if isinstance(value, (int, np.integer)):
        return int(value)
    values = list(value)
    return int(values[0]) if values else -1


def _parsed_from_mapping(pred: Mapping[str, Any]) -> Outcome | None:
    """A parsed prediction given as `{"boxes": canonical boxes, "image": 0-based or -1/None, "no_target": bool}`."""
    boxes = _as_gold(pred.get("boxes"))
    image = pred.get("image")
    image = None if image is None or int(image) < 0 else int(image)
    if not boxes:
        if pred.get("no_target"):
            return Outcome(Prediction((), (), "parsed", no_target=True), None, image, 0.0, None)
        return None
    return Outcome(Prediction(tuple(tuple(b) for b in boxes), (image,) * len(boxes), "parsed"), tuple(boxes[0]),
                   image, 0.0, None)  # fmt: skip


def score_rows(
    predictions: Sequence[Any],
    references: Sequence[Any],
    target_images: Sequence[Any] | None = None,
    image_sizes: Sequence[Any] | None = None,
    resized_sizes: Sequence[Any] | None = None,
    frame: Frame | str = Frame.QWEN2_5_VL,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    factor: int = DEFAULT_FACTOR,
    require_think: bool = True,
) -> list[RowScore]:
    """Score every answer against its first gold box (arguments as in `compute_grounding_metrics`)."""
    n = len(predictions)
    if len(references) != n:
        raise ValueError(f"got {n} predictions and {len(references)} references; pass one reference per prediction")
    for name, column in (
        ("target_images", target_images),
        ("image_sizes", image_sizes),
        ("resized_sizes", resized_sizes),
    ):
        if column is not None and len(column) != n:
            raise ValueError(f"`{name}` has {len(column)} entries for {n} predictions")
    spec = FrameSpec(frame, min_pixels, max_pixels, factor)
    fmt = FormatReward(require_think=require_think)
    rows = []
    for i, pred in enumerate(predictions):
        gold = _as_gold(references[i])
        target = _as_target(target_images[i]) if target_images is not None else -1
        sizes = image_sizes[i] if image_sizes is not None else None
        resized = resized_sizes[i] if resized_sizes is not None else None
        if spec.frame.needs_image_size and sizes is None and resized is None and not isinstance(pred, Mapping):
            raise ValueError(f"prediction {i}: frame {spec.frame.value!r} needs `image_sizes` (or `resized_sizes`)")
        format_ok = None if isinstance(pred, (Mapping, Prediction)) else fmt.score(pred) == 1.0
        if isinstance(pred, Mapping):
            outcome = _parsed_from_mapping(pred)
            parsed_pred = outcome.prediction if outcome else None
            canon = outcome.box if outcome else None
            named = outcome.image if outcome else None
        else:
            parsed_pred = pred if isinstance(pred, Prediction) else parse_answer(pred)
            canon = named = None
        if not gold:
            hit = parsed_pred is not None and parsed_pred.no_target and not parsed_pred.boxes
            boxes = [] if parsed_pred is None else [list(b) for b in parsed_pred.boxes]
            rows.append(RowScore(boxes, None, float(hit), None, parsed_pred is not None, format_ok, True))
            continue
        if isinstance(pred, Mapping):
            value = iou(canon, gold[0]) if canon is not None else 0.0
            outcome = Outcome(parsed_pred, canon, named, value, None if target < 0 else named == target)
        else:
            outcome = score_single(parsed_pred, gold[0], target, spec, sizes, resized)
        right = outcome.right_image if parsed_pred is not None else (None if target < 0 else False)
        rows.append(
            RowScore(
                [list(outcome.box)] if outcome.box is not None else [],
                outcome.image,
                outcome.iou,
                right,
                parsed_pred is not None,
                format_ok,
                is_valid_box(gold[0]),
            )
        )
    return rows


def aggregate(rows: Sequence[RowScore], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float | None]:
    """The metric keys over a group of scored rows (all fractions; `None` where undefined)."""
    if not rows:
        return {}
    ious = np.fromiter((r.iou for r in rows), dtype=np.float64, count=len(rows))
    out: dict[str, float | None] = {f"acc@{t:g}": float((ious >= t).mean()) for t in thresholds}
    strict = np.array([r.iou >= 0.5 and r.right_image is not False for r in rows])
    out["strict_acc@0.5"] = float(strict.mean())
    out["miou"] = float(ious.mean())
    out["parse_fail_rate"] = float(np.mean([not r.parsed for r in rows]))
    known = [r for r in rows if r.right_image is not None]
    out["wrong_image_rate"] = float(np.mean([r.parsed and not r.right_image for r in known])) if known else None
    formats = [r.format_ok for r in rows if r.format_ok is not None]
    out["format_rate"] = float(np.mean(formats)) if formats else None
    return out


def compute_grounding_metrics(
    predictions: Sequence[Any],
    references: Sequence[Any],
    target_images: Sequence[Any] | None = None,
    image_sizes: Sequence[Any] | None = None,
    tasks: Sequence[str] | None = None,
    frame: Frame | str = Frame.QWEN2_5_VL,
    resized_sizes: Sequence[Any] | None = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    factor: int = DEFAULT_FACTOR,
    require_think: bool = True,
    ids: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Grounding metrics overall and per task.

    Args:
        predictions (`list`): per row, the raw model output (string or TRL messages), a `trl_mig.parsing.Prediction`
            (boxes in `frame`), or a parsed mapping `{"boxes": [[x1, y1, x2, y2], ...], "image": int}` with
            *canonical* boxes and a 0-based image (`-1`/`None` = not named).
        references (`list`): per row, canonical gold boxes (the first is scored; `[]` = no target).
        target_images (`list`, *optional*): per row, the 0-based target image (or a list, first used); `-1` = unknown.
        image_sizes (`list`, *optional*): per row, original `(width, height)` per image (needed by `qwen2_5_vl`,
            `pixel`, `coco_xywh` unless `resized_sizes` is given).
        tasks (`list[str]`, *optional*): per row, the task; enables the per-task table.
        frame (`str`, *optional*, defaults to `"qwen2_5_vl"`): frame of raw answers.
        resized_sizes (`list`, *optional*): per row, the processor's resized `(width, height)` per image.
        min_pixels, max_pixels, factor: `smart_resize` limits when resized sizes are computed.
        require_think (`bool`, *optional*, defaults to `True`): format expected by `format_rate`.
        ids (`list`, *optional*): per row ids, used to name rows in `flags`.

    Returns:
        `dict`: `{"overall": {key: value}, "tasks": {task: {"n": n, key: value}}, "mig_bench_avg_acc@0.5": x,
        "flags": {"invalid_gold": [...]}}`; `tasks` and the MIG-Bench average only when `tasks` is given (the
        average only when every task is a MIG-Bench task). Values are fractions in `[0, 1]`.

    Example:
    ```python
    >>> out = compute_grounding_metrics(
    ...     ['<think>.</think><answer>{"image": 2, "bbox_2d": [100, 100, 500, 500]}</answer>', "no idea"],
    ...     [[[0.1, 0.1, 0.5, 0.5]], [[0.2, 0.2, 0.4, 0.4]]], target_images=[1, 0], frame="qwen2_vl")
    >>> out["overall"]["acc@0.5"], out["overall"]["parse_fail_rate"], out["overall"]["format_rate"]
    (0.5, 0.5, 0.5)

    ```
    """
    rows = score_rows(predictions, references, target_images, image_sizes, resized_sizes, frame, min_pixels,
                      max_pixels, factor, require_think)  # fmt: skip
    result: dict[str, Any] = {"overall": aggregate(rows)}
    labels = list(ids) if ids is not None else list(range(len(rows)))
    result["flags"] = {"invalid_gold": [labels[i] for i, r in enumerate(rows) if not r.gold_valid]}
    if tasks is not None:
        if len(tasks) != len(rows):
            raise ValueError(f"`tasks` has {len(tasks)} entries for {len(rows)} predictions")
        per_task: dict[str, list[RowScore]] = {}
        for task, row in zip(tasks, rows):
            per_task.setdefault(str(task), []).append(row)
        result["tasks"] = {t: {"n": len(rs), **aggregate(rs)} for t, rs in sorted(per_task.items())}
        if set(per_task) <= set(MIG_BENCH_TASKS):
            accs = [result["tasks"][t]["acc@0.5"] for t in per_task]
            result["mig_bench_avg_acc@0.5"] = float(np.mean(accs))
            missing = sorted(set(MIG_BENCH_TASKS) - set(per_task))
            if missing:
                result["flags"]["missing_mig_bench_tasks"] = missing
    return result
