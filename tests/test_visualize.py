"""`trl_mig.visualize`: boxes land where their canonical coordinates say, in the right colours, and drawing never
raises on what a model may write."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from trl_mig.visualize import GOLD_COLOR, PRED_COLOR, BoxMark, draw_boxes, grounding_panel


WHITE = (255, 255, 255)


def _has(image: Image.Image, color: tuple[int, int, int]) -> bool:
    return bool((np.asarray(image.convert("RGB")) == color).all(axis=-1).any())


def test_draw_boxes_outlines_at_the_canonical_position() -> None:
    image = Image.new("RGB", (201, 101), WHITE)
    out = draw_boxes(image, [BoxMark((0.25, 0.2, 0.75, 0.8), PRED_COLOR)], line_width=1)
    assert out is not image and image.getpixel((50, 50)) == WHITE  # a copy; the input is untouched
    assert out.getpixel((50, 50)) == PRED_COLOR  # left edge: x = 0.25 * (201 - 1)
    assert out.getpixel((150, 50)) == PRED_COLOR  # right edge
    assert out.getpixel((100, 20)) == PRED_COLOR  # top edge: y = 0.2 * (101 - 1)
    assert out.getpixel((100, 50)) == WHITE  # inside stays clear


def test_draw_boxes_converts_modes_and_labels() -> None:
    gray = Image.new("L", (120, 120), 255)
    out = draw_boxes(gray, [BoxMark((0.3, 0.3, 0.6, 0.6), GOLD_COLOR, "gold")])
    assert out.mode == "RGB" and _has(out, GOLD_COLOR)


@pytest.mark.parametrize(
    "box",
    [
        (math.nan, 0.1, 0.5, 0.5),
        (math.inf, 0.1, 0.5, 0.5),
        (0.1, 0.2, 0.3),
        ("a", "b", "c", "d"),
        None,
    ],
)
def test_undrawable_boxes_are_skipped(box) -> None:
    image = Image.new("RGB", (50, 50), WHITE)
    out = draw_boxes(image, [BoxMark(box, PRED_COLOR, "pred")])
    assert not _has(out, PRED_COLOR)


def test_inverted_and_out_of_range_boxes_are_sorted_and_clipped() -> None:
    image = Image.new("RGB", (101, 101), WHITE)
    out = draw_boxes(image, [BoxMark((0.8, 0.9, 0.2, -0.5), PRED_COLOR), BoxMark((-1, -1, 3, 3), GOLD_COLOR)], 1)
    assert out.getpixel((20, 50)) == PRED_COLOR  # sorted: x from 0.2 to 0.8
    assert out.getpixel((0, 50)) == GOLD_COLOR and out.getpixel((100, 50)) == GOLD_COLOR  # clipped to the edges


def test_grounding_panel_puts_boxes_on_their_images() -> None:
    images = [Image.new("RGB", (80, 60), WHITE), Image.new("RGB", (40, 40), WHITE)]
    panel = grounding_panel(images, gold=[((0.1, 0.1, 0.9, 0.9), 1)], pred=[((0.2, 0.2, 0.6, 0.7), 0)], height=100)
    assert panel.mode == "RGB" and panel.height >= 100
    left, right = panel.crop((0, 0, 6 + 133, panel.height)), panel.crop((6 + 133 + 6, 0, panel.width, panel.height))
    assert _has(left, PRED_COLOR) and not _has(left, GOLD_COLOR)  # image 1 scaled to 133 x 100
    assert _has(right, GOLD_COLOR) and not _has(right, PRED_COLOR)


def test_grounding_panel_skips_unknown_images_and_wraps_captions() -> None:
    images = [Image.new("RGB", (30, 30), WHITE)]
    short = grounding_panel(images, pred=[((0.1, 0.1, 0.5, 0.5), 3), ((0.1, 0.1, 0.5, 0.5), -1)])
    assert not _has(short, PRED_COLOR)
    long = grounding_panel(images, caption="word " * 1000)
    assert short.height < long.height < short.height + 16 * 8  # at most 6 lines and "..."
    assert grounding_panel([], caption="no images").width > 0


def test_drawing_and_rollout_helpers_stay_light() -> None:
    """The evaluator and other tools can draw and score rollouts without importing torch, transformers or trl."""
    import subprocess
    import sys

    code = (
        "import sys, trl_mig.visualize, trl_mig.trainers.rollout_metrics, trl_mig.trainers.rollout_panels, "
        "trl_mig.trainers.rollout_columns; print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
