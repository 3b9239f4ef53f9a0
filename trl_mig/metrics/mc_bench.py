"""MC-Bench metrics: instance-level `ap50` (COCO evaluation, as MC-Bench scores) and image-level `image_acc`.

MC-Bench pairs each text prompt with two images; targets may lie in one image, both, or neither (negatives), with
several boxes per image. Model answers are read by `trl_mig.parsing.parse_answer` and converted with
`trl_mig.scoring.canonical_box`, like every other metric, then written back as COCO results in original pixels.

Rules (DESIGN.md section 4 keys `ap50`, `image_acc`):
- every predicted box of a row is one detection in the image it names, scored with the answer's confidence (the
  evaluator passes `exp(mean token log-prob)` per output) or `1` when none is given;
- unparsable output and an explicit "no target" answer give no detections;
- a box naming no image, or an image the row does not have, or that cannot be converted, is *dropped* and counted
  per row in `flags["dropped_boxes"]`: COCO results must name an image, and guessing one would score the model on a
  claim it did not make;
- a box written inverted or degenerate (`x2 <= x1` or `y2 <= y1`, box rule 3) stays a detection of zero size: it
  claimed a target, so it is a false positive that can never match (a negative COCO area would be *ignored* instead);
- `ap50` is `COCOeval(..., "bbox").stats[1]` (AP at IoU 0.5, all areas, 100 detections per image) on a gold COCO set
  rebuilt from the rows (`mc_bench_gold`); `0.0` when there are gold boxes but no detections, `None` when the rows
  have no gold box at all (COCO reports -1: AP is undefined);
- `image_acc`: per image, "has target" predicted (any detection in it) against gold (any gold box in it), over all
  images; an unparsable answer is never read as "no target" (DESIGN.md section 4), so both its images count wrong.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..geometry import from_canonical
from ..import_utils import require
from ..parsing import Prediction, parse_answer
from ..scoring import FrameSpec, canonical_box


#: columns the metric reads from a row (a `datasets.Dataset` is narrowed to them so images are not decoded)
ROW_COLUMNS = ("id", "image_sizes", "solution", "target_image", "task", "frame", "resized_sizes")
_PURPOSE = "MC-Bench AP50 (the official COCO evaluation)"


def _load_pycocotools() -> tuple[Any, Any]:
    """`COCO`, `COCOeval`; an `ImportError` naming the `coco` extra when pycocotools cannot be imported."""
    require("pycocotools", _PURPOSE)
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:  # installed but broken or hidden: same hint as `require`
        hint = "pip install 'trl-mig[coco]'"
        raise ImportError(f"{_PURPOSE} needs `pycocotools`, which cannot be imported ({exc}): {hint}") from exc
    return COCO, COCOeval


def _light_rows(rows: Any) -> list[Mapping[str, Any]]:
    """Rows as a list of mappings; a `datasets.Dataset` keeps only `ROW_COLUMNS` (decoding images is slow)."""
    if hasattr(rows, "select_columns") and hasattr(rows, "column_names"):
        rows = rows.select_columns([c for c in ROW_COLUMNS if c in rows.column_names])
    return list(rows)


def _row_ids(row: Mapping[str, Any], coco_ids: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The sidecar entry of a row; a missing one is a data error (wrong `coco_ids.json`), so it raises."""
    rid = str(row["id"])
    if rid not in coco_ids:
        raise ValueError(f"row {rid!r} has no entry in the COCO ids (is `coco_ids` from the same built folder?)")
    entry = coco_ids[rid]
    if len(entry["image_ids"]) != len(row["image_sizes"]):
        raise ValueError(f"row {rid!r}: {len(entry['image_ids'])} COCO image ids for {len(row['image_sizes'])} images")
    return entry


def _pixel_xywh(box: Sequence[float], size: Sequence[int]) -> list[float]:
    """Canonical `xyxy` -> original-pixel COCO `xywh`; inverted sides become 0 (a detection that cannot match)."""
    x, y, w, h = from_canonical(box, "coco_xywh", size, integer=False)
    return [float(x), float(y), max(float(w), 0.0), max(float(h), 0.0)]


