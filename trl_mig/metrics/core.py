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


@dataclass(slots=True)
class ScoreColumns:
    """Per-row scores as arrays: what the aggregates read (building 100k `RowScore`s would cost more than scoring).

    `right` and `format_ok` are `-1` where undefined (target unknown; format not judged), else `0`/`1`.
    """

    iou: np.ndarray
    right: np.ndarray
    parsed: np.ndarray
    format_ok: np.ndarray
    gold_valid: np.ndarray
    pred_boxes: list[list[list[float]]]
    pred_image: list[int | None]

    @classmethod
    def from_rows(cls, rows: Sequence[RowScore]) -> ScoreColumns:
        def tri(value: bool | None) -> int:
            return -1 if value is None else int(value)

        return cls(
            np.fromiter((r.iou for r in rows), dtype=np.float64, count=len(rows)),
            np.fromiter((tri(r.right_image) for r in rows), dtype=np.int8, count=len(rows)),
            np.fromiter((r.parsed for r in rows), dtype=bool, count=len(rows)),
            np.fromiter((tri(r.format_ok) for r in rows), dtype=np.int8, count=len(rows)),
            np.fromiter((r.gold_valid for r in rows), dtype=bool, count=len(rows)),
            [r.pred_boxes for r in rows],
            [r.pred_image for r in rows],
        )

    def rows(self) -> list[RowScore]:
        def tri(value: int) -> bool | None:
            return None if value < 0 else bool(value)

        return [
            RowScore(boxes, image, float(value), tri(int(right)), bool(parsed), tri(int(fmt)), bool(valid))
            for boxes, image, value, right, parsed, fmt, valid in zip(
                self.pred_boxes, self.pred_image, self.iou, self.right, self.parsed, self.format_ok, self.gold_valid
            )
        ]

    def take(self, index: np.ndarray) -> ScoreColumns:
        return ScoreColumns(self.iou[index], self.right[index], self.parsed[index], self.format_ok[index],
                            self.gold_valid[index], [self.pred_boxes[i] for i in index],
                            [self.pred_image[i] for i in index])  # fmt: skip


