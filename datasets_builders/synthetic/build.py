"""`trl-mig build synthetic`: generate the splits, validate every row, write parquet + dataset card atomically."""

from __future__ import annotations

import io
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_mig.schema import features, validate_row

from ..decontaminate import decontaminate_field
from ..writer import DEFAULT_SHARD_ROWS, count_by, render_dataset_card, write_dataset
from .rows import DEFAULT_TASK_WEIGHTS, GENERATOR_VERSION, generate_rows, parse_tasks
from .sampling import GeneratorConfig
from .tasks import target_rules


logger = logging.getLogger(__name__)

NAME = "synthetic"
_DEFAULT_TASKS = [f"{name}={weight:g}" for name, weight in DEFAULT_TASK_WEIGHTS.items()]
_DEFAULTS = GeneratorConfig()


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
    texture_prob: float = field(
        default=_DEFAULTS.texture_prob, metadata={"help": "Probability that an object is striped or dotted."}
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
        return GeneratorConfig(
            image_min_side=self.image_min_side,
            image_max_side=self.image_max_side,
            max_aspect_ratio=self.max_aspect_ratio,
            min_images=self.min_images,
            max_images=self.max_images,
            max_objects=self.max_objects,
            min_object_frac=self.min_object_frac,
            texture_prob=self.texture_prob,
        )


def _chunk(job: tuple) -> list[dict[str, Any]]:
    """Rows `start .. start + n - 1` of a split, images encoded as PNG (the costly part of writing, done here)."""
    split, start, n, seed, weights, config, compress_level = job
    rows = generate_rows(split, n, seed, tasks=weights, config=config, start=start)
    for row in rows:
        row["images"] = [{"bytes": _png(image, compress_level), "path": None} for image in row["images"]]
    return rows


def _png(image, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _generate(split: str, n: int, args: BuildArguments, weights: dict[str, float]) -> list[dict[str, Any]]:
    """Rows of `split` with PNG-encoded images, in `num_workers` processes; the rows do not depend on it."""
    config, level = args.generator_config(), args.png_compress_level
    if args.num_workers == 1 or n < 2 * args.num_workers:
        return _chunk((split, 0, n, args.seed, weights, config, level))
    step = -(-n // (4 * args.num_workers))
    jobs = [(split, s, min(step, n - s), args.seed, weights, config, level) for s in range(0, n, step)]
    # spawn: a forked child of a process with threads may deadlock (and Python warns about it)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.num_workers, mp_context=context) as pool:
        return [row for rows in pool.map(_chunk, jobs) for row in rows]


def _card(
    args: BuildArguments,
    weights: dict[str, float],
    splits: dict[str, list[dict[str, Any]]],
    dropped: dict[str, int] | None = None,
) -> str:
    rows = [row for split_rows in splits.values() for row in split_rows]
    n_images = [len(row["images"]) for row in rows]
    config = args.generator_config()
    description = (
        "Procedurally generated multi-image grounding questions: shapes (circle, square, triangle, star, ring, cross, "
        "diamond, hexagon) in eleven colours, plain, striped or dotted, on gradient, blob and patterned backgrounds, "
        "among distractors that differ from the target by one attribute. One image for single-image pre-training; "
        f"two to {config.max_images} for the multi-image tasks modelled on MIG-Bench. Gold boxes are the tight boxes "
        "of the target's pixels; every row carries a `reasoning` written from the generator's ground truth.\n\n"
        + target_rules(config)
    )
    return render_dataset_card(
        pretty_name="trl-mig synthetic multi-image grounding",
        description=description,
        builder=NAME,
        split_rows={split: len(split_rows) for split, split_rows in splits.items()},
        license="apache-2.0",
        repo_id=args.repo_id,
        skipped={f"decontamination: an image is in benchmark set `{b}`": n for b, n in (dropped or {}).items()},
        task_rows=count_by(rows, "task"),
        extra_stats={
            "seed": args.seed,
            "generator version": GENERATOR_VERSION,
            "task weights": ", ".join(f"{name}={weight:g}" for name, weight in weights.items()),
            "images per row (min / mean / max)": f"{min(n_images)} / {sum(n_images) / len(n_images):.2f} / "
            f"{max(n_images)}",
            "image sides (px)": f"{config.image_min_side}-{config.image_max_side}, aspect ratio <= "
            f"{config.max_aspect_ratio:g}",
            "smallest object side": f"{config.min_object_frac:g} of the image's shorter side",
        },
        extra_columns={
            "reasoning": "chain of thought written from the generator's ground truth (images, attributes, "
            'positions); boxes written `<box image="i">[x1,y1,x2,y2]</box>`, canonical'
        },
        source_note=(
            "Generated by `trl_mig.datasets_builders.synthetic` with PIL and numpy; no external images or "
            "annotations. Row i of a split depends only on the seed, the split name, i and the settings recorded in "
            "the metadata."
        ),
        metadata={"seed": args.seed, "generator_version": GENERATOR_VERSION, "tasks": weights, **asdict(config)},
    )


def build(args: BuildArguments) -> dict[str, Any]:
    """Generate, validate and write the `train` (and `test`) splits with their card. Returns what was written."""
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; pass overwrite=True (`--overwrite`) to replace it")
    weights = parse_tasks(args.tasks)
    started = time.perf_counter()
    splits = {}
    for split, n in (("train", args.num_train), ("test", args.num_test)):
        if n:
            splits[split] = _generate(split, n, args, weights)
            for row in splits[split]:
                validate_row(row)
    dropped: dict[str, int] = {}
    if args.decontaminate_against:
        from ..decontaminate import BenchmarkIndex

        index = BenchmarkIndex.from_dirs(args.decontaminate_against)
        for split in splits:
            splits[split], counts = index.filter(splits[split])
            for bench, n in counts.items():
                dropped[bench] = dropped.get(bench, 0) + n
    seconds = time.perf_counter() - started
    card = _card(args, weights, splits, dropped)
    counts = write_dataset(
        splits, output_dir, features(reasoning=True), card, overwrite=args.overwrite, shard_rows=args.shard_rows
    )
    total = sum(counts.values())
    logger.info("generated %d rows in %.1f s (%.0f rows/s)", total, seconds, total / seconds)
    return {
        "output_dir": str(output_dir),
        "rows": counts,
        "tasks": count_by([row for rows in splits.values() for row in rows], "task"),
        "generation_seconds": round(seconds, 3),
        "decontaminated": dropped,
        "rows_per_second": round(total / seconds, 1),
    }
