"""MIG-Bench -> schema rows (parquet + card): `trl-mig build mig_bench --image-root DIR --output-dir OUT`.

The annotation file (MIT) ships in the wheel and is the default `--annotations`; images are downloaded separately
(see the benchmark's README) and found under `--image-root`, the folder that contains `MIG-Bench/`.

What the builder does to each record (`id` = its position in the official file):
- target image per task (`target_image_for`): the file never states it as a field;
- gold box repaired once if inverted or beyond the image (seven records: 7, 34, 105, 126, 163, 512, 703), counted;
  a gold box with nothing left inside the image ("box outside the image") or of zero area ("degenerate box") is a
  bad record, as in MC-Bench (no record of the shipped file is either);
- question: Qwen markup (`<|object_ref_start|>`, `<|object_ref_end|>`) stripped and counted; reference boxes
  (`<|box_start|>(x1,y1),(x2,y2)<|box_end|>`, 0-1000 grid, in image 0) converted to canonical
  `<box image="0">[...]</box>`; the per-model answer-format instruction is not stored (templates render it);
- image paths are untrusted: one that leads outside `--image-root` (`..`, absolute, a symlink out) is a bad record
  ("image path outside the image root") and is never read;
- strict: a missing or unreadable image is an error naming the record and the path, and nothing is written.

Bad records (`BadRecordError` naming `record {position}`, the reason counted in the card under `--no-strict`):
"not a JSON object", "missing field" (`images`, `answer`, `question` or `task` absent or null), "malformed field"
(`images` not a list of paths, `question` not text), "no images", "bad answer box" (not four finite numbers),
"box outside the image", "degenerate box", "unknown task", "target image not stated" (the question or
`additional_info` names no image), "target image out of range", "malformed reference box", missing / unreadable
image, image path outside the image root, invalid image path.

Streaming: rows go to parquet as they are converted (`ParquetShardWriter`, one row group held) and the card's counts
are tallied on the way, so memory does not grow with the number of records (the real images are ~1 GB). Everything
is written into a staging folder beside `--output-dir`, moved into place only when complete.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from trl_mig.geometry import is_valid_box, repair_box, to_canonical
from trl_mig.parsing import parse_image_reference
from trl_mig.schema import features, format_box_tag, validate_row

from .paths import read_image
from .writer import BadRecordError, ParquetShardWriter, render_dataset_card, staging_dir


logger = logging.getLogger(__name__)

NAME = "mig_bench"
_MARKUP_RE = re.compile(r"<\|object_ref_(?:start|end)\|>")
_REF_BOX_RE = re.compile(r"<\|box_start\|>\s*\((\d+),\s*(\d+)\)\s*,\s*\((\d+),\s*(\d+)\)\s*<\|box_end\|>")


#: tasks whose target is always the same image (0-based): `region` asks for the source image, the pair tasks for
#: the second image ("second image", "image-2")
FIXED_TARGET = {"region": 0, "correspondence": 1, "view_diff": 1, "refer_grounding": 1, "reasoning": 1}
#: tasks whose question says "... in the Nth image" (N 1-based, written "1th", "2th"); the last such phrase counts
#: (object tracking questions also mention "the first image" for the reference box)
STATED_IN_QUESTION = ("common_object", "multi_view", "object_tracking")
_NTH_IMAGE_RE = re.compile(r"\bin the (\d+)\s*(?:st|nd|rd|th) image", re.IGNORECASE)
UNKNOWN_TARGET = -1


def default_annotations() -> Path:
    """The MIG-Bench annotation file shipped in the wheel (MIT, licence beside it)."""
    return Path(str(resources.files("trl_mig") / "data" / "mig_bench" / "MIG_data.json"))


def target_image_for(record: Mapping[str, Any], position: int | None = None) -> int:
    """0-based target image of a MIG-Bench record; `-1` for `diff` (the benchmark does not say).

    Raises `ValueError` naming the record when its task is unknown or the text that should name the image does not.

    Example:
    ```python
    >>> target_image_for({"task": "multi_view", "question": "... locate this object in the 2th image. "})
    1
    >>> target_image_for({"task": "group_grounding", "additional_info": "It is in the first image. ..."})
    0

    ```
    """
    task = record.get("task")
    label = f"MIG-Bench record {position}" if position is not None else "MIG-Bench record"
    if task in FIXED_TARGET:
        return FIXED_TARGET[task]
    if task == "diff":
        return UNKNOWN_TARGET
    if task in STATED_IN_QUESTION:
        found = _NTH_IMAGE_RE.findall(record.get("question", ""))
        if found:
            return int(found[-1]) - 1
        raise ValueError(f"{label} ({task}): the question names no 'Nth image': {record.get('question')!r}")
    if task == "group_grounding":
        info = str(record.get("additional_info", "")).split("<|box_start|>")[0]
        index = parse_image_reference(info)
        if index is not None and index >= 0:
            return index
        raise ValueError(f"{label} (group_grounding): `additional_info` names no image: {info!r}")
    raise ValueError(
        f"{label}: unknown task {task!r}; known: {sorted([*FIXED_TARGET, 'diff', *STATED_IN_QUESTION, 'group_grounding'])}"
    )


@dataclass
class BuildArguments:
    """Arguments of `trl-mig build mig_bench`."""

    image_root: str = field(
        metadata={
            "help": "Folder that contains `MIG-Bench/` (the image paths in the annotation file are relative to it)."
        }
    )
    output_dir: str = field(default="mig_bench", metadata={"help": "Where to write README.md + data/*.parquet."})
    annotations: str | None = field(
        default=None, metadata={"help": "MIG_data.json; defaults to the copy shipped with trl-mig (MIT)."}
    )
    split: str = field(default="train", metadata={"help": "Split name of the single split MIG-Bench has."})
    strict: bool = field(
        default=True,
        metadata={"help": "Stop at the first missing or unreadable image (benchmarks are strict by default)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir."})
    limit: int | None = field(default=None, metadata={"help": "Build only the first N records (smoke tests)."})


def convert_question(question: str) -> tuple[str, int, int]:
    """Strip Qwen markup and turn 0-1000 reference boxes (in image 0) into canonical box tags.

    Returns the question and how many markup tokens and reference boxes were converted.

    Example:
    ```python
    >>> convert_question("marked (<|box_start|>(451,265),(519,388)<|box_end|>). Find <|object_ref_start|>it<|object_ref_end|>")
    ('marked (<box image="0">[0.451,0.265,0.519,0.388]</box>). Find it', 2, 1)

    ```
    """
    text, n_markup = _MARKUP_RE.subn("", question)

    def _box(match: re.Match) -> str:
        canonical = to_canonical([int(v) for v in match.groups()], "qwen2_vl")
        return format_box_tag(repair_box(canonical)[0], 0)

    text, n_boxes = _REF_BOX_RE.subn(_box, text)
    return text, n_markup, n_boxes


def _read_image(root: Path, relative: str, position: int) -> tuple[dict[str, Any], tuple[int, int]]:
    path, data, size = read_image(root, relative, f"MIG-Bench record {position}")
    if min(size) <= 0:
        raise BadRecordError(f"MIG-Bench record {position}: unreadable image {path} (size {size})", "unreadable image")
    return {"bytes": data, "path": relative.removeprefix("./")}, size


#: the fields `convert_record` reads (`additional_info` only for `group_grounding`, where its absence is reported as
#: "target image not stated")
REQUIRED_FIELDS = ("images", "answer", "question", "task")
KNOWN_TASKS = frozenset([*FIXED_TARGET, "diff", *STATED_IN_QUESTION, "group_grounding"])


def _bad(position: int, reason: str, detail: str = "") -> BadRecordError:
    return BadRecordError(f"MIG-Bench record {position}: {reason}" + (f" ({detail})" if detail else ""), reason)


def check_record_fields(record: Any, position: int) -> None:
    """The record is an object with every field `convert_record` reads, of the right type."""
    if not isinstance(record, Mapping):
        raise _bad(position, "not a JSON object", f"got {type(record).__name__}")
    missing = [name for name in REQUIRED_FIELDS if record.get(name) is None]
    if missing:
        raise _bad(position, "missing field", ", ".join(f"`{name}`" for name in missing))
    if not isinstance(record["images"], list):
        raise _bad(position, "malformed field", f"`images` is {type(record['images']).__name__}, not a list")
    if not record["images"]:
        raise _bad(position, "no images")
    if not isinstance(record["question"], str):
        raise _bad(position, "malformed field", f"`question` is {type(record['question']).__name__}, not text")
    task = record["task"]
    if not isinstance(task, str) or task not in KNOWN_TASKS:
        raise _bad(position, "unknown task", f"{task!r}; known: {', '.join(sorted(KNOWN_TASKS))}")


def _is_finite_number(value: Any) -> bool:
    """A JSON number (not a bool, not text) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond float range
        return False


