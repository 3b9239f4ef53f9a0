"""Per-step grounding metrics of sampled completions, and the failure taxonomy that says why answers miss.

Pure Python (no torch, no trl): `MIGGRPOTrainer` calls `score_completions` + `rollout_metrics` on every generation
batch, and the same functions can score any list of completions offline. Answers are read with
`trl_mig.parsing.parse_answer` and scored with `trl_mig.scoring.score_single`, the code the rewards and the
`grounding` metric share, and rows are read with the rewards' own column reader (`GroundingReward.rows`), so a logged
`grounding/acc@0.5` and the `grounding` metric can never disagree about the same completions (a test checks it).

Metric keys (`rollout_metrics`), each a fraction in `[0, 1]`:

| key | meaning |
| --- | --- |
| `grounding/acc@0.5` | first predicted box has IoU >= 0.5 with the first gold box, box only (the benchmarks' rule) |
| `grounding/strict_acc@0.5` | the same, and the right image where it is known (= the `correct` bucket) |
| `grounding/miou` | mean box-only IoU, unreadable answers count 0 |
| `grounding/format_rate` | `FormatReward` passes (every completion, labelled or not) |
| `grounding/failure/<bucket>` | share of scored completions in each failure bucket below |

Scored completions are those whose row has a label (`solution` is not `None`); "no target" rows (`solution == []`)
score IoU 1 for the explicit no-target answer and 0 otherwise, as in the metric. The grounding keys are left out of a
batch with no labelled row.

**Failure taxonomy.** Every scored completion lands in exactly one bucket, the first that applies, in this order, so
`strict_acc@0.5` plus the `failure/*` shares sum to 1:

1. `correct`: counts for `strict_acc@0.5` (IoU >= 0.5 and the right image where known; on a "no target" row, the
   explicit no-target answer). Not logged as a failure.
2. `no_answer`: nothing readable and no `<answer>` tag: an empty completion, a thought cut off by the length
   limit, prose without a box.
3. `unparsable`: an `<answer>` tag is there, but `parse_answer` cannot read a box or a no-target answer in it.
4. `missed_target`: the explicit no-target answer on a row that has a target.
5. `false_positive`: a box on a "no target" row.
6. `wrong_image`: the target image is known and the answer names another image, none, image 0, or one the row
   does not have (the rewards pay 0 for these).
7. `invalid_box`: the first box cannot be a region: a non-finite coordinate, `x2 <= x1` or `y2 <= y1` (inverted or
   zero-area) before any clipping, or no size to convert it with.
8. `whole_image_box`: after clipping, the box covers at least `WHOLE_IMAGE_AREA` (90%) of its image: the
   degenerate "box everything" answer that collects some IoU on large targets.
9. `out_of_bounds`: a corner lies outside its image by more than `OUT_OF_BOUNDS_TOLERANCE` (1% of the side) in the
   declared frame, typically a frame mix-up (0-1000 grid numbers where resized pixels are expected).
10. `low_iou`: a valid box, in the right image, that misses (IoU < 0.5).

Which image a box is measured against follows `trl_mig.scoring.scoring_image` (the image the answer names, else the
target, else image 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..geometry import iou
from ..parsing import Prediction, completion_text, parse_answer
from ..rewards.base import GroundingReward
from ..rewards.format import FormatReward
from ..scoring import FrameSpec, canonical_box, score_single, scoring_image


__all__ = [
    "FAILURES",
    "METRIC_PREFIX",
    "OUT_OF_BOUNDS_TOLERANCE",
    "OUTCOMES",
    "WHOLE_IMAGE_AREA",
    "CompletionScore",
    "classify",
    "metric_keys",
    "rollout_metrics",
    "score_completions",
]

#: the failure buckets, in the order they are checked (after `correct`)
FAILURES = (
    "no_answer",
    "unparsable",
    "missed_target",
    "false_positive",
    "wrong_image",
    "invalid_box",
    "whole_image_box",
    "out_of_bounds",
    "low_iou",
)
OUTCOMES = ("correct", *FAILURES)
METRIC_PREFIX = "grounding/"
#: a box covering at least this share of its image (after clipping) is a whole-image box
WHOLE_IMAGE_AREA = 0.9
#: how far (share of the side) a corner may lie outside its image before the box is out of bounds
OUT_OF_BOUNDS_TOLERANCE = 0.01
_THRESHOLD = 0.5
_WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)


@dataclass(slots=True)
class CompletionScore:
    """How one sampled completion scores: what the metrics aggregate and the drawings show.

    Args:
        outcome (`str` or `None`): one of `OUTCOMES`; `None` for an unlabelled row (not scored).
        iou (`float`): box-only IoU with the first gold box (1/0 on "no target" rows, 0 when there is no box).
        strict (`bool`): counts for `strict_acc@0.5`.
        box (`tuple` or `None`): the first predicted box, canonical and clipped (what is drawn).
        image (`int` or `None`): the 0-based image `box` lies in (the scoring image).
        format_ok (`bool`): `FormatReward` passes.
    """

    outcome: str | None
    iou: float
    strict: bool
    box: tuple[float, float, float, float] | None
    image: int | None
    format_ok: bool


def classify(
    completion: Any,
    gold: Sequence[Sequence[float]],
    targets: Sequence[int],
    spec: FrameSpec,
    image_sizes: Sequence[Sequence[int]] | None = None,
    resized_sizes: Sequence[Sequence[int]] | None = None,
    prediction: Prediction | None = None,
) -> tuple[str, float, bool, tuple[float, float, float, float] | None, int | None]:
    """Bucket one completion of a labelled row (see the module docstring); never raises on model output.

    Args:
        completion: raw text or TRL messages.
        gold: canonical gold boxes of the row (`[]` = no target); the first is scored.
        targets: 0-based image of each gold box (`-1` = unknown).
        spec: the declared frame and pixel limits.
        image_sizes, resized_sizes: per image, original and processed `(width, height)`.
        prediction: the parse of `completion`, when the caller already has it.

    Returns:
        `(outcome, iou, strict, box, image)` as in `CompletionScore`.

    Example:
    ```python
    >>> spec = FrameSpec("qwen2_vl")
    >>> gold, targets = [[0.1, 0.1, 0.5, 0.5]], [1]
    >>> classify('<answer>{"image": 2, "bbox_2d": [100, 100, 500, 500]}</answer>', gold, targets, spec)[:3]
    ('correct', 1.0, True)
    >>> [classify(text, gold, targets, spec)[0] for text in (
    ...     "<think>hmm", "<answer>no idea</answer>", '<answer>{"image": 1, "bbox_2d": [1, 1, 9, 9]}</answer>',
    ...     '<answer>{"image": 2, "bbox_2d": [0, 0, 1000, 1000]}</answer>',
    ...     '<answer>{"image": 2, "bbox_2d": [400, 400, 1500, 900]}</answer>')]
    ['no_answer', 'unparsable', 'wrong_image', 'whole_image_box', 'out_of_bounds']

    ```
    """
    text = completion_text(completion)
    if prediction is None:
        prediction = parse_answer(text)
    if not gold:  # a "no target" row: only the explicit no-target answer is right
        if prediction is None:
            return _unread(text), 0.0, False, None, None
        if prediction.no_target and not prediction.boxes:
            return "correct", 1.0, True, None, None
        return "false_positive", 0.0, False, None, None
    target = targets[0] if targets else -1
    if prediction is None:
        return _unread(text), 0.0, False, None, None
    if not prediction.boxes:
        return "missed_target", 0.0, False, None, None
    outcome = score_single(prediction, gold[0], target, spec, image_sizes, resized_sizes)
    strict = outcome.iou >= _THRESHOLD and outcome.right_image is not False
    n_images = len(image_sizes) if image_sizes is not None else len(resized_sizes) if resized_sizes else None
    where = scoring_image(target, outcome.image, n_images)
    box = outcome.box
    if strict:
        return "correct", outcome.iou, True, box, where
    if outcome.right_image is False:
        return "wrong_image", outcome.iou, False, box, where
    raw = canonical_box(prediction.box, where, spec, image_sizes, resized_sizes, clip=False)
    if box is None or raw is None or not all(math.isfinite(v) for v in raw) or raw[2] <= raw[0] or raw[3] <= raw[1]:
        return "invalid_box", outcome.iou, False, box, where
    if iou(box, _WHOLE_IMAGE) >= WHOLE_IMAGE_AREA:
        return "whole_image_box", outcome.iou, False, box, where
    low, high = -OUT_OF_BOUNDS_TOLERANCE, 1.0 + OUT_OF_BOUNDS_TOLERANCE
    if not all(low <= v <= high for v in raw):
        return "out_of_bounds", outcome.iou, False, box, where
    return "low_iou", outcome.iou, False, box, where


def _unread(text: str) -> str:
    return "unparsable" if "<answer>" in text.lower() else "no_answer"


def score_completions(
    completions: Sequence[Any],
    solution: Sequence[Any],
    target_image: Sequence[Any] | None = None,
    image_sizes: Sequence[Any] | None = None,
    resized_sizes: Sequence[Any] | None = None,
    frame: Sequence[str | None] | None = None,
    *,
    spec: FrameSpec | None = None,
    require_think: bool = True,
    images: Sequence[Any] | None = None,
    ids: Sequence[Any] | None = None,
) -> list[CompletionScore]:
    """Score and bucket every completion, reading the columns exactly as the rewards do.

    Args:
        completions: as TRL passes them to rewards (strings or messages).
        solution, target_image, image_sizes, resized_sizes, frame: the reward columns, one entry per completion.
        spec (`FrameSpec`, *optional*): frame and pixel limits when a row has no `frame`; defaults to `FrameSpec()`.
        require_think (`bool`, *optional*, defaults to `True`): the format `format_ok` checks (`False` for
            `mig-direct-v1`).
        images, ids (*optional*): the `images` and `id` columns (sizes when `image_sizes` is absent; error messages).

    Raises:
        `ValueError`: a data error (malformed gold, wrong column lengths) (as the rewards do); never for model output.
    """
    spec = spec or FrameSpec()
    reader = GroundingReward(spec.frame, spec.min_pixels, spec.max_pixels, spec.factor)
    fmt = FormatReward(require_think=require_think)
    extra = {"images": images, "id": ids}
    scores = []
    for row in reader.rows(completions, solution, target_image, image_sizes, resized_sizes, frame, extra):
        format_ok = fmt.score(row.completion) == 1.0
        if row.gold is None:
            scores.append(CompletionScore(None, 0.0, False, None, None, format_ok))
            continue
        outcome, value, strict, box, where = classify(
            row.completion, row.gold, row.targets, row.spec, row.image_sizes, row.resized_sizes
        )
        scores.append(CompletionScore(outcome, value, strict, box, where, format_ok))
    return scores


def metric_keys() -> tuple[str, ...]:
    """Every key `rollout_metrics` can return, for dashboards and tests."""
    base = ("acc@0.5", "strict_acc@0.5", "miou", "format_rate")
    return tuple(METRIC_PREFIX + k for k in base) + tuple(f"{METRIC_PREFIX}failure/{b}" for b in FAILURES)


def rollout_metrics(scores: Sequence[CompletionScore]) -> dict[str, float]:
    """Aggregate per-completion scores into the `grounding/*` keys (see the module docstring).

    Example:
    ```python
    >>> s = [CompletionScore("correct", 0.8, True, None, None, True), CompletionScore("no_answer", 0.0, False, None,
    ...      None, False), CompletionScore(None, 0.0, False, None, None, True)]
    >>> m = rollout_metrics(s)
    >>> m["grounding/acc@0.5"], m["grounding/failure/no_answer"], round(m["grounding/format_rate"], 3)
    (0.5, 0.5, 0.667)

    ```
    """
    if not scores:
        return {}
    out = {METRIC_PREFIX + "format_rate": sum(s.format_ok for s in scores) / len(scores)}
    scored = [s for s in scores if s.outcome is not None]
    if not scored:
        return out
    n = len(scored)
    out[METRIC_PREFIX + "acc@0.5"] = sum(s.iou >= _THRESHOLD for s in scored) / n
    out[METRIC_PREFIX + "strict_acc@0.5"] = sum(s.strict for s in scored) / n
    out[METRIC_PREFIX + "miou"] = sum(s.iou for s in scored) / n
    counts = dict.fromkeys(FAILURES, 0)
    for s in scored:
        if s.outcome in counts:
            counts[s.outcome] += 1
    out.update({f"{METRIC_PREFIX}failure/{bucket}": count / n for bucket, count in counts.items()})
    return out
