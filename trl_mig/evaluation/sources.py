"""Where evaluation rows come from: MIG-Bench's annotation file, MC-Bench's COCO-style file, or a built schema set.

A source gives two views of the same rows, both in the schema of DESIGN.md section 3:
- `gold()`: the columns scoring needs (`id`, `task`, `solution`, `target_image`, `image_sizes`), without images, for
  every selected row. Scoring a resumed run, or a file of external predictions, never decodes an image.
- `rows(indices)`: full rows with decoded images, a batch at a time, for generation and the gallery. Memory stays at one
  batch of images whatever the benchmark size.

Benchmark files are converted with the builders' own functions (`datasets_builders.mig_bench.convert_record`,
`datasets_builders.mc_bench.convert_description`), so an evaluated row is exactly the row `trl-mig build` writes:
same repaired gold, same target image, same bad-record errors naming the record.

`--limit N` keeps the first N rows *of each task* (as lm-evaluation-harness does), so a smoke run covers every task.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..metrics.core import MIG_BENCH_TASKS


__all__ = ["EvalSource", "MCBenchSource", "MIGBenchSource", "SchemaSource", "select_per_task", "make_source"]

GOLD_COLUMNS = ("id", "task", "solution", "target_image", "image_sizes")


def select_per_task(tasks: Sequence[str], wanted: Sequence[str] | None, limit: int | None) -> list[int]:
    """Positions kept by `--tasks` (in file order) and `--limit` (first `limit` of each task).

    Example:
    ```python
    >>> select_per_task(["a", "b", "a", "a", "b"], None, 2)
    [0, 1, 2, 4]
    >>> select_per_task(["a", "b", "a"], ["b"], None)
    [1]

    ```
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    keep = set(wanted) if wanted else None
    seen: dict[str, int] = {}
    out = []
    for i, task in enumerate(tasks):
        if keep is not None and task not in keep:
            continue
        if limit is not None and seen.get(task, 0) >= limit:
            continue
        seen[task] = seen.get(task, 0) + 1
        out.append(i)
    return out


def _check_tasks(wanted: Sequence[str] | None, known: Sequence[str], what: str) -> None:
    unknown = sorted(set(wanted or ()) - set(known))
    if unknown:
        raise ValueError(f"--tasks {unknown} are not tasks of {what}; it has: {', '.join(sorted(set(known)))}")