def gold_box(answer: Any, position: int) -> tuple[tuple[float, ...], bool]:
    """The canonical gold box, repaired once (sorted, clipped); a bad record if it is not four finite numbers or has
    nothing left inside the image."""
    if not isinstance(answer, (list, tuple)) or len(answer) != 4 or not all(_is_finite_number(v) for v in answer):
        raise _bad(position, "bad answer box", f"`answer` {answer!r} is not four finite numbers")
    fixed, repaired = repair_box(answer)
    if not is_valid_box(fixed):
        inside = all(0.0 <= v <= 1.0 for v in answer)
        raise _bad(position, "degenerate box" if inside else "box outside the image", f"`answer` {list(answer)!r}")
    return fixed, repaired


def checked_target_image(record: Mapping[str, Any], position: int) -> int:
    """`target_image_for` as a bad record (not a plain `ValueError`), checked against the record's images."""
    try:
        target = target_image_for(record, position)
    except ValueError as exc:
        raise _bad(position, "target image not stated", str(exc)) from exc
    n_images = len(record["images"])
    if target == UNKNOWN_TARGET and record["task"] == "diff":
        return target
    if not 0 <= target < n_images:
        raise _bad(position, "target image out of range", f"image {target + 1} of {n_images} ({record['task']})")
    return target


