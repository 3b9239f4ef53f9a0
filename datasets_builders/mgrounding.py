"""MGrounding-630k -> schema rows (parquet + card): `trl-mig build mgrounding --annotations F --image-root DIR`.

MGrounding-630k is Migician's training set (https://huggingface.co/papers/2501.05767), LLaMA-Factory ShareGPT
conversations: one `<image>` placeholder per image, boxes `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` on the 0-1000
grid of the image they are in, that image named in free text ("It's in the third image."), several turns possible.
`--annotations` is the merged `MGrounding-630k.json` (task in each record's `type`) or one per-task file (task from
the file name, e.g. `gg_train_120k.json`).

What the builder does:
- one row per grounding turn (a human turn answered by a gpt turn holding boxes), id `"{id}:{k}"`, `k` = 0-based
  index of the exchange (the k-th human turn) in the record; every row carries all the record's images;
- question: `<image>` placeholders and `<|object_ref_*|>` markup removed, reference boxes written canonically
  (`<box image="0">[...]</box>`, in the image the text names, else image 0);
- solution: every box of the answer, canonical (`qwen2_vl` frame), repaired once when inverted or slightly beyond
  the image (counted); target image from the free text (`-1` when unnamed among several images);
- region description (`_gg_reg`, the answer is text, no gold box): skipped and counted;
- bad records (training source: skipped by default, counted per reason; `--strict` stops at the first, naming the
  record id): missing/unreadable image, image path outside the image root (`..`, absolute, a symlink out: never
  read), wrong image count, unknown task, unparsable answer, box far outside the image.

Subsets: MGrounding's `type` names a subset; each gets its own config, so `load_dataset(OUT, "gg_train")` loads
one and `load_dataset(OUT)` (the `default` config) loads them all. Layout: `OUT/data/<type>/train-*-of-*.parquet`,
the card listing `default` (`data/*/train-*.parquet`) and one config per subset present, with rows per subset.

Streaming: the JSON array is decoded one record at a time and rows go to parquet (one open shard writer per subset,
each holding at most one row group), so memory stays flat over 630k rows. Shards are written into a staging folder
beside `--output-dir`, renamed `...-i-of-n.parquet` once counted, and the folder moved into place only when complete.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from trl_mig.geometry import repair_box, to_canonical
from trl_mig.parsing import find_boxes, parse_answer
from trl_mig.schema import features, format_box_tag, validate_row

from . import writer
from .decontaminate import decontaminate_field
from .paths import resolve_under
from .writer import DEFAULT_SHARD_ROWS, ParquetShardWriter, render_dataset_card, staging_dir


logger = logging.getLogger(__name__)

NAME = "mgrounding"
SPLIT = "train"
#: MGrounding `type` (or per-task file name) -> schema task name
TASKS = {
    "common_train": "common_object",
    "diff_train": "diff",
    "free_form_grounding": "free_form",
    "gg_train": "group_grounding",
    "ot_train": "object_tracking",
    "refer_train": "refer_grounding",
    "region_train": "region",
}
#: schema task -> the subset (config) name its rows are published under: MGrounding's own `type` spelling
SUBSETS = {task: subset for subset, task in TASKS.items()}
#: types whose answers are descriptions, not boxes
REGION_DESCRIPTION = ("gg_reg", "region_description")
REGION_DESCRIPTION_REASON = "region description (no gold box)"
#: how far (canonical units, 0.02 = 20 grid units) a gold coordinate may lie outside [0, 1] and still be repaired
BOX_TOLERANCE = 0.02
#: repaired row ids listed in the card at most (beyond that only the count)
MAX_LISTED_REPAIRS = 200

#: an `<image>` placeholder with the blanks around it (and one newline after). A match starts only where a blank run
#: starts (`(?<![ \t])`), or right at `<image>` when the blanks before it were taken by the previous match: without
#: the lookbehind every position inside a long blank run rescans the run (quadratic); matches are otherwise the same
_PLACEHOLDER_RE = re.compile(r"(?:(?<![ \t])[ \t]*|(?<=[ \t]))<image>[ \t]*\n?")
_MARKUP_RE = re.compile(r"<\|object_ref_(?:start|end)\|>")
_BOX_TOKEN_RE = re.compile(r"<\|box_start\|>\s*\((\d+)\s*,\s*(\d+)\)\s*,\s*\((\d+)\s*,\s*(\d+)\)\s*<\|box_end\|>")
_TYPE_SUFFIX_RE = re.compile(r"(?:_\d+k)?(?:\.json)?$")


@dataclass
class BuildArguments:
    """Arguments of `trl-mig build mgrounding`."""

    annotations: str = field(
        metadata={"help": "`MGrounding-630k.json` (merged, with a `type` per record) or one per-task JSON file."}
    )
    image_root: str = field(metadata={"help": "Folder the record image paths are relative to."})
    output_dir: str = field(default="mgrounding", metadata={"help": "Where to write README.md + data/*.parquet."})
    strict: bool = field(
        default=False,
        metadata={"help": "Stop at the first bad record, naming its id (default: skip it and count the reason)."},
    )
    limit: int | None = field(default=None, metadata={"help": "Read only the first N records (smoke tests)."})
    shard_rows: int = field(default=DEFAULT_SHARD_ROWS, metadata={"help": "Rows per parquet shard of each subset."})
    repo_id: str = field(default="<org>/mgrounding", metadata={"help": "Hub id written in the card's usage snippet."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output-dir."})
    decontaminate_against: list[str] = decontaminate_field()
    embed_images: bool = field(
        default=True,
        metadata={
            "help": "Embed image bytes in the parquet files; `False` stores absolute paths (this machine only)."
        },
    )

    def __post_init__(self) -> None:
        if self.shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {self.shard_rows}")


class BadRecordError(writer.BadRecordError):
    """`writer.BadRecordError` with MGrounding's message: the record id, the reason, and what was seen."""

    def __init__(self, record_id: str, reason: str, detail: str = "") -> None:
        super().__init__(f"MGrounding record {record_id!r}: {reason}" + (f" ({detail})" if detail else ""), reason)


