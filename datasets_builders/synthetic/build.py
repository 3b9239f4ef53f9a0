"""`trl-mig build synthetic`: generate the splits, validate every row, write parquet + dataset card atomically.

Streaming: rows are written to parquet shards as they are generated and the card's counts tallied on the way, so the
build's memory stays flat as `--num_train` grows (the rows themselves depend only on seed, split and index).
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_mig.schema import features, validate_row

from ..decontaminate import decontaminate_field
from ..writer import DEFAULT_SHARD_ROWS, ParquetShardWriter, render_dataset_card, staging_dir
from .rows import DEFAULT_TASK_WEIGHTS, GENERATOR_VERSION, iter_rows, parse_tasks
from .sampling import REASONINGS, STYLES, GeneratorConfig
from .tasks import target_rules


logger = logging.getLogger(__name__)

NAME = "synthetic"
_DEFAULT_TASKS = [f"{name}={weight:g}" for name, weight in DEFAULT_TASK_WEIGHTS.items()]
_DEFAULTS = GeneratorConfig()
#: flags that default to `--style` (None: take the style's value)
_STYLE_KNOBS = ("texture_prob", "shapes", "colours", "rotate", "plain_background")


@dataclass
class BuildArguments:
    """Arguments of `trl-mig build synthetic`."""

    output_dir: str = field(default="mig_synthetic", metadata={"help": "Where to write README.md + data/*.parquet."})
    num_train: int = field(default=1000, metadata={"help": "Rows of the `train` split."})
    num_test: int = field(default=200, metadata={"help": "Rows of the `test` split (0: no test split)."})
    seed: int = field(
        default=0, metadata={"help": "Seed; row i of a split depends only on (seed, split, i) and the settings."}
    )
    tasks: list[str] = field(
        default_factory=lambda: list(_DEFAULT_TASKS),
        metadata={
            "help": "Tasks and their weights, e.g. `single=2 diff` or `single,common_object` (weight 1 if unset). "
            "Available: single, common_object, diff, refer_grounding, group_grounding, multi_view."
        },
    )
    image_min_side: int = field(default=_DEFAULTS.image_min_side, metadata={"help": "Smallest image side (px)."})
    image_max_side: int = field(default=_DEFAULTS.image_max_side, metadata={"help": "Largest image side (px)."})
    max_aspect_ratio: float = field(
        default=_DEFAULTS.max_aspect_ratio, metadata={"help": "Largest long/short side ratio of an image."}
    )
    min_images: int = field(
        default=_DEFAULTS.min_images, metadata={"help": "Fewest images of `common_object` and `group_grounding`."}
    )
    max_images: int = field(
        default=_DEFAULTS.max_images,
        metadata={"help": "Most images of `common_object`, `group_grounding` and `multi_view` (at most 10)."},
    )
    max_objects: int = field(
        default=_DEFAULTS.max_objects, metadata={"help": "Most objects per image, target included (2 to 8)."}
    )
    min_object_frac: float = field(
        default=_DEFAULTS.min_object_frac,
        metadata={"help": "Smallest object box side as a fraction of its image's shorter side (at most 0.2)."},
    )
    style: str = field(
        default="rich",
        metadata={
            "help": "Preset of the five flags below: `rich` (their defaults) or `simple` (square and circle; red, "
            "green, blue, yellow, white, black; upright; no textures; plain backgrounds), an easy world a tiny model "
            "learns to ground in minutes. A flag given explicitly wins over the preset.",
            "choices": list(STYLES),
        },
    )
    texture_prob: float | None = field(
        default=None,
        metadata={
            "help": f"Probability that an object is striped or dotted (default: {_DEFAULTS.texture_prob:g}, 0 with "
            "`--style simple`)."
        },
    )
    shapes: list[str] | None = field(
        default=None,
        metadata={
            "help": f"Shapes objects are drawn from, at least 2 of: {', '.join(_DEFAULTS.shapes)} (default: all; "
            "square and circle with `--style simple`)."
        },
    )
    colours: list[str] | None = field(
        default=None,
        metadata={
            "help": f"Colours objects are drawn from, at least 2 of: {', '.join(_DEFAULTS.colours)} (default: all; "
            "six with `--style simple`)."
        },
    )
    rotate: bool | None = field(
        default=None,
        # nargs/const: a bare `--rotate` means true, as for a plain bool flag (None stays "not given")
        metadata={
            "help": "Rotate shapes; `--rotate false` draws them upright (default: true, false with `--style simple`).",
            "nargs": "?",
            "const": True,
        },
    )
    plain_background: bool | None = field(
        default=None,
        metadata={
            "help": "One uniform background colour per image, no gradient, pattern or noise (default: false, true "
            "with `--style simple`).",
            "nargs": "?",
            "const": True,
        },
    )
    reasoning: str = field(
        default=_DEFAULTS.reasoning,
        metadata={
            "help": "The rows' `reasoning`: `full` lists every object of every image, the near misses and the box; "
            "`brief` is one or two sentences naming the target, its image and a coarse position (no box), short "
            "enough for a tiny model to learn. Images, questions and boxes do not depend on it.",
            "choices": list(REASONINGS),
        },
    )
    num_workers: int = field(default=1, metadata={"help": "Processes generating rows (the rows do not depend on it)."})
    png_compress_level: int = field(
        default=1,
        metadata={"help": "PNG compression of the images, 0-9: 1 writes about 4x faster than 6 for ~20%% more bytes."},
    )
    shard_rows: int = field(default=DEFAULT_SHARD_ROWS, metadata={"help": "Rows per parquet file."})
    repo_id: str = field(
        default="<org>/mig-synthetic", metadata={"help": "Hub repository named in the card's usage snippet."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --output_dir."})
    decontaminate_against: list[str] = decontaminate_field()

    def __post_init__(self):
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        parse_tasks(self.tasks)  # fail early on unknown names or bad weights
        if self.num_train < 1 or self.num_test < 0:
            raise ValueError(f"need num_train >= 1 and num_test >= 0; got {self.num_train} and {self.num_test}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level must be in [0, 9], got {self.png_compress_level}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        self.generator_config()

    def generator_config(self) -> GeneratorConfig:
        """The generator's settings: `--style`'s preset, overridden by every style flag given (not None)."""
        explicit = {name: getattr(self, name) for name in _STYLE_KNOBS if getattr(self, name) is not None}
        return GeneratorConfig.from_style(
            self.style,
            **explicit,
            image_min_side=self.image_min_side,
            image_max_side=self.image_max_side,
            max_aspect_ratio=self.max_aspect_ratio,
            min_images=self.min_images,
            max_images=self.max_images,
            max_objects=self.max_objects,
            min_object_frac=self.min_object_frac,
            reasoning=self.reasoning,
        )


#: rows per job handed to a worker process: small, so that few encoded rows wait in memory at any time
_JOB_ROWS = 16


def _chunk(job: tuple) -> list[dict[str, Any]]:
    """Rows `start .. start + n - 1` of a split, images encoded as PNG (the costly part of writing, done here)."""
    split, start, n, seed, weights, config, compress_level = job
    rows = []
    for row in iter_rows(split, n, seed, tasks=weights, config=config, start=start):
        row["images"] = [{"bytes": _png(image, compress_level), "path": None} for image in row["images"]]
        rows.append(row)
    return rows


def _png(image, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _generate(split: str, n: int, args: BuildArguments, weights: dict[str, float]) -> Iterator[dict[str, Any]]:
    """Rows of `split` in order, PNG-encoded, from `num_workers` processes; the rows do not depend on it.

    Why jobs of `_JOB_ROWS` rows and a bounded queue: the consumer writes each row as it comes, and at most
    `2 * num_workers` jobs are in flight, so memory stays flat however many rows the split has.
    """
    config, level = args.generator_config(), args.png_compress_level
    jobs = ((split, s, min(_JOB_ROWS, n - s), args.seed, weights, config, level) for s in range(0, n, _JOB_ROWS))
    if args.num_workers == 1 or n < 2 * args.num_workers:
        for job in jobs:
            yield from _chunk(job)
        return
    # spawn: a forked child of a process with threads may deadlock (and Python warns about it)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.num_workers, mp_context=context) as pool:
        in_flight: deque[Future] = deque()
        for job in jobs:
            in_flight.append(pool.submit(_chunk, job))
            if len(in_flight) >= 2 * args.num_workers:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


@dataclass
class _Tally:
    """What the card reports, counted while rows stream past (no row is kept)."""

    split_rows: dict[str, int] = field(default_factory=dict)
    task_rows: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    images_min: int | None = None
    images_max: int = 0
    images_sum: int = 0

    def add(self, split: str, row: dict[str, Any]) -> None:
        n = len(row["images"])
        self.split_rows[split] = self.split_rows.get(split, 0) + 1
        self.task_rows[row["task"]] += 1
        self.images_min = n if self.images_min is None else min(self.images_min, n)
        self.images_max, self.images_sum = max(self.images_max, n), self.images_sum + n

    @property
    def images_per_row(self) -> str:
        rows = sum(self.split_rows.values())
        if not rows:
            return "no rows"
        return f"{self.images_min} / {self.images_sum / rows:.2f} / {self.images_max}"


def _card(args: BuildArguments, weights: dict[str, float], tally: _Tally) -> str:
    config = args.generator_config()
    description = (
        f"Procedurally generated multi-image grounding questions: {_world(config)}, "
        "among distractors that differ from the target by one attribute. One image for single-image pre-training; "
        f"two to {config.max_images} for the multi-image tasks modelled on MIG-Bench. Gold boxes are the tight boxes "
        "of the target's pixels; every row carries a `reasoning` written from the generator's ground truth.\n\n"
        + target_rules(config)
    )
    return render_dataset_card(
        pretty_name="trl-mig synthetic multi-image grounding",
        description=description,
        builder=NAME,
        split_rows=dict(tally.split_rows),
        license="apache-2.0",
        repo_id=args.repo_id,
        skipped={f"decontamination: an image is in benchmark set `{b}`": n for b, n in tally.dropped.items()},
        task_rows=dict(tally.task_rows),
        extra_stats={
            "seed": args.seed,
            "generator version": GENERATOR_VERSION,
            "task weights": ", ".join(f"{name}={weight:g}" for name, weight in weights.items()),
            "images per row (min / mean / max)": tally.images_per_row,
            "image sides (px)": f"{config.image_min_side}-{config.image_max_side}, aspect ratio <= "
            f"{config.max_aspect_ratio:g}",
            "smallest object side": f"{config.min_object_frac:g} of the image's shorter side",
            "style": args.style,
            "reasoning": config.reasoning,
        },
        extra_columns={"reasoning": _REASONING_COLUMN[config.reasoning]},
        source_note=(
            "Generated by `trl_mig.datasets_builders.synthetic` with PIL and numpy; no external images or "
            "annotations. Row i of a split depends only on the seed, the split name, i and the settings recorded in "
            "the metadata."
        ),
        metadata={
            "seed": args.seed,
            "generator_version": GENERATOR_VERSION,
            "tasks": weights,
            "style": args.style,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        },
    )


#: the card's description of the `reasoning` column, per `GeneratorConfig.reasoning`
_REASONING_COLUMN = {
    "full": "chain of thought written from the generator's ground truth (images, attributes, positions); boxes written "
    '`<box image="i">[x1,y1,x2,y2]</box>`, canonical',
    "brief": "one or two sentences written from the generator's ground truth: the target's attributes, its image "
    "(1-based) and a coarse position; no boxes and no other objects",
}


def _world(config: GeneratorConfig) -> str:
    """What the scenes hold, in words, for the card (the default settings read as they always have)."""
    upright = "" if config.rotate else "upright "
    colours = "eleven colours" if config.colours == _DEFAULTS.colours else f"the colours {', '.join(config.colours)}"
    textures = "plain, striped or dotted" if config.texture_prob > 0 else "all plain"
    background = "plain one-colour" if config.plain_background else "gradient, blob and patterned"
    return f"{upright}shapes ({', '.join(config.shapes)}) in {colours}, {textures}, on {background} backgrounds"


def _write_split(
    split: str, n: int, args: BuildArguments, weights: dict[str, float], staging: Path, index: Any, tally: _Tally
) -> None:
    """Generate, validate, decontaminate and write one split row by row into `staging/data`."""
    shards = ParquetShardWriter(staging / "data", split, features(reasoning=True), args.shard_rows)
    tally.split_rows[split] = 0  # a split whose rows are all dropped is still written (empty) and listed
    for row in _generate(split, n, args, weights):
        validate_row(row)
        hit = next((m for m in map(index.match, row["images"]) if m is not None), None) if index is not None else None
        if hit is not None:
            tally.dropped[hit] += 1
            continue
        shards.add(row)
        tally.add(split, row)
    shards.close()


def build(args: BuildArguments) -> dict[str, Any]:
    """Generate, validate and write the `train` (and `test`) splits and their card, streaming; returns what it wrote.

    Rows go to parquet as they are generated (`ParquetShardWriter`) and the card's counts are tallied on the way, so
    memory does not grow with `num_train`. Everything is written into a staging folder beside `output_dir`, moved into
    place only when complete: a failure leaves nothing half-written.
    """
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; pass overwrite=True (`--overwrite`) to replace it")
    weights = parse_tasks(args.tasks)
    index = None
    if args.decontaminate_against:
        from ..decontaminate import BenchmarkIndex

        index = BenchmarkIndex.from_dirs(args.decontaminate_against)
    started = time.perf_counter()
    tally = _Tally()
    with staging_dir(output_dir) as staging:
        for split, n in (("train", args.num_train), ("test", args.num_test)):
            if n:
                _write_split(split, n, args, weights, staging, index, tally)
        (staging / "README.md").write_text(_card(args, weights, tally))
    seconds = time.perf_counter() - started
    total = sum(tally.split_rows.values())
    logger.info("generated and wrote %d rows in %.1f s (%.0f rows/s)", total, seconds, total / seconds)
    return {
        "output_dir": str(output_dir),
        "rows": dict(tally.split_rows),
        "tasks": dict(tally.task_rows),
        "generation_seconds": round(seconds, 3),
        "decontaminated": dict(tally.dropped),
        "rows_per_second": round(total / seconds, 1),
    }
