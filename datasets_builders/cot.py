"""The CoT set: teacher-synthesis shards + their source rows -> rows with `reasoning` (stage 1 of the method).

`trl-mig synthesize-cot` (`trl_mig.synthesis`) writes one shard per chunk of rows (`shards`): every try of the teacher
with its outcome and IoU, and for a row whose answer was right (IoU >= threshold, right image where known) the
reasoning with its boxes already in canonical `<box image=...>` form. This builder joins the kept rows with their
source and writes the set with a card recording the teacher, the templates, the threshold, k, the keep rate per task
and how many tries the kept rows needed. `trl-mig build cot --shards_dir DIR` rebuilds it from the shards alone.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_mig.schema import features, validate_row

from .decontaminate import decontaminate_field, drop_contaminated
from .shards import load_planned_source, read_plan, read_records
from .writer import render_dataset_card, schema_rows, write_dataset


NAME = "cot"


class EmptyCoTSetError(ValueError):
    """No teacher trace was right: nothing is written (the shards stay for inspection)."""


def read_traces(shards_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    return read_records(shards_dir, required=("id", "kept", "tries"), what="synthesis")


def build_cot_set(
    source: Any,
    shards_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    repo_id: str = "<org>/mig-cot",
    source_name: str | None = None,
    decontaminate_against: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the kept traces as a schema set with `reasoning` (+ card). Raises `EmptyCoTSetError` when none is kept."""

    traces = read_traces(shards_dir)
    plan = read_plan(shards_dir) or {}
    positions = {str(rid): i for i, rid in enumerate(source["id"])}
    unknown = [rid for rid in traces if rid not in positions]
    if unknown:
        raise ValueError(f"{len(unknown)} synthesized ids are not in the source split (e.g. {unknown[:3]})")
    per_task: dict[str, Counter] = defaultdict(Counter)
    tries_needed: Counter = Counter()
    outcomes: Counter = Counter()
    kept: list[tuple[int, str]] = []
    for rid, trace in traces.items():
        task = str(trace.get("task"))
        per_task[task]["asked"] += 1
        outcomes.update(t.get("outcome") for t in trace["tries"])
        if trace["kept"] and trace.get("reasoning"):
            per_task[task]["kept"] += 1
            tries_needed[int(trace["tries_needed"])] += 1
            kept.append((positions[rid], trace["reasoning"]))
    if not kept:
        raise EmptyCoTSetError(
            f"no teacher trace was right among {len(traces)} questions (outcomes of the tries: {dict(outcomes)}); "
            f"nothing written to {output_dir}. Check the teacher's frame and template, or raise --num_tries"
        )
    kept.sort()
    rows = schema_rows(source, [i for i, _ in kept])
    for row, (_, reasoning) in zip(rows, kept):
        row["reasoning"] = reasoning
        validate_row(row)
    rows, decontaminated = drop_contaminated(rows, decontaminate_against)

    k = plan.get("num_tries", "?")
    task_table = {
        "columns": ["task", "questions", "kept", "keep rate"],
        "rows": [[t, c["asked"], c["kept"], f"{c['kept'] / c['asked']:.3f}"] for t, c in sorted(per_task.items())],
    }
    histogram = {
        "columns": ["tries needed", "kept rows"],
        "rows": [[n, tries_needed.get(n, 0)] for n in range(1, (k if isinstance(k, int) else max(tries_needed)) + 1)],
        "note": "How many teacher tries the kept rows needed (the first right one is kept).",
    }
    teacher = plan.get("teacher") or {}
    template = plan.get("template") or {}
    stats = {
        "teacher": ", ".join(f"{key}={value}" for key, value in teacher.items()) or "?",
        "teacher template": f"{template.get('name', '?')} (v{template.get('version', '?')}, student template "
        f"{template.get('base', '?')})",
        "teacher frame": plan.get("teacher_frame", "?"),
        "IoU threshold": plan.get("iou_threshold", "?"),
        "tries per question (k)": k,
        "questions": len(traces),
        "kept": len(rows),
        "reply outcomes": ", ".join(f"{o}={n}" for o, n in outcomes.most_common()),
    }
    name = source_name or plan.get("dataset", "the source set")
    card = render_dataset_card(
        pretty_name="trl-mig cold-start CoT set (teacher-synthesized)",
        description=(
            f"Questions of {name} answered with chain-of-thought by a teacher model; a trace is kept when its answer is "
            f"right (IoU >= {plan.get('iou_threshold', '?')} with the gold box, in the right image where it is known). "
            "The reasoning is stored without model-frame coordinates: every box the teacher wrote in it is converted "
            'to canonical `<box image="i">[x1,y1,x2,y2]</box>` tags, re-rendered per student model by the prompt '
            "templates."
        ),
        builder=NAME,
        split_rows={"train": len(rows)},
        license="other",
        repo_id=repo_id,
        task_rows={t: c["kept"] for t, c in per_task.items()},
        extra_stats=stats,
        extra_tables={"Keep rate per task": task_table, "Tries needed": histogram},
        skipped=decontaminated,
        extra_columns={"reasoning": "the teacher's chain of thought, boxes as canonical `<box image=...>` tags"},
        source_note=f"Rows of {name}; traces by `trl-mig synthesize-cot` (raw shards: `{Path(shards_dir).name}/`).",
        metadata={
            "plan": {k_: v for k_, v in plan.items() if k_ != "ids_sha256"},
            "tries_needed": {str(n): c for n, c in sorted(tries_needed.items())},
        },  # fmt: skip
    )
    counts = write_dataset({"train": rows}, output_dir, features(reasoning=True), card, overwrite=overwrite)
    return {
        "output_dir": str(output_dir),
        "rows": counts,
        "questions": len(traces),
        "per_task": {t: dict(c) for t, c in per_task.items()},
        "tries_needed": dict(sorted(tries_needed.items())),
    }


@dataclass
class BuildArguments:
    """Arguments of `trl-mig build cot`: rebuild a CoT set from existing synthesis shards."""

    shards_dir: str | None = field(default=None, metadata={"help": "Folder of the synthesizer's shards."})
    source: str | None = field(
        default=None, metadata={"help": "The dataset that was synthesized for; defaults to the one in `plan.json`."}
    )
    source_config: str | None = field(default=None, metadata={"help": "Dataset configuration name of `source`."})
    source_split: str | None = field(default=None, metadata={"help": "Split; defaults to the one in `plan.json`."})
    output_dir: str = field(default="mig_cot", metadata={"help": "Where to write README.md + data/train-*.parquet."})
    repo_id: str = field(default="<org>/mig-cot", metadata={"help": "Hub repository named in the card's snippet."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir."})
    decontaminate_against: list[str] = decontaminate_field()

    def __post_init__(self) -> None:
        if not self.shards_dir:
            raise ValueError("--shards_dir is required: the folder `trl-mig synthesize-cot` wrote its shards to")


def build(args: BuildArguments) -> dict[str, Any]:
    """Load the synthesized split and write the CoT set from `args.shards_dir`."""
    dataset, source = load_planned_source(args.shards_dir, args.source, args.source_config, args.source_split)
    return build_cot_set(dataset, args.shards_dir, args.output_dir, overwrite=args.overwrite, repo_id=args.repo_id,
                         source_name=source, decontaminate_against=args.decontaminate_against)  # fmt: skip