def iter_json_records(path: str | Path, chunk_chars: int = 1 << 20) -> Iterator[Any]:
    """Yield the items of a top-level JSON array (or of concatenated / line-delimited JSON values) one at a time.

    Only the current item and one read chunk are held in memory (`json.JSONDecoder.raw_decode` over a buffer).

    Example:
    ```python
    >>> import io, tempfile, os
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False); _ = f.write('[{"a": 1}, {"a": 2}]'); f.close()
    >>> list(iter_json_records(f.name, chunk_chars=4)); os.unlink(f.name)
    [{'a': 1}, {'a': 2}]

    ```
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        buffer, pos, offset, want = "", 0, 0, chunk_chars
        eof, started, in_array = False, False, False
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(buffer):
                if eof:
                    return
                chunk = handle.read(want)
                eof = not chunk
                offset, buffer, pos = offset + pos, buffer[pos:] + chunk, 0
                continue
            if not started:
                started, in_array = True, buffer[pos] == "["
                pos += int(in_array)
                continue
            if in_array and buffer[pos] == "]":
                return
            try:
                item, pos = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                if eof:
                    raise ValueError(f"{path}: invalid JSON near character {offset + exc.pos}: {exc.msg}") from exc
                chunk = handle.read(want)
                eof = not chunk
                offset, buffer, pos = offset + pos, buffer[pos:] + chunk, 0
                want *= 2  # a record longer than the chunk: grow reads so the retries stay linear overall
                continue
            want = chunk_chars
            yield item


def task_for_type(value: Any) -> str | None:
    """Schema task of an MGrounding `type` or per-task file name; `""` for region description; `None` if unknown.

    Example:
    ```python
    >>> task_for_type("gg_train"), task_for_type("ot_train_130k.json"), task_for_type("_gg_reg_40k"), task_for_type("x")
    ('group_grounding', 'object_tracking', '', None)

    ```
    """
    if not isinstance(value, str):
        return None
    key = _TYPE_SUFFIX_RE.sub("", value.strip().lower()).strip("_")
    if key in REGION_DESCRIPTION:
        return ""
    if key in TASKS:
        return TASKS[key]
    return key if key in TASKS.values() else None


@lru_cache(maxsize=8192)
def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:  # reads the header only
        return image.size


def _load_images(record_id: str, paths: list[Any], root: Path, embed: bool) -> tuple[list[dict], list[list[int]]]:
    from PIL import Image, UnidentifiedImageError

    images, sizes = [], []
    for relative in paths:
        if not isinstance(relative, str) or not relative:
            raise BadRecordError(record_id, "missing image", f"image path {relative!r}")
        try:
            path = resolve_under(root, relative, f"MGrounding record {record_id!r}")
        except writer.BadRecordError as exc:  # as this module's error, which `build` counts under non-strict
            raise BadRecordError(record_id, exc.reason, repr(relative)) from exc
        if not path.is_file():
            raise BadRecordError(record_id, "missing image", str(path))
        try:
            size = _image_size(str(path))
        except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as exc:
            raise BadRecordError(record_id, "unreadable image", f"{path}: {exc}") from exc
        image = (
            {"bytes": path.read_bytes(), "path": relative.removeprefix("./")}
            if embed
            else {"bytes": None, "path": str(path)}
        )
        images.append(image)
        sizes.append(list(size))
    return images, sizes


def _gold_box(record_id: str, coords: tuple[float, ...]) -> tuple[tuple[float, ...], bool]:
    box = to_canonical(coords, "qwen2_vl", clip=False)
    if any(v < -BOX_TOLERANCE or v > 1 + BOX_TOLERANCE for v in box):
        raise BadRecordError(record_id, "box outside the image", f"{coords} on the 0-1000 grid")
    fixed, repaired = repair_box(box)
    if fixed[0] >= fixed[2] or fixed[1] >= fixed[3]:
        raise BadRecordError(record_id, "degenerate box", f"{coords} on the 0-1000 grid")
    return fixed, repaired


def convert_question(record_id: str, text: str, n_images: int) -> tuple[str, int]:
    """Drop `<image>` placeholders and markup; write 0-1000 reference boxes as canonical tags. Returns (text, n boxes).

    Example:
    ```python
    >>> convert_question("1", "<image>\\n<image>\\nTrack <|box_start|>(100,200),(300,400)<|box_end|> in image 1.", 2)
    ('Track <box image="0">[0.100,0.200,0.300,0.400]</box> in image 1.', 1)

    ```
    """
    text = _MARKUP_RE.sub("", _PLACEHOLDER_RE.sub("", text))
    named = {span: image for span, _, image in find_boxes(text)}

    def _box(match: re.Match) -> str:
        inner = next((img for (s, e), img in named.items() if match.start() <= s and e <= match.end()), None)
        image = inner if inner is not None and 0 <= inner < n_images else 0
        try:
            coords = tuple(int(v) for v in match.groups())
        except ValueError as exc:  # int() refuses more than 4300 digits: far beyond the 0-1000 grid anyway
            raise BadRecordError(record_id, "box outside the image", f"{match.group(0)[:80]!r}...") from exc
        return format_box_tag(_gold_box(record_id, coords)[0], image)

    text, n_boxes = _BOX_TOKEN_RE.subn(_box, text)
    return text.strip(), n_boxes


def _turns(record_id: str, conversations: Any) -> Iterator[tuple[int, str, str]]:
    """(exchange index, human text, gpt text) of each human turn answered by a gpt turn."""
    if not isinstance(conversations, list):
        raise BadRecordError(record_id, "malformed conversations")
    exchange = 0
    for i, turn in enumerate(conversations):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
            raise BadRecordError(record_id, "malformed conversations", f"turn {i}")
        if turn.get("from") != "human":
            continue
        reply = conversations[i + 1] if i + 1 < len(conversations) else None
        if isinstance(reply, Mapping) and reply.get("from") == "gpt" and isinstance(reply.get("value"), str):
            yield exchange, turn["value"], reply["value"]
        exchange += 1


def convert_record(
    record: Any, position: int, root: Path, default_type: str | None = None, embed: bool = True
) -> tuple[list[dict[str, Any]], Counter]:
    """One MGrounding record -> its schema rows (one per grounding turn) and counters; raises `BadRecordError`."""
    if not isinstance(record, Mapping):
        raise BadRecordError(str(position), "not a JSON object")
    record_id = str(record.get("id", position))
    task = task_for_type(record.get("type", default_type))
    if task is None:
        raise BadRecordError(record_id, "unknown task", f"type {record.get('type', default_type)!r}")
    if task == "":
        raise BadRecordError(record_id, REGION_DESCRIPTION_REASON)
    paths = record.get("images")
    turns = list(_turns(record_id, record.get("conversations")))
    if not isinstance(paths, list) or not paths:
        raise BadRecordError(record_id, "wrong image count", "no images")
    n_placeholders = sum(turn.get("value", "").count("<image>") for turn in record["conversations"])
    if n_placeholders != len(paths):
        raise BadRecordError(record_id, "wrong image count", f"{n_placeholders} <image> for {len(paths)} images")
    counts: Counter = Counter()
    pending = []
    for exchange, human, gpt in turns:
        prediction = parse_answer(gpt)
        if prediction is None or not prediction.boxes or not _BOX_TOKEN_RE.search(gpt):
            raise BadRecordError(record_id, "unparsable gpt answer", repr(gpt[:120]))
        solution, targets = [], []
        for coords, image in zip(prediction.boxes, prediction.images):
            box, repaired = _gold_box(record_id, coords)
            counts["repaired"] += repaired
            if image is None:
                image = 0 if len(paths) == 1 else -1
            elif not 0 <= image < len(paths):
                raise BadRecordError(record_id, "image reference out of range", f"image {image + 1} of {len(paths)}")
            solution.append(list(box))
            targets.append(image)
        question, n_boxes = convert_question(record_id, human, len(paths))
        counts["reference_boxes"] += n_boxes
        counts["unknown_target"] += targets.count(-1)
        pending.append((f"{record_id}:{exchange}", question, solution, targets))
    if not pending:
        raise BadRecordError(record_id, "no grounding turn")
    images, sizes = _load_images(record_id, paths, root, embed)
    rows = []
    for row_id, question, solution, targets in pending:
        row = {
            "id": row_id,
            "images": images,
            "question": question,
            "solution": solution,
            "target_image": targets,
            "image_sizes": sizes,
            "task": task,
            "source": NAME,
        }
        validate_row(row)
        rows.append(row)
    return rows, counts


class _SubsetWriters:
    """One `ParquetShardWriter` per subset, opened when the subset's first row comes (`staging/data/<subset>/`)."""

    def __init__(self, staging: Path, shard_rows: int) -> None:
        self.data, self.shard_rows, self.writers = staging / "data", shard_rows, {}
        self.data.mkdir(parents=True)

    def add(self, subset: str, rows: list[dict[str, Any]]) -> None:
        if subset not in self.writers:
            self.writers[subset] = ParquetShardWriter(self.data / subset, SPLIT, features(), self.shard_rows)
        self.writers[subset].extend(rows)

    def close(self) -> dict[str, int]:
        """Rows per subset (sorted by name); a build with no row at all writes one empty `data/train-...` shard."""
        if not self.writers:
            ParquetShardWriter(self.data, SPLIT, features(), self.shard_rows).close()
        for shards in self.writers.values():
            shards.close()
        return {name: self.writers[name].total for name in sorted(self.writers)}


