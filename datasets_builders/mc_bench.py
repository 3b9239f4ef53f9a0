"""MC-Bench v0.2 -> schema rows (parquet + card + COCO ids): `trl-mig build mc_bench --annotations JSON ...`.

MC-Bench (multi-context visual grounding, https://huggingface.co/papers/2410.12332) ships a COCO-like JSON
(`descriptions`, `images`, `annotations`, `categories`; see `shared/data/FORMATS.md`) and the images separately;
`--image-root` is the folder the `file_name`s are relative to.

What the builder does to each description (`id` = `str(description id)`):
- images: the pair `images_id`, ordered by each image's `inter_img_id`; sizes from the JSON, checked against the file;
- solution: every annotation of the description, COCO pixel `xywh` -> canonical `xyxy`, ordered by (image, annotation
  id); `target_image` = the 0-based position of the box's image in the pair; a negative (`positive_sample: false`)
  has `solution == []` and `target_image == []`;
- gold boxes inverted or partly beyond the image are repaired once (sorted, clipped) and counted; a box with nothing
  left inside the image is a bad record;
- task = `text_style` lowercased (`referring`, `comparison`, `reasoning`).

COCO ids for the official scorer (COCO-style results `[{"image_id", "category_id", "bbox", "score"}]`) are written as
a sidecar, `OUT/coco_ids.json` (named in the card metadata as `coco_ids_file`):
`{"format": "mc-bench-coco-ids-v1", "split": ..., "rows": {row id: {"image_ids": [a, b], "category_id": c,
"category_ids": [...], "annotation_ids": [...]}}}`; `image_ids` follow the row's image order, so a prediction in image
`i` is reported under `image_ids[i]`. `category_id` is the row's single annotation category (the smallest one when a
row has several), or for a negative the smallest id in `categories`.

Bad records (named by description or annotation id, with the reason): missing or unreadable image, image path
outside the image root (`..`, absolute, a symlink out: never read), image size mismatch, unknown image id, image count != 2, annotation image not in the pair, box outside the image, malformed box,
unknown text_style, negative with boxes, positive without boxes, annotation for a missing description, malformed
annotation, missing field (a key the conversion reads is absent or null), malformed field (of the wrong type: `text`
not text, `images_id` not a list of ids, `inter_img_id` not an integer, ...), bad image size (`width` / `height` not
a positive integer). Strict by default (a benchmark): the first one raises and nothing is written; `--no-strict`
skips and counts them in the card. Only `BadRecordError` leaves `convert_description` for a malformed record.

Streaming: rows go to parquet as they are converted (`ParquetShardWriter`, one row group held), their COCO ids to the
sidecar file, and the card's counts are tallied on the way, so memory does not grow with the number of descriptions.
Data, card and sidecar are written into a staging folder beside `--output-dir`, moved into place only when complete.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_mig.geometry import Frame, is_valid_box, repair_box, to_canonical
from trl_mig.schema import features, validate_row

from .paths import read_image
from .writer import BadRecordError, ParquetShardWriter, render_dataset_card, staging_dir


logger = logging.getLogger(__name__)

NAME = "mc_bench"
TEXT_STYLES = ("referring", "comparison", "reasoning")
COCO_IDS_FILE = "coco_ids.json"
COCO_IDS_FORMAT = "mc-bench-coco-ids-v1"


@dataclass
class BuildArguments:
    """Arguments of `trl-mig build mc_bench`."""

    annotations: str = field(metadata={"help": "The MC-Bench v0.2 annotation JSON (COCO-like)."})
    image_root: str = field(metadata={"help": "Folder the `file_name`s of the annotation JSON are relative to."})
    output_dir: str = field(
        default="mc_bench", metadata={"help": "Where to write README.md + data/*.parquet + coco_ids.json."}
    )
    split: str = field(default="test", metadata={"help": "Split name of the single split MC-Bench has."})
    strict: bool = field(
        default=True,
        metadata={"help": "Stop at the first bad record, writing nothing (benchmarks are strict by default)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir."})
    limit: int | None = field(default=None, metadata={"help": "Build only the first N descriptions (smoke tests)."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub id written in the card's usage snippet."})


def _bad(did: Any, reason: str, detail: str = "") -> BadRecordError:
    return BadRecordError(f"MC-Bench description {did}: {reason}" + (f" {detail}" if detail else ""), reason)


def _is_id(value: Any) -> bool:
    """A usable COCO id: an integer or a string (hashable, JSON-serialisable, comparable with its own kind)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _id_key(value: Any) -> tuple[bool, Any]:
    """Sort key for ids that may mix integers and strings (integers first)."""
    return isinstance(value, str), value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _image_size(entry: Mapping[str, Any], did: Any) -> tuple[int, int]:
    """`(width, height)` of an image entry, positive integers; a bad record otherwise."""
    sizes = []
    for key in ("width", "height"):
        value = entry.get(key)
        if value is None:
            raise _bad(did, "missing field", f"(image {entry.get('id')!r}: `{key}`)")
        try:
            number = int(value) if not isinstance(value, bool) and float(value).is_integer() else None
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is None or number <= 0:
            raise _bad(did, "bad image size", f"(image {entry.get('id')!r}: `{key}` {value!r})")
        sizes.append(number)
    return sizes[0], sizes[1]


