"""Box arithmetic in one place: IoU (vectorised and scalar), one-to-one matching, validity and repair.

Every other module (rewards, the metric, the builders, the evaluator) calls these; nothing else computes IoU.

The box rule (one rule, documented once, never raising):

1. A box is `(x1, y1, x2, y2)` in any single frame; IoU is invariant to scaling each axis, so boxes only need to
   share a frame, not be canonical.
2. A box with a NaN or infinite coordinate is *invalid*: its IoU with anything is `0.0`.
3. An inverted or zero-width/height box has zero area: its IoU with anything is `0.0` (no division by zero, even
   between two identical degenerate boxes). Predictions are never re-ordered: a model writing `x2 < x1` is wrong.
4. Out-of-range predictions are clipped to the image when converted to canonical form
   (`trl_mig.geometry.frames.to_canonical`), so a box wholly outside the image becomes degenerate.
5. Gold boxes that are inverted or exceed the image are repaired once, at build time, by `repair_box` (sort each
   axis, clip to `[0, 1]`), and the repairs are counted in the dataset card.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


Box = tuple[float, float, float, float]

#: pair-matrix elements per block in `box_iou`: the output rows and two scratch buffers stay in a 1 MiB L2 cache
_BLOCK = 1 << 16


def box_iou(
    boxes_a: np.ndarray | Sequence[Sequence[float]], boxes_b: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """IoU of every box in `boxes_a` with every box in `boxes_b`, vectorised.

    Args:
        boxes_a (`array-like` of shape `(N, 4)`): `xyxy` boxes.
        boxes_b (`array-like` of shape `(M, 4)`): `xyxy` boxes in the same frame as `boxes_a`.

    Returns:
        `np.ndarray` of shape `(N, M)`, `float32` when both inputs are `float32`, else `float64`, with values in
        `[0, 1]`; invalid and degenerate boxes score `0` (see the module docstring).

    Example:
    ```python
    >>> box_iou([[0, 0, 2, 2], [5, 5, 6, 6]], [[1, 1, 3, 3]]).round(4).tolist()
    [[0.1429], [0.0]]

    ```
    """
    a = np.asarray(boxes_a)
    b = np.asarray(boxes_b)
    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    a = a.astype(dtype, copy=False).reshape(-1, 4)
    b = b.astype(dtype, copy=False).reshape(-1, 4)
    n, m = len(a), len(b)
    out = np.empty((n, m), dtype=dtype)
    if out.size == 0:
        return out
    # Fresh (N, M) temporaries page-fault on first write and cost more than the arithmetic: work in the output and
    # two scratch buffers, in row blocks small enough to stay in cache (benchmarks/notes_box_iou.md: ~3x).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
        area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
        area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
        ax1, ay1, ax2, ay2 = (column[:, None] for column in a.T)
        bx1, by1, bx2, by2 = np.ascontiguousarray(b.T)
        rows = max(1, min(n, _BLOCK // m))
        scratch_tmp = np.empty((rows, m), dtype=dtype)
        scratch_side = np.empty((rows, m), dtype=dtype)
        for start in range(0, n, rows):
            block = slice(start, min(start + rows, n))
            inter, tmp, side = out[block], scratch_tmp[: len(out[block])], scratch_side[: len(out[block])]
            np.minimum(ax2[block], bx2, out=inter)  # intersection width
            np.maximum(ax1[block], bx1, out=tmp)
            inter -= tmp
            np.maximum(inter, 0, out=inter)
            np.minimum(ay2[block], by2, out=side)  # intersection height
            np.maximum(ay1[block], by1, out=tmp)
            side -= tmp
            np.maximum(side, 0, out=side)
            inter *= side
            np.add(area_a[block, None], area_b, out=tmp)  # union
            tmp -= inter
            inter /= tmp
        # Rounding is monotonic, so for finite input inter <= each area and the ratio lies in [0, 1]. Every other
        # case (0/0 between degenerate boxes, NaN coordinates, inf/inf after overflow) is NaN, which fmax maps to 0.
        np.fmax(out, 0, out=out)
        np.minimum(out, 1, out=out)
    return out


def iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU of two boxes, in plain Python: the per-completion hot path of the rewards.

    Same rule and same values as `box_iou` (a property test checks it); a 1x1 `box_iou` call costs ~20x more, which
    matters at tens of thousands of completions per second.

    Example:
    ```python
    >>> iou((0, 0, 2, 2), (1, 1, 3, 3))
    0.14285714285714285
    >>> iou((0, 0, 0, 5), (0, 0, 0, 5)), iou((0, 0, float("nan"), 1), (0, 0, 1, 1))
    (0.0, 0.0)

    ```
    """
    try:
        ax1, ay1, ax2, ay2 = map(float, box_a)
        bx1, by1, bx2, by2 = map(float, box_b)
        # explicit: min/max keep or drop a NaN depending on argument order
        finite = math.isfinite
        if not (finite(ax1) and finite(ay1) and finite(ax2) and finite(ay2)):
            return 0.0
        if not (finite(bx1) and finite(by1) and finite(bx2) and finite(by2)):
            return 0.0
        iw = min(ax2, bx2) - max(ax1, bx1)
        ih = min(ay2, by2) - max(ay1, by1)
        inter = (iw if iw > 0 else 0.0) * (ih if ih > 0 else 0.0)
        wa, ha, wb, hb = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
        union = (wa if wa > 0 else 0.0) * (ha if ha > 0 else 0.0) + (wb if wb > 0 else 0.0) * (hb if hb > 0 else 0.0)
        union -= inter
        if not union > 0:
            return 0.0
        value = inter / union
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return 0.0
    if not math.isfinite(value):
        return 0.0
    return min(max(value, 0.0), 1.0)