def _open_index(dirs: list[str]) -> Any:
    if not dirs:
        return None
    from .decontaminate import BenchmarkIndex

    return BenchmarkIndex.from_dirs(dirs)


def build(args: BuildArguments) -> dict[str, Any]:
    """Convert the annotation file, streaming; write parquet shards (one family per subset) + card atomically.

    Returns what was written: rows per split, per subset (`config_rows`) and per task, records read, skips, repairs.
    """
    annotations, root, output_dir = Path(args.annotations), Path(args.image_root), Path(args.output_dir)
    if not annotations.is_file():
        raise ValueError(f"annotation file {annotations} does not exist; pass --annotations MGrounding-630k.json")
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; pass overwrite=True (`--overwrite`) to replace it")
    default_type = annotations.name
    skipped, totals, task_rows, repairs, n_records = Counter(), Counter(), Counter(), [], 0
    with staging_dir(output_dir) as staging:
        writers = _SubsetWriters(staging, args.shard_rows)
        index = _open_index(args.decontaminate_against)
        for position, record in enumerate(iter_json_records(annotations)):
            if args.limit is not None and position >= args.limit:
                break
            n_records += 1
            try:
                rows, counts = convert_record(record, position, root, default_type, args.embed_images)
            except BadRecordError as exc:
                if args.strict:
                    raise
                skipped[exc.reason] += 1
                logger.debug("skipping: %s", exc)
                continue
            hit = next((m for m in map(index.match, rows[0]["images"]) if m), None) if index is not None else None
            if hit is not None:  # every turn of a record shares its images
                skipped[f"decontamination: an image is in benchmark set `{hit}`"] += 1
                continue
            writers.add(SUBSETS[rows[0]["task"]], rows)
            totals.update(counts)
            task_rows[rows[0]["task"]] += len(rows)
            if counts["repaired"] and len(repairs) <= MAX_LISTED_REPAIRS:
                repairs.extend(row["id"] for row in rows)
        config_rows = writers.close()
        total = sum(config_rows.values())
        card = _card(args, total, task_rows, skipped, totals, repairs, n_records, config_rows)
        (staging / "README.md").write_text(card)
    logger.info("wrote %s: %d rows %s, skipped %s", output_dir, total, config_rows, dict(skipped))
    return {
        "output_dir": str(output_dir),
        "rows": {SPLIT: total},
        "config_rows": config_rows,
        "records": n_records,
        "repaired": totals["repaired"],
        "skipped": dict(skipped),
        "task_rows": dict(task_rows),
    }


