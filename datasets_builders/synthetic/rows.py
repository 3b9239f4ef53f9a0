"""Schema rows from the tasks: one seed per row, so any row (or shard of rows) is generated on its own."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .sampling import GeneratorConfig, TaskSample
from .scene import PlacementError
from .tasks import TASKS


logger = logging.getLogger(__name__)

#: bumped whenever the same seed would give different rows
GENERATOR_VERSION = "1"
SOURCE = "synthetic"
#: default mix: single-image pre-training rows twice as often as each multi-image task
DEFAULT_TASK_WEIGHTS: dict[str, float] = {
    "single": 2.0,
    "common_object": 1.0,
    "diff": 1.0,
    "refer_grounding": 1.0,
    "group_grounding": 1.0,
    "multi_view": 1.0,
}
_MAX_ATTEMPTS = 100

Seed = int | Sequence[int]


def parse_tasks(tasks: str | Sequence[str] | Mapping[str, float] | None) -> dict[str, float]:
    """Task weights from `"single=2,diff"`, `["single=2", "diff"]` or `{"single": 2, "diff": 1}` (weight 1 if unset).

    Either spelling of a name is accepted (`common-object` / `common_object`); `None` gives `DEFAULT_TASK_WEIGHTS`.

    Example:
    ```python
    >>> parse_tasks("single=2, common-object")
    {'single': 2.0, 'common_object': 1.0}

    ```
    """
    if tasks is None:
        return dict(DEFAULT_TASK_WEIGHTS)
    if isinstance(tasks, Mapping):
        items = [(str(k), v) for k, v in tasks.items()]
    else:
        parts = [tasks] if isinstance(tasks, str) else list(tasks)
        items = []
        for part in (p.strip() for chunk in parts for p in str(chunk).split(",")):
            if part:
                name, _, weight = part.partition("=")
                items.append((name, weight.strip() or 1.0))
    weights: dict[str, float] = {}
    for name, weight in items:
        key = name.strip().lower().replace("-", "_")
        if key not in TASKS:
            raise ValueError(f"unknown synthetic task {name!r}; available: {', '.join(TASKS)}")
        try:
            value = float(weight)
        except ValueError as exc:
            raise ValueError(f"task {name!r}: weight {weight!r} is not a number (write `{key}=2`)") from exc
        if not value > 0:
            raise ValueError(f"task {name!r}: weight must be > 0, got {value}; leave the task out instead")
        weights[key] = value
    if not weights:
        raise ValueError(f"no synthetic task selected; available: {', '.join(TASKS)}")
    return weights


def row_seed(seed: int, split: str, index: int) -> tuple[int, int, int]:
    """The seed of row `index` of `split`: independent of how many rows are generated, and of the other rows."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return (int(seed), zlib.crc32(split.encode()), int(index))


def choose_task(rng_seed: Seed, weights: Mapping[str, float]) -> str:
    """The task of a row: a draw from its own stream (spawn key 1), apart from the one the task itself uses."""
    rng = np.random.default_rng(np.random.SeedSequence(rng_seed, spawn_key=(1,)))
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_task(task: str, rng_seed: Seed, config: GeneratorConfig | None = None) -> TaskSample:
    """Draw one `task` sample (scenes, images, boxes, text) from `rng_seed`; deterministic.

    A layout that does not fit is drawn again from the same stream, so retries keep the row reproducible.
    """
    key = task.strip().lower().replace("-", "_")
    if key not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; available: {', '.join(TASKS)}")
    config = config or GeneratorConfig()
    rng = np.random.default_rng(np.random.SeedSequence(rng_seed))
    for _ in range(_MAX_ATTEMPTS):
        try:
            return TASKS[key](rng, config)
        except PlacementError as exc:
            logger.debug("%s, seed %s: drawing again (%s)", key, rng_seed, exc)
    raise RuntimeError(
        f"{key}, seed {rng_seed}: no layout fits after {_MAX_ATTEMPTS} tries; use larger images or fewer objects"
    )


def sample_to_row(sample: TaskSample, row_id: str) -> dict[str, Any]:
    """The schema row (DESIGN.md section 3, with `reasoning`) of a sample."""
    return {
        "id": row_id,
        "images": sample.images,
        "question": sample.question,
        "solution": [list(sample.solution)],
        "target_image": [sample.target_image],
        "image_sizes": [[scene.width, scene.height] for scene in sample.scenes],
        "task": sample.task,
        "source": SOURCE,
        "reasoning": sample.reasoning,
    }


def generate_row(
    task: str, rng_seed: Seed, config: GeneratorConfig | None = None, *, row_id: str | None = None
) -> dict[str, Any]:
    """One schema row of `task` drawn from `rng_seed` (an int or a sequence of ints, e.g. `row_seed(...)`).

    Example:
    ```python
    >>> row = generate_row("single", 7)
    >>> row["task"], row["target_image"], len(row["images"]), row["id"]
    ('single', [0], 1, 'synthetic-single-7')

    ```
    """
    sample = sample_task(task, rng_seed, config)
    if row_id is None:
        row_id = f"synthetic-{sample.task}-" + "-".join(str(v) for v in np.atleast_1d(rng_seed).tolist())
    return sample_to_row(sample, row_id)


def iter_rows(
    split: str,
    n: int,
    seed: int = 0,
    *,
    tasks: str | Sequence[str] | Mapping[str, float] | None = None,
    config: GeneratorConfig | None = None,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """Rows `start .. start + n - 1` of `split`; row `i` is the same whatever `n` and `start` are (shardable).

    Row ids are `synthetic-{split}-{i:06d}`; each row's task is drawn from `tasks` (weights, see `parse_tasks`).
    """
    weights = parse_tasks(tasks)
    config = config or GeneratorConfig()
    for index in range(start, start + n):
        entropy = row_seed(seed, split, index)
        task = choose_task(entropy, weights)
        yield generate_row(task, entropy, config, row_id=f"synthetic-{split}-{index:06d}")


def generate_rows(
    split: str,
    n: int,
    seed: int = 0,
    *,
    tasks: str | Sequence[str] | Mapping[str, float] | None = None,
    config: GeneratorConfig | None = None,
    start: int = 0,
) -> list[dict[str, Any]]:
    """`list(iter_rows(...))`: in-memory rows for demos and tests (nothing written).

    Example:
    ```python
    >>> rows = generate_rows("train", 3, seed=0, tasks="common_object")
    >>> [r["id"] for r in rows], {r["task"] for r in rows}
    (['synthetic-train-000000', 'synthetic-train-000001', 'synthetic-train-000002'], {'common_object'})

    ```
    """
    return list(iter_rows(split, n, seed, tasks=tasks, config=config, start=start))