def _score_texts(
    texts: Sequence[Any],
    references: Sequence[Any],
    target_images: Sequence[Any] | None,
    image_sizes: Sequence[Any] | None,
    resized_sizes: Sequence[Any] | None,
    spec: FrameSpec,
    require_think: bool,
) -> ScoreColumns:
    """`score_rows` for raw answers (strings or TRL messages), with the arithmetic in numpy.

    Python does what only Python can (parse each answer once, pick the image whose size converts its first box, as
    `trl_mig.scoring.score_single` does); the conversion to canonical, clipping, IoU and gold validity run on arrays.
    Same values as the per-row path (`score_single` + `iou`), which a property test checks.
    """
    from ..parsing import completion_text
    from ..scoring import _SIZED_FRAMES, _cached_resized, _n_images, scoring_image

    n = len(texts)
    fmt = FormatReward(require_think=require_think)
    frame = spec.frame
    sized = frame in _SIZED_FRAMES
    fixed = {Frame.NORMALIZED: 1.0, Frame.QWEN2_VL: 1000.0, Frame.QWEN3_VL: 1000.0}.get(frame)
    nan4 = (np.nan, np.nan, np.nan, np.nan)
    one2 = (1.0, 1.0)
    # plain lists in the loop (a numpy item assignment costs ~10x a list store); arrays once, after it
    boxes: list[Any] = [nan4] * n
    scale: list[Any] = [one2] * n
    gold: list[Any] = [nan4] * n
    has_box = [False] * n  # a first box that can be converted
    empty_gold = [False] * n
    hit_empty = [False] * n
    parsed = [False] * n
    format_ok = [0] * n
    right = [-1] * n
    pred_raw: list[list[list[float]]] = [[] for _ in range(n)]
    pred_image: list[int | None] = [None] * n
    fixed_scale = (fixed, fixed)
    qwen2_5 = frame is Frame.QWEN2_5_VL
    for i in range(n):
        sizes = image_sizes[i] if image_sizes is not None else None
        resized = resized_sizes[i] if resized_sizes is not None else None
        if sized and sizes is None and resized is None:
            raise ValueError(f"prediction {i}: frame {frame.value!r} needs `image_sizes` (or `resized_sizes`)")
        text = texts[i]
        if not isinstance(text, str):
            text = completion_text(text)
        prediction = parse_answer(text)
        ok = prediction is not None
        parsed[i] = ok
        format_ok[i] = 1 if ok and fmt.layout_ok(text) else 0
        reference = references[i]
        try:
            if reference is None or len(reference) == 0:
                empty_gold[i] = True
                if ok:
                    hit_empty[i] = prediction.no_target and not prediction.boxes
                    pred_raw[i] = [list(b) for b in prediction.boxes]
                continue
            first_gold = reference[0] if hasattr(reference[0], "__len__") else reference  # one box given flat
            if len(first_gold) == 4:
                gold[i] = tuple(map(float, first_gold))
        except (TypeError, ValueError) as exc:  # gold data, not model output: name the row and the field
            raise ValueError(
                f"prediction {i}: `references` entry {reference!r} is not a list of boxes ({exc})"
            ) from None
        if target_images is None:
            target = -1
        else:
            target = target_images[i]
            try:
                target = int(target) if isinstance(target, (int, np.integer)) else _as_target(target)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"prediction {i}: `target_images` entry {target!r} is not an image index") from None
        if target >= 0:
            right[i] = 0
        if not ok or not prediction.boxes:
            continue
        named = prediction.images[0]
        pred_image[i] = named
        if target >= 0:
            right[i] = 1 if named == target else 0
        if sized:
            where = scoring_image(target, named, _n_images(sizes, resized))
            if resized is not None and qwen2_5 and where < len(resized):
                scale[i] = resized[where]
            elif sizes is not None and where < len(sizes):
                try:
                    width, height = sizes[where]
                    if qwen2_5:
                        scale[i] = _cached_resized((int(width), int(height)), spec.factor, spec.min_pixels,
                                                   spec.max_pixels)  # fmt: skip
                    else:
                        scale[i] = (float(width), float(height))
                except (TypeError, ValueError, OverflowError):
                    raise ValueError(
                        f"prediction {i}: `image_sizes` entry {sizes!r} is not (width, height) pairs"
                    ) from None
            else:
                continue  # no size for that image: not convertible, IoU 0
        else:
            scale[i] = fixed_scale
        boxes[i] = prediction.boxes[0]
        has_box[i] = True
    boxes = np.array(boxes, dtype=np.float64).reshape(n, 4)
    scale = np.array(scale, dtype=np.float64).reshape(n, 2)
    gold = np.array(gold, dtype=np.float64).reshape(n, 4)
    has_box, empty_gold = np.array(has_box, dtype=bool), np.array(empty_gold, dtype=bool)
    hit_empty, parsed = np.array(hit_empty, dtype=bool), np.array(parsed, dtype=bool)
    format_ok, right = np.array(format_ok, dtype=np.int8), np.array(right, dtype=np.int8)
    with np.errstate(all="ignore"):
        if frame is Frame.COCO_XYWH:
            boxes[:, 2:] += boxes[:, :2]
        canon = boxes / np.concatenate([scale, scale], axis=1)
        finite = np.isfinite(canon).all(axis=1) & has_box
        canon = np.clip(canon, 0.0, 1.0)
        gold_finite = np.isfinite(gold).all(axis=1)
        gold_valid = empty_gold | (gold_finite & (gold[:, 0] < gold[:, 2]) & (gold[:, 1] < gold[:, 3]))
        iw = np.minimum(canon[:, 2], gold[:, 2]) - np.maximum(canon[:, 0], gold[:, 0])
        ih = np.minimum(canon[:, 3], gold[:, 3]) - np.maximum(canon[:, 1], gold[:, 1])
        inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
        area_p = np.clip(canon[:, 2] - canon[:, 0], 0.0, None) * np.clip(canon[:, 3] - canon[:, 1], 0.0, None)
        area_g = np.clip(gold[:, 2] - gold[:, 0], 0.0, None) * np.clip(gold[:, 3] - gold[:, 1], 0.0, None)
        union = area_p + area_g - inter
        values = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    values = np.where(finite & gold_finite & np.isfinite(values), np.clip(values, 0.0, 1.0), 0.0)
    values = np.where(empty_gold, hit_empty.astype(np.float64), values)
    canon_lists, finite_list, empty_list = canon.tolist(), finite.tolist(), empty_gold.tolist()
    pred_boxes = [
        raw if empty else ([box] if ok else []) for raw, box, ok, empty in zip(pred_raw, canon_lists, finite_list,
                                                                               empty_list)
    ]  # fmt: skip
    right = np.where(empty_gold, -1, right).astype(np.int8)
    return ScoreColumns(values, right, parsed, format_ok, gold_valid, pred_boxes, pred_image)


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
    return _score_columns(predictions, references, target_images, image_sizes, resized_sizes, spec,
                          require_think).rows()  # fmt: skip