def mc_bench_gold(rows: Any, coco_ids: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The gold COCO set of `rows` (images, annotations, categories), rebuilt from canonical boxes and the sidecar.

    Dump it with the detections (`mc_bench_detections`) to run the official scorer yourself. Boxes are the built
    (repaired) gold in original pixels, `area = w * h` as MC-Bench stores it, `iscrowd = 0`. Every annotation takes its
    row's `category_id`, the one detections are reported under. Annotation ids are renumbered from 1: `COCOeval`
    stores the matched gold id and reads `0` as "unmatched", so a gold box with id 0 could never be found.

    Example:
    ```python
    >>> row = {"id": "0", "image_sizes": [[200, 100], [50, 50]], "solution": [[0.1, 0.1, 0.5, 0.5]],
    ...        "target_image": [0]}
    >>> gold = mc_bench_gold([row], {"0": {"image_ids": [7, 8], "category_id": 1}})
    >>> gold["annotations"]
    [{'id': 1, 'image_id': 7, 'category_id': 1, 'bbox': [20.0, 10.0, 80.0, 40.0], 'area': 3200.0, 'iscrowd': 0}]
    >>> [image["id"] for image in gold["images"]], gold["categories"]
    ([7, 8], [{'id': 1, 'name': 'category 1'}])

    ```
    """
    images, annotations, categories, seen = [], [], set(), set()
    for row in _light_rows(rows):
        entry = _row_ids(row, coco_ids)
        categories.add(entry["category_id"])
        for image_id, (width, height) in zip(entry["image_ids"], row["image_sizes"]):
            if image_id in seen:
                raise ValueError(f"row {row['id']!r}: COCO image id {image_id} already belongs to another row")
            seen.add(image_id)
            images.append({"id": image_id, "width": int(width), "height": int(height)})
        for box, target in zip(row["solution"] or [], row["target_image"] or []):
            bbox = _pixel_xywh(box, row["image_sizes"][target])
            annotations.append({"id": len(annotations) + 1, "image_id": entry["image_ids"][target],
                                "category_id": entry["category_id"], "bbox": bbox, "area": bbox[2] * bbox[3],
                                "iscrowd": 0})  # fmt: skip
    return {
        "info": {"description": "MC-Bench gold rebuilt by trl-mig (mc_bench_gold)"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"category {c}"} for c in sorted(categories)],
    }


def _checked_confidences(confidences: Sequence[float | None] | None, n: int) -> list[float]:
    """Per-output detection scores: the confidence when given, else 1 (DESIGN.md section 4)."""
    if confidences is None:
        return [1.0] * n
    if len(confidences) != n:
        raise ValueError(f"`confidences` has {len(confidences)} entries for {n} outputs")
    scores = [1.0 if c is None else float(c) for c in confidences]
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:  # NaN breaks the ranking; the caller computed it, so this is a caller bug, not model output
        raise ValueError(f"`confidences` must be finite; outputs {bad[:5]} are not")
    return scores


def _parse(output: Any) -> Prediction | None:
    """The parse of one output (raw text, messages or an already parsed `Prediction`); never raises."""
    return output if isinstance(output, Prediction) or output is None else parse_answer(output)


def _row_detections(
    prediction: Prediction | None, row: Mapping[str, Any], entry: Mapping[str, Any], spec: FrameSpec, score: float
) -> tuple[list[dict[str, Any]], int]:
    """COCO results for one row's answer, and how many of its boxes were dropped (no/unknown image, unconvertible)."""
    if prediction is None:
        return [], 0
    sizes = row["image_sizes"]
    row_spec = spec.with_frame(row.get("frame"))
    detections, dropped = [], 0
    for box, image in zip(prediction.boxes, prediction.images):
        canon = None
        if image is not None and 0 <= image < len(sizes):
            canon = canonical_box(box, image, row_spec, sizes, row.get("resized_sizes"))
        if canon is None:
            dropped += 1
            continue
        detections.append({"image_id": entry["image_ids"][image], "category_id": entry["category_id"],
                           "bbox": _pixel_xywh(canon, sizes[image]), "score": score})  # fmt: skip
    return detections, dropped


def mc_bench_detections(
    outputs: Sequence[Any],
    rows: Any,
    coco_ids: Mapping[str, Mapping[str, Any]],
    *,
    spec: FrameSpec,
    confidences: Sequence[float | None] | None = None,
) -> list[dict[str, Any]]:
    """COCO-style results `[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]` for every predicted box.

    Args:
        outputs (`list`): per row, the model output (text, TRL messages, or a `Prediction` in `spec`'s frame).
        rows (`list` or `datasets.Dataset`): MC-Bench schema rows, same order (`id`, `image_sizes`, ...).
        coco_ids (`dict`): `load_coco_ids(built_folder)`: row id -> `image_ids` (row image order), `category_id`.
        spec (`FrameSpec`): the declared frame of the answers (a row's `frame` column overrides it).
        confidences (`list`, *optional*): per output, the answer's confidence (`None` entries = 1).

    Boxes naming no image or an image the row lacks are dropped (see the module docstring).
    """
    rows = _light_rows(rows)
    if len(outputs) != len(rows):
        raise ValueError(f"{len(outputs)} outputs for {len(rows)} rows")
    scores = _checked_confidences(confidences, len(rows))
    detections: list[dict[str, Any]] = []
    for output, row, score in zip(outputs, rows, scores):
        detections += _row_detections(_parse(output), row, _row_ids(row, coco_ids), spec, score)[0]
    return detections


def _ap50(gold: dict[str, Any], detections: list[dict[str, Any]]) -> float | None:
    """`COCOeval` bbox AP at IoU 0.5 (`stats[1]`), its prints silenced; 0 without detections, `None` without gold."""
    coco_cls, eval_cls = _load_pycocotools()
    if not gold["annotations"]:
        return None
    if not detections:
        return 0.0  # `loadRes([])` fails on `anns[0]`; no detection finds nothing
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gold = coco_cls()
        coco_gold.dataset = gold
        coco_gold.createIndex()
        coco_dets = coco_gold.loadRes([dict(d) for d in detections])  # loadRes writes ids and areas into its input
        evaluator = eval_cls(coco_gold, coco_dets, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])