def _order_key(entry: Mapping[str, Any], did: Any) -> int:
    """An image's place in the pair (`inter_img_id`, 0 when absent)."""
    value = entry.get("inter_img_id", 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(did, "malformed field", f"(image {entry.get('id')!r}: `inter_img_id` {value!r} is not an integer)")
    return value


def _check_annotation(ann: Any, did: Any) -> None:
    """An annotation object with an id, an image id, a box and (optionally) an integer or string category."""
    if not isinstance(ann, Mapping):
        raise _bad(did, "malformed annotation", f"(an annotation is {type(ann).__name__}, not an object)")
    for key in ("id", "image_id", "bbox"):
        if ann.get(key) is None:
            raise _bad(did, "missing field", f"(annotation {ann.get('id')!r}: `{key}`)")
    if not _is_id(ann["id"]):
        raise _bad(did, "malformed field", f"(annotation id {ann['id']!r})")
    category = ann.get("category_id")
    if category is not None and not _is_id(category):
        raise _bad(did, "malformed field", f"(annotation {ann['id']!r}: `category_id` {category!r})")


def convert_box(bbox: Any, image_size: tuple[int, int], did: Any, ann_id: Any) -> tuple[tuple[float, ...], bool]:
    """COCO pixel `[x, y, w, h]` -> canonical `xyxy`, repaired once; returns the box and whether it was repaired.

    Example:
    ```python
    >>> convert_box([20, 10, 40, 30], (200, 100), 0, 0)
    ((0.1, 0.1, 0.3, 0.4), False)
    >>> convert_box([180, 10, 40, 30], (200, 100), 0, 1)  # beyond the right edge: clipped
    ((0.9, 0.1, 1.0, 0.4), True)

    ```
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise _bad(did, "malformed box", f"(annotation {ann_id}: {bbox!r})")
    try:
        values = [float(v) for v in bbox]
    except OverflowError as exc:  # an integer beyond float range
        raise _bad(did, "malformed box", f"(annotation {ann_id}: {bbox!r})") from exc
    if not all(math.isfinite(v) for v in values):
        raise _bad(did, "malformed box", f"(annotation {ann_id}: {bbox!r})")
    width, height = image_size
    if not (_is_number(width) and _is_number(height) and width > 0 and height > 0):
        raise _bad(did, "bad image size", f"(annotation {ann_id}: image size {image_size!r})")
    raw = to_canonical(values, Frame.COCO_XYWH, image_size, clip=False)
    if not all(math.isfinite(v) for v in raw):  # x + w or y + h overflowed
        raise _bad(did, "malformed box", f"(annotation {ann_id}: {bbox!r} overflows)")
    fixed, repaired = repair_box(raw)
    if not is_valid_box(fixed):
        inside = all(0.0 <= v <= 1.0 for v in raw)
        reason = "degenerate box" if inside else "box outside the image"
        raise _bad(did, reason, f"(annotation {ann_id}: bbox {bbox!r} in a {image_size[0]}x{image_size[1]} image)")
    return fixed, repaired


def description_id(description: Any, position: int | None = None) -> Any:
    """The id of a description (an integer or a string); a bad record naming its position when it has none."""
    where = f"at position {position}" if position is not None else "(no id)"
    if not isinstance(description, Mapping):
        raise _bad(where, "not a JSON object", f"(got {type(description).__name__})")
    did = description.get("id")
    if did is None:
        raise _bad(where, "missing field", "(`id`)")
    if not _is_id(did):
        raise _bad(where, "malformed field", f"(`id` {did!r})")
    return did


def _read_image(root: Path, entry: Mapping[str, Any], did: Any) -> dict[str, Any]:
    file_name = entry.get("file_name")
    if file_name is None:
        raise _bad(did, "missing field", f"(image {entry.get('id')!r}: `file_name`)")
    if not isinstance(file_name, str):
        raise _bad(did, "malformed field", f"(image {entry.get('id')!r}: `file_name` {file_name!r})")
    relative = file_name.removeprefix("./")
    path, data, size = read_image(root, relative, f"MC-Bench description {did}")
    declared = _image_size(entry, did)
    if tuple(size) != declared:
        raise _bad(did, "image size mismatch", f"{path}: the JSON says {declared[0]}x{declared[1]}, file {size}")
    return {"bytes": data, "path": relative}


def convert_description(
    description: Mapping[str, Any],
    images_by_id: Mapping[Any, Mapping[str, Any]],
    annotations: list[Mapping[str, Any]],
    image_root: Path,
    position: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One description (+ its annotations) -> one schema row and its COCO ids / counters.

    Raises `BadRecordError` naming `description {id}` (`description at position {position}` when it has no usable id)
    and the reason for a malformed description: never another exception type, so `--no-strict` can skip and count it.
    """
    did = description_id(description, position)
    style = str(description.get("text_style", "")).lower()
    if style not in TEXT_STYLES:
        raise _bad(did, "unknown text_style", f"{description.get('text_style')!r} (known: {', '.join(TEXT_STYLES)})")
    text = description.get("text")
    if text is None:
        raise _bad(did, "missing field", "(`text`)")
    if not isinstance(text, str):
        raise _bad(did, "malformed field", f"(`text` is {type(text).__name__}, not text)")
    raw_ids = description.get("images_id") or []
    if not isinstance(raw_ids, (list, tuple)) or not all(_is_id(i) for i in raw_ids):
        raise _bad(did, "malformed field", f"(images_id {raw_ids!r} is not a list of image ids)")
    image_ids = list(raw_ids)
    if len(image_ids) != 2:
        raise _bad(did, "image count != 2", f"(images_id {image_ids!r})")
    unknown = [i for i in image_ids if not isinstance(images_by_id.get(i), Mapping)]
    if unknown:
        raise _bad(did, "unknown image id", f"{unknown!r}")
    ordered_ids = sorted(image_ids, key=lambda i: _order_key(images_by_id[i], did))  # stable: ties keep file order
    entries = [images_by_id[i] for i in ordered_ids]
    sizes = [_image_size(e, did) for e in entries]
    if not isinstance(annotations, list):
        raise _bad(did, "malformed annotation", f"(annotations {type(annotations).__name__}, not a list)")
    for ann in annotations:
        _check_annotation(ann, did)
    positive = bool(description.get("positive_sample", True))
    if not positive and annotations:
        raise _bad(did, "negative with boxes", f"(annotations {[a['id'] for a in annotations]})")
    if positive and not annotations:
        raise _bad(did, "positive without boxes")
    boxes, n_repaired = [], 0
    for ann in annotations:
        if ann["image_id"] not in ordered_ids:
            raise _bad(did, "annotation image not in the pair", f"(annotation {ann['id']}: image {ann['image_id']!r})")
        target = ordered_ids.index(ann["image_id"])
        box, repaired = convert_box(ann["bbox"], sizes[target], did, ann["id"])
        n_repaired += repaired
        boxes.append((target, ann["id"], box, ann.get("category_id")))
    boxes.sort(key=lambda b: (b[0], _id_key(b[1])))
    images = [_read_image(image_root, entry, did) for entry in entries]
    row = {
        "id": str(did),
        "images": images,
        "question": text.strip(),
        "solution": [list(b[2]) for b in boxes],
        "target_image": [b[0] for b in boxes],
        "image_sizes": [list(s) for s in sizes],
        "task": style,
        "source": NAME,
    }
    try:
        validate_row(row)
    except ValueError as exc:  # every field was checked above: a safety net, still a bad record naming it
        raise _bad(did, "invalid row", f"({exc})") from exc
    categories = sorted({b[3] for b in boxes if b[3] is not None}, key=_id_key)
    extra = {"image_ids": ordered_ids, "category_ids": categories, "annotation_ids": [b[1] for b in boxes]}
    return row, {"coco": extra, "repaired": n_repaired}


def with_category(coco: dict[str, Any], category_ids: list[Any]) -> dict[str, Any]:
    """A row's COCO ids with its single `category_id`: its annotations' smallest category, else the file's first
    (negatives have no annotation; their detections still need a category for the official scorer)."""
    coco["category_id"] = coco["category_ids"][0] if coco["category_ids"] else category_ids[0]
    return coco


def file_categories(data: Mapping[str, Any]) -> list[Any]:
    """The category ids an MC-Bench file declares, sorted (`[1]` when it declares none)."""
    return sorted(c["id"] for c in data.get("categories", [])) or [1]


def _group_annotations(data: Mapping[str, Any], strict: bool, skipped: Counter) -> dict[Any, list]:
    description_ids = {
        d["id"] for d in data.get("descriptions", []) if isinstance(d, Mapping) and _is_id(d.get("id"))
    }  # fmt: skip
    grouped: dict[Any, list] = defaultdict(list)
    for position, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, Mapping):
            reason = "malformed annotation"
            message = f"MC-Bench annotation at position {position}: {reason} (got {type(ann).__name__})"
        elif not _is_id(ann.get("text_id")) or ann["text_id"] not in description_ids:
            reason = "annotation for a missing description"
            message = f"MC-Bench annotation {ann.get('id')}: {reason} {ann.get('text_id')}"
        else:
            grouped[ann["text_id"]].append(ann)
            continue
        if strict:
            raise BadRecordError(message, reason)
        skipped[reason] += 1
        logger.warning("skipping: %s", message)
    return grouped