def _score_columns(
    predictions: Sequence[Any],
    references: Sequence[Any],
    target_images: Sequence[Any] | None,
    image_sizes: Sequence[Any] | None,
    resized_sizes: Sequence[Any] | None,
    spec: FrameSpec,
    require_think: bool,
) -> ScoreColumns:
    """Raw answers go through `_score_texts`; parsed ones (`Prediction`, mappings) through `_score_parsed`."""
    if not any(isinstance(p, (Mapping, Prediction)) for p in predictions):
        return _score_texts(predictions, references, target_images, image_sizes, resized_sizes, spec, require_think)
    return ScoreColumns.from_rows(
        _score_parsed(predictions, references, target_images, image_sizes, resized_sizes, spec, require_think)
    )


def _score_parsed(
    predictions: Sequence[Any],
    references: Sequence[Any],
    target_images: Sequence[Any] | None,
    image_sizes: Sequence[Any] | None,
    resized_sizes: Sequence[Any] | None,
    spec: FrameSpec,
    require_think: bool,
) -> list[RowScore]:
    """The per-row path, for inputs mixing parsed predictions (`Prediction`, mappings) with raw answers."""
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


def aggregate(
    rows: Sequence[RowScore] | ScoreColumns, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, float | None]:
    """The metric keys over a group of scored rows (all fractions; `None` where undefined)."""
    columns = rows if isinstance(rows, ScoreColumns) else ScoreColumns.from_rows(rows)
    if not len(columns.iou):
        return {}
    ious = columns.iou
    out: dict[str, float | None] = {f"acc@{t:g}": float((ious >= t).mean()) for t in thresholds}
    out["strict_acc@0.5"] = float(((ious >= 0.5) & (columns.right != 0)).mean())
    out["miou"] = float(ious.mean())
    out["parse_fail_rate"] = float((~columns.parsed).mean())
    known = columns.right >= 0
    out["wrong_image_rate"] = (
        float((columns.parsed[known] & (columns.right[known] == 0)).mean()) if known.any() else None
    )
    judged = columns.format_ok >= 0
    out["format_rate"] = float(columns.format_ok[judged].mean()) if judged.any() else None
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
    n = len(predictions)
    if len(references) != n:
        raise ValueError(f"got {n} predictions and {len(references)} references; pass one reference per prediction")
    for name, column in (("target_images", target_images), ("image_sizes", image_sizes),
                         ("resized_sizes", resized_sizes), ("tasks", tasks), ("ids", ids)):  # fmt: skip
        if column is not None and len(column) != n:
            raise ValueError(f"`{name}` has {len(column)} entries for {n} predictions")
    spec = FrameSpec(frame, min_pixels, max_pixels, factor)
    columns = _score_columns(predictions, references, target_images, image_sizes, resized_sizes, spec, require_think)
    result: dict[str, Any] = {"overall": aggregate(columns)}
    labels = list(ids) if ids is not None else list(range(n))
    result["flags"] = {"invalid_gold": [labels[i] for i in np.flatnonzero(~columns.gold_valid)]}
    if tasks is not None:
        names, inverse = np.unique(np.asarray([str(t) for t in tasks], dtype=object), return_inverse=True)
        per_task = {str(name): np.flatnonzero(inverse == k) for k, name in enumerate(names)}
        result["tasks"] = {
            t: {"n": len(index), **aggregate(columns.take(index))} for t, index in sorted(per_task.items())
        }
        if set(per_task) <= set(MIG_BENCH_TASKS):
            accs = [result["tasks"][t]["acc@0.5"] for t in per_task]
            result["mig_bench_avg_acc@0.5"] = float(np.mean(accs))
            missing = sorted(set(MIG_BENCH_TASKS) - set(per_task))
            if missing:
                result["flags"]["missing_mig_bench_tasks"] = missing
    return result