def _image_hits(
    answered: bool, row: Mapping[str, Any], entry: Mapping[str, Any], detections: list[dict[str, Any]]
) -> list[bool]:
    """Per image of a row, whether "has target" was predicted right; an unanswered row is wrong everywhere."""
    gold = {int(t) for t in row["target_image"] or []}
    claimed = {d["image_id"] for d in detections}
    if not answered:
        return [False] * len(entry["image_ids"])
    return [(image_id in claimed) == (i in gold) for i, image_id in enumerate(entry["image_ids"])]


@dataclass
class _Group:
    """The rows of one reported group (overall or one task), their detections and per-image hits."""

    rows: list[Mapping[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)

    def summary(self, coco_ids: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """`{"ap50", "image_acc", "n"}`: AP from this group's own COCO evaluation, so tasks are scored apart."""
        return {
            "ap50": _ap50(mc_bench_gold(self.rows, coco_ids), self.detections),
            "image_acc": sum(self.hits) / len(self.hits) if self.hits else None,
            "n": len(self.rows),
        }


def compute_mc_bench_metrics(
    outputs: Sequence[Any],
    rows: Any,
    coco_ids: Mapping[str, Mapping[str, Any]],
    *,
    spec: FrameSpec,
    confidences: Sequence[float | None] | None = None,
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """MC-Bench `ap50` and `image_acc`, overall and per `text_style`.

    Args:
        outputs, rows, coco_ids, spec, confidences: as in `mc_bench_detections`.
        tasks (`list[str]`, *optional*): per row, the group name; defaults to the row's `task` (the builder's
            lowercased `text_style`: `referring`, `comparison`, `reasoning`).

    Returns:
        `dict`: `{"overall": {"ap50", "image_acc", "n"}, "tasks": {task: {...}}, "flags": {"unparsable": [row ids],
        "dropped_boxes": {row id: count}}}`. `ap50` is computed per group by its own COCO evaluation (`None` for a
        group without gold boxes).

    Raises:
        `ImportError`: pycocotools is missing (`pip install 'trl-mig[coco]'`).
    """
    _load_pycocotools()  # fail before any work
    rows = _light_rows(rows)
    if len(outputs) != len(rows):
        raise ValueError(f"{len(outputs)} outputs for {len(rows)} rows")
    if tasks is not None and len(tasks) != len(rows):
        raise ValueError(f"`tasks` has {len(tasks)} entries for {len(rows)} rows")
    scores = _checked_confidences(confidences, len(rows))
    groups: dict[str, _Group] = {}
    overall = _Group()
    flags: dict[str, Any] = {"unparsable": [], "dropped_boxes": {}}
    for k, (output, row, score) in enumerate(zip(outputs, rows, scores)):
        entry = _row_ids(row, coco_ids)
        prediction = _parse(output)
        answered = prediction is not None and (bool(prediction.boxes) or prediction.no_target)
        detections, dropped = _row_detections(prediction if answered else None, row, entry, spec, score)
        if not answered:
            flags["unparsable"].append(str(row["id"]))
        if dropped:
            flags["dropped_boxes"][str(row["id"])] = dropped
        task = str(tasks[k] if tasks is not None else row.get("task", ""))
        hits = _image_hits(answered, row, entry, detections)
        for group in (overall, groups.setdefault(task, _Group())):
            group.rows.append(row)
            group.detections.extend(detections)
            group.hits.extend(hits)
    return {
        "overall": overall.summary(coco_ids),
        "tasks": {task: group.summary(coco_ids) for task, group in sorted(groups.items())},
        "flags": flags,
    }