class _CocoIdsWriter:
    """Writes the sidecar as rows come, byte for byte what `json.dumps(payload, indent=1)` writes for the whole
    payload, so no row's ids are held."""

    def __init__(self, path: Path, split: str) -> None:
        self.handle = path.open("w")
        head = json.dumps({"format": COCO_IDS_FORMAT, "split": split, "rows": {}}, indent=1)
        self.handle.write(head.removesuffix("{}\n}"))  # up to `"rows": `
        self.n = 0

    def add(self, row_id: str, coco: Mapping[str, Any]) -> None:
        value = json.dumps(coco, indent=1).replace("\n", "\n  ")  # nested two levels deep
        self.handle.write(("{" if not self.n else ",") + f"\n  {json.dumps(row_id)}: {value}")
        self.n += 1

    def close(self) -> None:
        self.handle.write("\n }\n}" if self.n else "{}\n}")
        self.handle.close()


@dataclass
class _Tally:
    """What the card reports, counted while rows stream past (no row is kept)."""

    rows: int = 0
    task_rows: Counter = field(default_factory=Counter)
    boxes_per_row: Counter = field(default_factory=Counter)
    negatives: int = 0
    both_images: int = 0
    repairs: list = field(default_factory=list)
    n_repaired: int = 0

    def add(self, row: Mapping[str, Any], repaired: int) -> None:
        self.rows += 1
        self.task_rows[str(row["task"])] += 1
        self.boxes_per_row[len(row["solution"])] += 1
        self.negatives += not row["solution"]
        self.both_images += len(set(row["target_image"])) == 2
        if repaired:
            self.repairs.append(row["id"])
            self.n_repaired += repaired