def _decode(image: Any, label: str | None = None) -> Any:
    """A PIL image from a row's image value (`{"bytes", "path"}` as builders write it, or already decoded).

    Raises `ValueError` saying which image could not be decoded: `label` (e.g. `"row '12', image 1"`), the image's
    path when it has one, and why.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image
    where = f"{label}: " if label else ""
    path = image.get("path") if isinstance(image, Mapping) else None
    named = f" {path}" if path else ""
    try:
        if isinstance(image, Mapping) and image.get("bytes") is not None:
            return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
        if isinstance(image, Mapping) and path:
            return Image.open(path).convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{where}cannot decode image{named} ({type(exc).__name__}: {exc})") from exc
    raise ValueError(f"{where}cannot decode image value of type {type(image).__name__}")


class EvalSource:
    """Base class: `ids`, `tasks`, `gold()`, `rows(indices)`, plus what the benchmark needs reported (`flags`)."""

    #: short name recorded in results (`mig-bench`, `mc-bench`, `schema`)
    name = "schema"
    #: whether rows may have several targets (the prompt then says how to answer several; MC-Bench)
    multi_target = False

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.tasks: list[str] = []
        #: every id of the benchmark or set, selected or not (external predictions may name rows left out by --tasks)
        self.all_ids: set[str] = set()
        self.flags: dict[str, Any] = {}
        #: row id -> COCO ids (MC-Bench), for the official scorer
        self.coco_ids: dict[str, dict[str, Any]] | None = None
        #: what the results record about where the rows came from
        self.description: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def gold(self) -> dict[str, list[Any]]:
        raise NotImplementedError

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        raise NotImplementedError


class MIGBenchSource(EvalSource):
    """MIG-Bench records (`MIG_data.json`; id = 0-based position in the official file).

    Args:
        annotations: the annotation file; `None` = the copy shipped in the wheel (MIT).
        image_root: the folder that contains `MIG-Bench/`. Needed to generate, and to score frames that need image
            sizes (`qwen2_5_vl`, `pixel`, `coco_xywh`); image sizes come from the file headers (no decoding).
        tasks, limit: `--tasks`, `--limit` (per task).

    A malformed record raises the builder's `BadRecordError` naming `record {position}` and the reason (not a JSON
    object, missing or ill-typed field, unknown task: at construction, for every record; bad gold box or target image:
    in `gold()`; missing or unreadable image: in `image_sizes()` / `rows()`), as `trl-mig build mig_bench` does.
    """

    name = "mig-bench"

    def __init__(
        self,
        annotations: str | os.PathLike | None = None,
        image_root: str | os.PathLike | None = None,
        tasks: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        from ..datasets_builders.mig_bench import check_record_fields, default_annotations

        self.annotations = Path(annotations) if annotations else default_annotations()
        try:
            records = json.loads(self.annotations.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.annotations}: not a MIG-Bench annotation file ({exc})") from exc
        if not isinstance(records, list):
            raise ValueError(f"{self.annotations}: expected MIG-Bench's JSON list of records")
        for position, record in enumerate(records):
            # the builder's checks, on every record (the task column needs each): a malformed file fails here, naming
            # the record and the field, before hours of generation, not with a KeyError when scoring
            check_record_fields(record, position)
        all_tasks = [r["task"] for r in records]
        _check_tasks(tasks, MIG_BENCH_TASKS, "MIG-Bench")
        self.records = records
        self.positions = select_per_task(all_tasks, tasks, limit)
        self.ids = [str(p) for p in self.positions]
        self.tasks = [all_tasks[p] for p in self.positions]
        self.image_root = Path(image_root) if image_root else None
        self.description = {"annotations": str(self.annotations), "records_in_file": len(records)}

    def position(self, rid: Any) -> int:
        """The record position of an id (`7`, `"7"`); `ValueError` for an id that is not a record of the file."""
        text = str(rid).strip()
        if not text.lstrip("-").isdigit() or not 0 <= int(text) < len(self.records):
            raise ValueError(f"{rid!r} is not a MIG-Bench id (0-based position, 0-{len(self.records) - 1})")
        return int(text)

    def image_sizes(self, position: int) -> list[list[int]]:
        from PIL import Image

        if self.image_root is None:
            raise ValueError("image sizes need --image-root (the folder that contains MIG-Bench/)")
        from ..datasets_builders.paths import resolve_under
        from ..datasets_builders.writer import BadRecordError

        sizes = []
        for relative in self.records[position]["images"]:
            path = resolve_under(self.image_root, relative, f"MIG-Bench record {position}")  # untrusted paths
            try:
                with Image.open(path) as image:  # reads the header only
                    sizes.append(list(image.size))
            except (OSError, SyntaxError, Image.DecompressionBombError) as exc:  # as the builder's `read_image`
                reason = "missing image" if not path.exists() else "unreadable image"
                raise BadRecordError(f"MIG-Bench record {position}: {reason} {path} ({exc})", reason) from exc
        return sizes

    def gold(self, with_sizes: bool | None = None) -> dict[str, list[Any]]:
        # the builder's gold: repaired once, and a `BadRecordError` naming the record for a box that is not four
        # finite numbers, has nothing inside the image, or a target image the record does not state or does not have
        from ..datasets_builders.mig_bench import checked_target_image, gold_box

        with_sizes = self.image_root is not None if with_sizes is None else with_sizes
        columns: dict[str, list[Any]] = {k: [] for k in GOLD_COLUMNS}
        repaired = []
        for rid, task, position in zip(self.ids, self.tasks, self.positions):
            record = self.records[position]
            box, fixed = gold_box(record["answer"], position)
            if fixed:
                repaired.append(rid)
            columns["id"].append(rid)
            columns["task"].append(task)
            columns["solution"].append([list(box)])
            columns["target_image"].append([checked_target_image(record, position)])
            columns["image_sizes"].append(self.image_sizes(position) if with_sizes else None)
        self.flags["repaired_gold_ids"] = repaired
        return columns

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        from ..datasets_builders.mig_bench import convert_record

        if self.image_root is None:
            raise ValueError("generating answers needs --image-root (the folder that contains MIG-Bench/)")
        out = []
        for i in indices:
            row, _ = convert_record(self.records[self.positions[i]], self.positions[i], self.image_root)
            row["images"] = [_decode(image, f"row {row['id']!r}, image {k}") for k, image in enumerate(row["images"])]
            out.append(row)
        return out


class MCBenchSource(EvalSource):
    """MC-Bench descriptions (COCO-style JSON; id = the description id), two images each, zero or more targets.

    Args:
        annotations: the MC-Bench JSON (not shipped: its licence is the benchmark's).
        image_root: the folder its `file_name`s are relative to.
        tasks, limit: `--tasks` (text styles: referring, comparison, reasoning), `--limit` (per style).
    """

    name = "mc-bench"
    multi_target = True

    def __init__(
        self,
        annotations: str | os.PathLike,
        image_root: str | os.PathLike,
        tasks: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        from collections import Counter

        from ..datasets_builders.mc_bench import TEXT_STYLES, _group_annotations, file_categories

        if annotations is None:
            raise ValueError("--benchmark mc-bench needs --annotations (the MC-Bench JSON) or --data (a built set)")
        self.annotations = Path(annotations)
        data = json.loads(self.annotations.read_text(encoding="utf-8"))
        self.image_root = Path(image_root)
        self.images_by_id = {entry["id"]: entry for entry in data.get("images", [])}
        self.category_ids = file_categories(data)
        self.grouped = _group_annotations(data, True, Counter())
        descriptions = list(data.get("descriptions", []))
        styles = [str(d.get("text_style", "")).lower() for d in descriptions]
        _check_tasks(tasks, TEXT_STYLES, "MC-Bench")
        self.descriptions = [descriptions[i] for i in select_per_task(styles, tasks, limit)]
        self.all_ids = {str(d["id"]) for d in descriptions}
        self.ids = [str(d["id"]) for d in self.descriptions]
        self.tasks = [str(d.get("text_style", "")).lower() for d in self.descriptions]
        self.description = {"annotations": str(self.annotations), "descriptions_in_file": len(descriptions)}
        self._gold: dict[str, list[Any]] | None = None

    def _convert(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        from ..datasets_builders.mc_bench import convert_description

        description = self.descriptions[i]
        return convert_description(description, self.images_by_id, self.grouped.get(description["id"], []),
                                   self.image_root)  # fmt: skip

    def gold(self) -> dict[str, list[Any]]:
        from ..datasets_builders.mc_bench import with_category

        if self._gold is None:
            columns: dict[str, list[Any]] = {k: [] for k in GOLD_COLUMNS}
            coco = {}
            for i in range(len(self.descriptions)):
                row, extra = self._convert(i)
                for key in GOLD_COLUMNS:
                    columns[key].append(row[key])
                coco[row["id"]] = with_category(extra["coco"], self.category_ids)
            self._gold, self.coco_ids = columns, coco
        return self._gold

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        out = []
        for i in indices:
            row, _ = self._convert(i)
            row["images"] = [_decode(image, f"row {row['id']!r}, image {k}") for k, image in enumerate(row["images"])]
            out.append(row)
        return out


class SchemaSource(EvalSource):
    """A built schema set (`trl-mig build ...` folder, Hub id, or a `datasets.Dataset`).

    A folder built by `trl-mig build mc_bench` carries `coco_ids.json`; it is read, so `ap50` can be computed.
    """

    def __init__(
        self,
        data: Any,
        split: str | None = None,
        tasks: Sequence[str] | None = None,
        limit: int | None = None,
        name: str = "schema",
    ) -> None:
        super().__init__()
        self.name = name
        if isinstance(data, (str, os.PathLike)):
            dataset = _load_split(str(data), split)
            sidecar = Path(data) / "coco_ids.json"
            if sidecar.is_file():
                from ..datasets_builders.mc_bench import load_coco_ids

                self.coco_ids = load_coco_ids(data)
            self.description = {"data": str(data), "split": dataset.split if dataset.split is not None else split}
        else:
            dataset = data
            self.description = {"data": "in-memory dataset", "split": split}
        missing = [c for c in GOLD_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"the evaluation set lacks schema columns {missing} (build it with `trl-mig build`)")
        all_tasks = [str(t) for t in dataset["task"]]
        self.all_ids = {str(i) for i in dataset["id"]}
        _check_tasks(tasks, all_tasks, f"this set ({self.description['data']})")
        self.indices = select_per_task(all_tasks, tasks, limit)
        self.dataset = dataset.select(self.indices) if len(self.indices) != len(dataset) else dataset
        self.ids = [str(i) for i in self.dataset["id"]]
        self.tasks = [all_tasks[i] for i in self.indices]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("the evaluation set has duplicate ids; predictions could not be matched to rows")
        solutions = self.dataset["solution"]
        self.multi_target = self.coco_ids is not None or any(len(s) > 1 for s in solutions)

    def gold(self) -> dict[str, list[Any]]:
        columns = self.dataset.select_columns(list(GOLD_COLUMNS)).to_dict()
        columns["id"] = [str(i) for i in columns["id"]]
        return columns

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        batch = self.dataset.select(list(indices))
        rows = [dict(row) for row in batch]
        for row in rows:
            row["id"] = str(row["id"])
            row["images"] = [_decode(image, f"row {row['id']!r}, image {k}") for k, image in enumerate(row["images"])]
        return rows


def _load_split(data: str, split: str | None) -> Any:
    """One split of a schema set: `split` when given, else `test`, else the only split."""
    from ..datasets_builders.reader import load_schema_dataset

    if split is not None:
        return load_schema_dataset(data, split=split)
    splits = load_schema_dataset(data)
    if "test" in splits:
        return splits["test"]
    if len(splits) == 1:
        return next(iter(splits.values()))
    raise ValueError(f"{data} has splits {sorted(splits)}; pick one with --split")


def make_source(
    benchmark: str,
    *,
    annotations: str | None = None,
    image_root: str | None = None,
    data: Any = None,
    split: str | None = None,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
) -> EvalSource:
    """The source `trl-mig eval --benchmark ...` reads: `--data` (a built set) wins over `--annotations`."""
    if benchmark not in ("mig-bench", "mc-bench", "schema"):
        raise ValueError(f"unknown --benchmark {benchmark!r}; choose mig-bench, mc-bench or schema")
    if data is not None:
        return SchemaSource(data, split, tasks, limit, name=benchmark)
    if benchmark == "schema":
        raise ValueError("--benchmark schema needs --data (a set written by `trl-mig build`)")
    if benchmark == "mig-bench":
        return MIGBenchSource(annotations, image_root, tasks, limit)
    if image_root is None:
        raise ValueError("--benchmark mc-bench needs --image-root (the folder MC-Bench's file_names are relative to)")
    return MCBenchSource(annotations, image_root, tasks, limit)