def _config_table(config_rows: Mapping[str, int], repo_id: str) -> dict[str, Any]:
    """The card's "Configs" table: rows per subset, and how to load one."""
    rows = [["`default`", "every subset", sum(config_rows.values())]]
    rows += [[f"`{name}`", TASKS[name], n] for name, n in config_rows.items()]
    example = next(iter(config_rows), "gg_train")
    return {
        "columns": ["config", "task", "rows"],
        "rows": rows,
        "note": f'One config per MGrounding subset (`type`): `load_dataset("{repo_id}", "{example}")` loads one, '
        f'`load_dataset("{repo_id}")` (the `default` config) all of them.',
    }


def _card(args, total, task_rows, skipped, totals, repairs, n_records, config_rows) -> str:
    listed = repairs if totals["repaired"] <= MAX_LISTED_REPAIRS else []
    return render_dataset_card(
        pretty_name="MGrounding-630k (trl-mig schema)",
        description=(
            "MGrounding-630k, the multi-image grounding training set of Migician "
            "(https://huggingface.co/papers/2501.05767), converted to trl-mig's model-agnostic schema: one row per "
            "grounding turn, canonical gold boxes (from the 0-1000 grid), the target image named in each answer, "
            "and the images. Region-description records (no gold box) are left out."
        ),
        builder=NAME,
        split_rows={SPLIT: total},
        license="other",
        repo_id=args.repo_id,
        task_rows=dict(task_rows),
        configs=list(config_rows),
        extra_tables={"Configs": _config_table(config_rows, args.repo_id)} if config_rows else None,
        repairs=listed,
        skipped=dict(skipped),
        extra_stats={
            "records read": n_records,
            "gold boxes repaired (sorted per axis, clipped to [0, 1])": totals["repaired"],
            "reference boxes in questions converted to canonical tags": totals["reference_boxes"],
            "gold boxes whose image the answer does not name (target -1)": totals["unknown_target"],
        },
        source_note=(
            f"Annotations: `{Path(args.annotations).name}` of MGrounding-630k (Migician). Its licence must be checked "
            "on the source dataset card before redistribution (recorded here as `other`); images keep their own "
            "licences."
        ),
        metadata={"strict": args.strict, "frame_of_source": "qwen2_vl", "images_embedded": args.embed_images},
    )
