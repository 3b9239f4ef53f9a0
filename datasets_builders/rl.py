"""The RL set: rejection-sampling shards + their source rows -> the prompts that still carry learning signal.

`trl-mig sample` (`trl_mig.sampling`) writes raw shards as it goes and ends by calling `build_rl_set`;
`trl-mig build rl --samples_dir DIR --source DATA` re-runs the selection on the same shards, e.g. with another band,
without sampling again.

Raw shard layout (`samples_dir`, see `shards`): `plan.json` (what was sampled: source, split, row count, ids digest,
chunk size, model, generation settings) and `chunk-000000.jsonl`, ...: one file per chunk of `chunk_size` consecutive
source rows, one line per prompt (`id`, `pass_rate`, `mean_iou`, every sample with its rewards and outcome).

Selection (DESIGN.md section 5): a sample is right when `strict_acc@0.5` holds for it; a prompt's `pass_rate` is the
share of right samples; prompts whose pass rate lies in the band (default `0 < pass_rate < 1`: neither always right
nor always wrong, so a GRPO group has reward variance to learn from) form the RL set, with `pass_rate` and
`mean_iou` (mean IoU of the samples in the right image, `iou_reward`'s value) as columns.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_mig.schema import features

from .decontaminate import decontaminate_field, drop_contaminated
from .shards import load_planned_source, read_plan, read_records
from .writer import render_dataset_card, schema_rows, write_dataset


logger = logging.getLogger(__name__)

NAME = "rl"
#: what `PassRateBand.classify` can answer, in the order of the card's table
OUTCOMES = ("kept", "dropped_all_right", "dropped_all_wrong", "dropped_out_of_band", "dropped_unlabeled")
_SCHEMA_COLUMNS = tuple(features(rl=True))


# ---------------------------------------------------------------------------------------------------------------
# the band


@dataclass(frozen=True)
class PassRateBand:
    """Which pass rates make a prompt worth RL: `low < pass_rate < high`, each edge optionally included.

    Example:
    ```python
    >>> band = PassRateBand()
    >>> [band.classify(r) for r in (0.0, 0.25, 1.0)]
    ['dropped_all_wrong', 'kept', 'dropped_all_right']
    >>> PassRateBand(0.0, 0.5, include_high=True).describe()
    '0 < pass_rate <= 0.5'

    ```
    """

    low: float = 0.0
    high: float = 1.0
    include_low: bool = False
    include_high: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(
                f"pass-rate band needs 0 <= min_pass_rate <= max_pass_rate <= 1; got {self.low} and {self.high}"
            )
        if self.low == self.high and not (self.include_low and self.include_high):
            raise ValueError(
                f"pass-rate band {self.describe()} is empty; include both edges to keep exactly pass_rate={self.low}"
            )

    def contains(self, rate: float) -> bool:
        above = rate >= self.low if self.include_low else rate > self.low
        below = rate <= self.high if self.include_high else rate < self.high
        return above and below

    def classify(self, rate: float | None) -> str:
        """`kept`, or why the prompt is dropped (`OUTCOMES`)."""
        if rate is None:
            return "dropped_unlabeled"
        if self.contains(rate):
            return "kept"
        if rate >= 1.0:
            return "dropped_all_right"
        if rate <= 0.0:
            return "dropped_all_wrong"
        return "dropped_out_of_band"

    def describe(self) -> str:
        low = f"{self.low:g} {'<=' if self.include_low else '<'} "
        high = f" {'<=' if self.include_high else '<'} {self.high:g}"
        return f"{low}pass_rate{high}"


def read_samples(samples_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every prompt record of the sampler's complete shards, by id, in chunk order (`shards.read_records`)."""
    return read_records(samples_dir, required=("id", "pass_rate", "num_generations"), what="sample")


# ---------------------------------------------------------------------------------------------------------------
# selection and writing


class EmptyRLSetError(ValueError):
    """No sampled prompt has a pass rate in the band. Nothing is written (datasets 5.2 cannot load an empty parquet
    split); the shards stay, so `trl-mig build rl` can re-select with a wider band without sampling again."""

    def __init__(self, message: str, per_task: dict[str, dict[str, int]]) -> None:
        super().__init__(message)
        self.per_task = per_task


@dataclass
class Selection:
    """The outcome of `select`: positions of the kept source rows, their measurements, and the counts per task."""

    indices: list[int]
    pass_rate: list[float]
    mean_iou: list[float | None]
    per_task: dict[str, Counter]
    pass_rates_kept: dict[str, list[float]]

    @property
    def totals(self) -> Counter:
        total: Counter = Counter()
        for counts in self.per_task.values():
            total.update(counts)
        return total