def _card(args: BuildArguments, tally: _Tally, skipped: Counter, n_descriptions: int) -> str:
    boxes_per_row = tally.boxes_per_row
    extra_stats: dict[str, Any] = {
        "descriptions in the annotation file": n_descriptions,
        "negative rows (no target, solution [])": tally.negatives,
        "rows with targets in both images": tally.both_images,
        "gold boxes": sum(boxes_per_row[n] * n for n in boxes_per_row),
        "gold boxes repaired": tally.n_repaired,
    }
    extra_stats.update({f"rows with {n} gold boxes": boxes_per_row[n] for n in sorted(boxes_per_row)})
    return render_dataset_card(
        pretty_name="MC-Bench (trl-mig schema)",
        description=(
            "MC-Bench v0.2, the multi-context visual grounding benchmark (https://huggingface.co/papers/2410.12332), "
            "converted to trl-mig's model-agnostic schema: one row per text prompt over an image pair, every gold box "
            "canonical with the image it lies in; negatives have no target (`solution == []`). The official metrics "
            f"(instance-level AP50, image-level accuracy) need the COCO ids kept in `{COCO_IDS_FILE}` beside the data."
        ),
        builder=NAME,
        split_rows={args.split: tally.rows},
        license="other",
        repo_id=args.repo_id or "<org>/<name>",
        task_rows=dict(tally.task_rows),
        repairs=tally.repairs,
        skipped=dict(skipped),
        extra_stats=extra_stats,
        source_note=(
            "Annotations and images: MC-Bench v0.2 (https://xuyunqiu.github.io/MC-Bench), from the user's download. "
            "No licence is stated in the annotation file; the images come from public sources with their own "
            "licences: check the project page before redistributing (hence `license: other`)."
        ),
        metadata={"repaired_gold_ids": tally.repairs, "strict": args.strict, "coco_ids_file": COCO_IDS_FILE},
    )


