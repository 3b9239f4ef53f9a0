"""Procedural multi-image grounding rows (`trl-mig build synthetic`): shapes, colours and textures on backgrounds.

Seeded and reproducible: row `i` of a split depends only on `(seed, split, i)` and the settings, so rows can be
generated one at a time or in shards. In memory:

```python
>>> from trl_mig.datasets_builders.synthetic import generate_rows
>>> rows = generate_rows("train", 2, seed=0)
>>> sorted(rows[0]) == sorted(["id", "images", "question", "solution", "target_image", "image_sizes", "task",
...                            "source", "reasoning"])
True

```

An easier world for tiny models: `GeneratorConfig.from_style("simple")` (`--style simple`: squares and circles in
six colours, upright, untextured, on one flat background colour); each knob (`shapes`, `colours`, `rotate`,
`plain_background`, `texture_prob`) can also be set alone, and the defaults draw exactly the rows they always have.

A short reasoning for tiny models: `reasoning="brief"` (`--reasoning brief`) writes one or two sentences with only the
target's attributes, its image and a coarse position ("The red square is in image 3, near the top edge."); the images,
questions and boxes of a seed are the same as with the default `"full"` reasoning.

Layout: `background` and `scene` (pure specifications and their rendering, exact pixel boxes), `text` (words),
`sampling` (settings and shared draws), `tasks` (one sampler per task, with the target rules), `rows` (seeds and
schema rows), `build` (the builder: `BuildArguments`, `build`).
"""

from .background import Background, PlacementError
from .build import NAME, BuildArguments, build
from .rows import (
    DEFAULT_TASK_WEIGHTS,
    GENERATOR_VERSION,
    SOURCE,
    choose_task,
    generate_row,
    generate_rows,
    iter_rows,
    parse_tasks,
    row_seed,
    sample_task,
    sample_to_row,
)
from .sampling import REASONINGS, STYLES, GeneratorConfig, TaskSample
from .scene import COLOURS, SHAPES, TEXTURES, ObjectSpec, Scene, render_scene
from .tasks import TASKS, target_rules


__all__ = [
    "COLOURS",
    "DEFAULT_TASK_WEIGHTS",
    "GENERATOR_VERSION",
    "NAME",
    "REASONINGS",
    "SHAPES",
    "SOURCE",
    "STYLES",
    "TASKS",
    "TEXTURES",
    "Background",
    "BuildArguments",
    "GeneratorConfig",
    "ObjectSpec",
    "PlacementError",
    "Scene",
    "TaskSample",
    "build",
    "choose_task",
    "generate_row",
    "generate_rows",
    "iter_rows",
    "parse_tasks",
    "render_scene",
    "row_seed",
    "sample_task",
    "sample_to_row",
    "target_rules",
]