def select(ids: Sequence[str], tasks: Sequence[str], samples: Mapping[str, Mapping[str, Any]], band: PassRateBand):
    """Classify every sampled prompt and keep those in `band`, in source order.

    Args:
        ids, tasks: the `id` and `task` columns of the source split.
        samples: `read_samples(...)`; ids it has that the source lacks are an error (the wrong source).
    """
    positions = {str(rid): i for i, rid in enumerate(ids)}
    unknown = [rid for rid in samples if rid not in positions]
    if unknown:
        raise ValueError(
            f"{len(unknown)} sampled prompt ids are not in the source split (e.g. {unknown[:3]}): pass the dataset "
            "and split that were sampled"
        )
    per_task: dict[str, Counter] = defaultdict(Counter)
    kept_rates: dict[str, list[float]] = defaultdict(list)
    chosen: list[tuple[int, float, float | None]] = []
    for rid, record in samples.items():
        i = positions[rid]
        outcome = band.classify(record["pass_rate"])
        per_task[str(tasks[i])][outcome] += 1
        if outcome == "kept":
            chosen.append((i, float(record["pass_rate"]), record.get("mean_iou")))
            kept_rates[str(tasks[i])].append(float(record["pass_rate"]))
    chosen.sort()
    return Selection(
        indices=[i for i, _, _ in chosen],
        pass_rate=[r for _, r, _ in chosen],
        mean_iou=[m for _, _, m in chosen],
        per_task=dict(sorted(per_task.items())),
        pass_rates_kept=dict(kept_rates),
    )


def _task_table(selection: Selection) -> dict[str, Any]:
    rows = []
    for task, counts in selection.per_task.items():
        rates = selection.pass_rates_kept.get(task, [])
        mean = f"{sum(rates) / len(rates):.3f}" if rates else "–"
        rows.append([task, sum(counts.values()), *(counts.get(o, 0) for o in OUTCOMES), mean])
    total = selection.totals
    rows.append(["**all**", sum(total.values()), *(total.get(o, 0) for o in OUTCOMES), "–"])
    columns = ["task", "prompts", "kept", "dropped all-right", "dropped all-wrong", "dropped out of band",
               "dropped unlabeled", "mean pass rate (kept)"]  # fmt: skip
    return {"columns": columns, "rows": rows}