def convert_record(
    record: Mapping[str, Any], position: int, image_root: Path
) -> tuple[dict[str, Any], dict[str, int]]:
    """One annotation record -> one schema row, plus counters (repairs, markup, reference boxes).

    Raises `BadRecordError` naming `record {position}` and the reason (see the module docstring) for a malformed
    record: never another exception type, so `--no-strict` can skip and count it.
    """
    check_record_fields(record, position)
    gold, repaired = gold_box(record["answer"], position)
    target = checked_target_image(record, position)
    try:
        question, n_markup, n_boxes = convert_question(record["question"])
    except ValueError as exc:  # a reference box too long to be a number (int() refuses > 4300 digits)
        raise _bad(position, "malformed reference box", str(exc)[:200]) from exc
    images, sizes = [], []
    for relative in record["images"]:
        image, size = _read_image(image_root, relative, position)
        images.append(image)
        sizes.append(list(size))
    row = {
        "id": str(position),
        "images": images,
        "question": question.strip(),
        "solution": [list(gold)],
        "target_image": [target],
        "image_sizes": sizes,
        "task": record["task"],
        "source": NAME,
    }
    try:
        validate_row(row)
    except ValueError as exc:  # every field was checked above: a safety net, still a bad record naming it
        raise _bad(position, "invalid row", str(exc)) from exc
    return row, {"repaired": int(repaired), "markup_stripped": n_markup, "reference_boxes": n_boxes}


def build(args: BuildArguments) -> dict[str, Any]:
    """Convert the annotation file, streaming rows to parquet; write parquet + card atomically. Returns what was
    written."""
    annotations = Path(args.annotations) if args.annotations else default_annotations()
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; pass overwrite=True (`--overwrite`) to replace it")
    records = json.loads(annotations.read_text())  # annotations only (~2 MB): the images are what streams
    if args.limit is not None:
        records = records[: args.limit]
    root = Path(args.image_root)
    repairs, skipped, totals, task_rows, n_diff = [], Counter(), Counter(), Counter(), 0
    with staging_dir(output_dir) as staging:
        shards = ParquetShardWriter(staging / "data", args.split, features())
        for position, record in enumerate(records):
            try:
                row, counts = convert_record(record, position, root)
            except BadRecordError as exc:
                if args.strict:
                    raise
                skipped[exc.reason] += 1
                logger.warning("skipping: %s", exc)
                continue
            shards.add(row)
            task_rows[str(row["task"])] += 1
            n_diff += row["target_image"] == [UNKNOWN_TARGET]
            totals.update(counts)
            if counts["repaired"]:
                repairs.append(position)
            del row  # the writer holds it until its row group is written; nothing else does
        shards.close()
        card = render_dataset_card(
            pretty_name="MIG-Bench (trl-mig schema)",
            description=(
                "MIG-Bench, the multi-image grounding benchmark of Migician (https://huggingface.co/papers/2501.05767), "
                "converted to trl-mig's model-agnostic schema: canonical gold boxes, the target image of each "
                "question, and the images. Scored with Acc@0.5 per task; the headline is the plain mean of the ten "
                "tasks."
            ),
            builder=NAME,
            split_rows={args.split: shards.total},
            license="mit",
            task_rows=dict(task_rows),
            repairs=repairs,
            skipped=dict(skipped),
            extra_stats={
                "Qwen markup tokens stripped from questions": totals["markup_stripped"],
                "reference boxes converted to canonical tags": totals["reference_boxes"],
                "records in the annotation file": len(records),
                "diff rows (target image unknown, -1)": n_diff,
            },
            source_note=(
                "Annotations: Migician's `eval/MIG-Bench/MIG_data.json` (MIT). Images keep their own licences and "
                "are embedded from the user's download."
            ),
            metadata={"repaired_gold_ids": repairs, "strict": args.strict},
        )
        (staging / "README.md").write_text(card)
    counts = {args.split: shards.total}
    logger.info("wrote %s: %s", output_dir, counts)
    return {"output_dir": str(args.output_dir), "rows": counts, "repaired": repairs, "skipped": dict(skipped)}
