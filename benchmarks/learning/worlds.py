"""The benchmark's row sets, as schema rows (`trl_mig.schema`): one-shape scenes for the first pre-training phase, and
the project's synthetic generator in its `simple` style for everything else.

The generator needs at least two objects per scene (`GeneratorConfig.max_objects >= 2`), and the first phase needs
exactly one object on a flat background (the world a tiny model learns the box read-out in, `NOTES.md` "Probe"), so
that world is drawn here, in the schema with a reasoning text, so every template renders it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def one_shape_rows(n: int, seed: int, side: int = 112, reasoning: str = "full") -> list[dict[str, Any]]:
    """`n` rows with one axis-aligned rectangle or ellipse (25-55 % of the side) on a uniform, contrasting background;
    `reasoning` as the generator's (`brief`: where the shape is, no box)."""
    from PIL import Image, ImageDraw

    from trl_mig.datasets_builders.synthetic.text import position_phrase
    from trl_mig.schema import format_box_tag

    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        background = rng.integers(0, 256, 3)
        colour = tuple(int(v) for v in (background + rng.integers(80, 176, 3)) % 256)
        image = Image.new("RGB", (side, side), tuple(int(v) for v in background))
        w, h = rng.uniform(0.25, 0.55, 2)
        x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        box = [round(float(v), 4) for v in (x0, y0, x0 + w, y0 + h)]
        kind = "rectangle" if rng.random() < 0.5 else "ellipse"
        draw = ImageDraw.Draw(image)
        (draw.rectangle if kind == "rectangle" else draw.ellipse)(
            [box[0] * side, box[1] * side, box[2] * side - 1, box[3] * side - 1], fill=colour
        )
        rows.append({
            "id": f"shape-{seed}-{i}", "images": [image], "image_sizes": [(side, side)], "task": "single",
            "question": "Where is the shape? Give its bounding box.", "solution": [box], "target_image": [0],
            "reasoning": f"The {kind} is {position_phrase(box)} of image 1." if reasoning == "brief"
            else f"Image 1 shows one {kind}, so the target is at {format_box_tag(box, 0)}.",
            "source": "one-shape",
        })  # fmt: skip
    return rows


def generator_config(
    max_objects: int, min_images: int = 2, max_images: int = 5, side: int = 112, reasoning: str = "full"
) -> Any:
    """The `simple` style at a fixed square image size (16 merged vision tokens per image for the tiny models)."""
    from trl_mig.datasets_builders.synthetic import GeneratorConfig

    return GeneratorConfig.from_style("simple", image_min_side=side, image_max_side=side, min_images=min_images,
                                      max_images=max_images, max_objects=max_objects, min_object_frac=0.2,
                                      reasoning=reasoning)  # fmt: skip


def simple_rows(
    n: int,
    seed: int,
    tasks: Any,
    max_objects: int = 2,
    split: str = "train",
    max_images: int = 5,
    reasoning: str = "full",
) -> list[dict[str, Any]]:
    """`n` generator rows of `tasks` in the simple style (in memory; the pipeline's sets are built to disk)."""
    from trl_mig.datasets_builders.synthetic import generate_rows

    config = generator_config(max_objects, max_images=max_images, reasoning=reasoning)
    return generate_rows(split, n, seed=seed, tasks=tasks, config=config)