def is_valid_box(box: Sequence[float]) -> bool:
    """Four finite coordinates with `x1 < x2` and `y1 < y2`: a box that can have a positive IoU.

    Example:
    ```python
    >>> is_valid_box([0.1, 0.1, 0.5, 0.5]), is_valid_box([0.5, 0.1, 0.1, 0.5]), is_valid_box([0, 0, 1])
    (True, False, False)

    ```
    """
    try:
        if len(box) != 4:
            return False
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return False
    return all(math.isfinite(v) for v in (x1, y1, x2, y2)) and x1 < x2 and y1 < y2


def repair_box(box: Sequence[float]) -> tuple[Box, bool]:
    """Repair a *gold* canonical box once, at build time: sort each axis, clip to `[0, 1]`.

    Returns the repaired box and whether anything changed, so builders can count repairs in the card.

    Raises:
        `ValueError`: the box does not have four finite coordinates (a data error, not model output).

    Example:
    ```python
    >>> repair_box([0.027, 0.18, 0.143, 0.051])  # MIG-Bench record 7: y inverted
    ((0.027, 0.051, 0.143, 0.18), True)
    >>> repair_box([0.319, 0.186, 1.048, 0.535])  # record 34: beyond the right edge
    ((0.319, 0.186, 1.0, 0.535), True)

    ```
    """
    values = [float(v) for v in box]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"a gold box needs four finite coordinates, got {list(box)!r}")
    x1, x2 = sorted((values[0], values[2]))
    y1, y2 = sorted((values[1], values[3]))
    fixed = tuple(min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    return fixed, fixed != tuple(values)


def match_boxes(
    pred: np.ndarray | Sequence[Sequence[float]], gold: np.ndarray | Sequence[Sequence[float]]
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Optimal one-to-one matching of predicted to gold boxes, maximising the summed IoU (Hungarian, scipy).

    Args:
        pred (`array-like` of shape `(N, 4)`): predicted boxes.
        gold (`array-like` of shape `(M, 4)`): gold boxes in the same frame.

    Returns:
        `(pairs, ious)`: the `min(N, M)` matched `(pred_index, gold_index)` pairs and their IoUs. Pairs with IoU 0 are
        kept: callers decide what a zero match means.

    Example:
    ```python
    >>> pairs, ious = match_boxes([[5, 5, 6, 6], [0, 0, 2, 2]], [[0, 0, 2, 2], [5, 5, 6, 6.5]])
    >>> pairs, ious.round(3).tolist()
    ([(0, 1), (1, 0)], [0.667, 1.0])

    ```
    """
    from scipy.optimize import linear_sum_assignment  # scipy costs ~0.2 s to import; only matching needs it

    matrix = box_iou(pred, gold)
    if matrix.size == 0:
        return [], np.zeros(0, dtype=matrix.dtype)
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols)], matrix[rows, cols]