def build(args: BuildArguments) -> dict[str, Any]:
    """Convert the annotation file, streaming rows to parquet and COCO ids to `coco_ids.json`; data, card and sidecar
    are moved into place together (atomically). Returns what was written."""
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; pass overwrite=True (`--overwrite`) to replace it")
    data = json.loads(Path(args.annotations).read_text())  # annotations only: the images are what streams
    descriptions = list(data.get("descriptions", []))
    if args.limit is not None:
        descriptions = descriptions[: args.limit]
    # an image entry without a usable id cannot be named by a description (which then has an "unknown image id")
    images_by_id = {
        image["id"]: image for image in data.get("images", []) if isinstance(image, Mapping) and _is_id(image.get("id"))
    }  # fmt: skip
    category_ids = file_categories(data)
    skipped: Counter = Counter()
    by_text = _group_annotations(data, args.strict, skipped)
    root = Path(args.image_root)
    tally = _Tally()
    with staging_dir(output_dir) as staging:
        shards = ParquetShardWriter(staging / "data", args.split, features())
        # written beside the data under a hidden name, renamed once complete: the folder moves into place with it
        coco_ids = _CocoIdsWriter(staging / f".{COCO_IDS_FILE}.partial", args.split)
        try:
            for position, description in enumerate(descriptions):
                try:
                    did = description_id(description, position)
                    row, info = convert_description(description, images_by_id, by_text.get(did, []), root, position)
                except BadRecordError as exc:
                    if args.strict:
                        raise
                    skipped[exc.reason] += 1
                    logger.warning("skipping: %s", exc)
                    continue
                shards.add(row)
                coco_ids.add(row["id"], with_category(info["coco"], category_ids))
                tally.add(row, info["repaired"])
                del row  # the writer holds it until its row group is written; nothing else does
        finally:
            coco_ids.close()
        shards.close()
        (staging / "README.md").write_text(_card(args, tally, skipped, len(data.get("descriptions", []))))
        (staging / f".{COCO_IDS_FILE}.partial").rename(staging / COCO_IDS_FILE)
    counts = {args.split: tally.rows}
    logger.info("wrote %s: %s", output_dir, counts)
    return {
        "output_dir": str(args.output_dir),
        "rows": counts,
        "repaired": tally.repairs,
        "skipped": dict(skipped),
        "coco_ids": str(output_dir / COCO_IDS_FILE),
    }


def load_coco_ids(output_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Row id -> `{"image_ids", "category_id", "category_ids", "annotation_ids"}` from a built folder's sidecar."""
    payload = json.loads((Path(output_dir) / COCO_IDS_FILE).read_text())
    if payload.get("format") != COCO_IDS_FORMAT:
        raise ValueError(f"{output_dir}/{COCO_IDS_FILE}: format {payload.get('format')!r}, expected {COCO_IDS_FORMAT}")
    return payload["rows"]