def build_rl_set(
    source: Any,
    samples_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    band: PassRateBand = PassRateBand(),
    *,
    overwrite: bool = False,
    repo_id: str = "<org>/mig-rl",
    source_name: str | None = None,
    extra_stats: Mapping[str, Any] | None = None,
    decontaminate_against: Sequence[str] = (),
) -> dict[str, Any]:
    """Select the RL prompts from the shards in `samples_dir` and write them (schema + `pass_rate`, `mean_iou`).

    Args:
        source (`datasets.Dataset`): the split that was sampled (schema rows; rendered columns are dropped).
        samples_dir: the sampler's shards (`read_samples`).
        output_dir: where `README.md` + `data/train-*.parquet` go (`load_dataset(output_dir)` reads them).
        band: which pass rates are kept.
        source_name: how the card names the source (defaults to the plan's).

    Returns:
        What was written: `output_dir`, `rows`, `prompts_sampled`, and `per_task` counts (`OUTCOMES`).

    Raises:
        `EmptyRLSetError`: no prompt in the band (nothing written).
    """

    samples = read_samples(samples_dir)
    plan = read_plan(samples_dir) or {}
    selection = select(source["id"], source["task"], samples, band)
    missing = [c for c in _SCHEMA_COLUMNS if c not in source.column_names and c not in ("pass_rate", "mean_iou")]
    if missing:
        raise ValueError(f"the source split lacks the schema columns {missing}")
    kept = schema_rows(source, selection.indices)
    for row, rate, mean_iou in zip(kept, selection.pass_rate, selection.mean_iou):
        row["pass_rate"], row["mean_iou"] = rate, mean_iou
    kept, decontaminated = drop_contaminated(kept, decontaminate_against)
    per_task = {t: dict(c) for t, c in selection.per_task.items()}
    if not kept:
        totals = dict(selection.totals)
        raise EmptyRLSetError(
            f"no sampled prompt has a pass rate in {band.describe()} ({len(samples)} prompts: {totals}); nothing "
            f"written to {output_dir}. The model gets every sample of a prompt right or wrong: sample more prompts or "
            f"more samples per prompt, or re-select with a wider band without sampling again: `trl-mig build rl "
            f"--samples_dir {samples_dir} --output_dir {output_dir} --include_min` (keeps all-wrong prompts)",
            per_task,
        )

    stats = {
        "pass-rate band": band.describe(),
        "prompts sampled": len(samples),
        "samples per prompt": plan.get("num_generations", "?"),
        "sampled model": plan.get("model", "?"),
        "template / frame": f"{plan.get('template', '?')} / {plan.get('frame', '?')}",
        **dict(extra_stats or {}),
    }
    generation = plan.get("generation") or {}
    if generation:
        stats["generation"] = ", ".join(f"{k}={v}" for k, v in generation.items())
    name = source_name or plan.get("dataset", "the source set")
    card = render_dataset_card(
        pretty_name="trl-mig RL set (rejection-sampled)",
        description=(
            f"Prompts of {name} (split `{plan.get('split', 'train')}`) whose pass rate under rejection sampling lies "
            f"in {band.describe()}: each was answered {plan.get('num_generations', 'N')} times by "
            f"`{plan.get('model', 'the SFT model')}`, and a sample counts as right when `strict_acc@0.5` holds (IoU "
            ">= 0.5 with the gold box, in the right image where it is known). Prompts every sample gets right or "
            "wrong give a GRPO group no reward variance, so they are dropped."
        ),
        builder=NAME,
        split_rows={"train": len(kept)},
        license="other",
        repo_id=repo_id,
        task_rows={t: c.get("kept", 0) for t, c in selection.per_task.items()},
        extra_stats=stats,
        extra_tables={"Rejection sampling per task": _task_table(selection)},
        skipped=decontaminated,
        extra_columns={
            "pass_rate": "share of the samples that were right (`strict_acc@0.5`)",
            "mean_iou": "mean IoU of the samples with the gold box, 0 in the wrong image (`iou_reward`)",
        },
        source_note=f"Rows of {name}; measurements by `trl-mig sample` (raw shards: `{Path(samples_dir).name}/`).",
        metadata={
            "band": asdict(band),
            "plan": {k: v for k, v in plan.items() if k != "ids_sha256"},
            "per_task": per_task,
        },
    )
    counts = write_dataset({"train": kept}, output_dir, features(rl=True), card, overwrite=overwrite)
    return {
        "output_dir": str(output_dir),
        "rows": counts,
        "prompts_sampled": len(samples),
        "band": band.describe(),
        "per_task": per_task,
    }


# ---------------------------------------------------------------------------------------------------------------
# `trl-mig build rl`


@dataclass
class BuildArguments:
    """Arguments of `trl-mig build rl`: re-select an RL set from existing sample shards."""

    samples_dir: str | None = field(
        default=None, metadata={"help": "Folder of the sampler's shards (`plan.json`, chunks)."}
    )
    source: str | None = field(
        default=None,
        metadata={"help": "The dataset that was sampled (path or Hub id); defaults to the one in `plan.json`."},
    )
    source_config: str | None = field(default=None, metadata={"help": "Dataset configuration name of `source`."})
    source_split: str | None = field(
        default=None, metadata={"help": "Split that was sampled; defaults to the one in `plan.json`."}
    )
    output_dir: str = field(default="mig_rl", metadata={"help": "Where to write README.md + data/train-*.parquet."})
    min_pass_rate: float = field(default=0.0, metadata={"help": "Lower edge of the pass-rate band."})
    max_pass_rate: float = field(default=1.0, metadata={"help": "Upper edge of the pass-rate band."})
    include_min: bool = field(default=False, metadata={"help": "Keep prompts whose pass rate equals the lower edge."})
    include_max: bool = field(default=False, metadata={"help": "Keep prompts whose pass rate equals the upper edge."})
    repo_id: str = field(default="<org>/mig-rl", metadata={"help": "Hub repository named in the card's snippet."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir."})
    decontaminate_against: list[str] = decontaminate_field()

    def __post_init__(self) -> None:
        if not self.samples_dir:
            raise ValueError("--samples_dir is required: the folder `trl-mig sample` wrote its shards to")
        self.band()

    def band(self) -> PassRateBand:
        return PassRateBand(self.min_pass_rate, self.max_pass_rate, self.include_min, self.include_max)


def build(args: BuildArguments) -> dict[str, Any]:
    """Load the sampled split and write the RL set selected from `args.samples_dir`."""
    dataset, source = load_planned_source(args.samples_dir, args.source, args.source_config, args.source_split)
    return build_rl_set(
        dataset, args.samples_dir, args.output_dir, args.band(), overwrite=args.overwrite, repo_id=args.repo_id,
        source_name=source, decontaminate_against=args.decontaminate_against,
    )  # fmt: skip
