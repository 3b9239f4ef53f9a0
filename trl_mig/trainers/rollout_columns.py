"""The columns `MIGGRPOTrainer` adds for its rewards, and the checks on the columns it is given. Pure (no torch).

- `resized_sizes`: per row, the `(width, height)` the processor resized each image to, read from the processor's
  own output (`image_grid_thw`, `(t, h, w)` in patches, times the patch size), so rewards convert `qwen2_5_vl`
  answers with the sizes the model saw, not a re-computation that could drift from the processor's settings.
- `frame`: the frame the model answers in; a dataset rendered for another frame is an error (see `frame_error`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..geometry import Frame


__all__ = [
    "SCHEMA_COLUMNS",
    "check_frame_column",
    "frame_error",
    "needs_render",
    "resized_sizes_from_grid",
    "row_images",
]

#: columns that make a dataset a schema set `render_dataset` can render
SCHEMA_COLUMNS = ("id", "question", "image_sizes")


def row_images(row: dict[str, Any]) -> list[Any]:
    """The images of a dataset row as TRL reads them (`images`, else a single `image`)."""
    if "images" in row:
        return list(row["images"] or [])
    return [row["image"]] if row.get("image") is not None else []


def needs_render(dataset: Any) -> bool:
    """A schema set without a `prompt` column (an iterable set of unknown columns is left alone)."""
    columns = getattr(dataset, "column_names", None)
    return columns is not None and "prompt" not in columns and all(c in columns for c in SCHEMA_COLUMNS)


def frame_error(found: Sequence[str], frame: Frame, split: str) -> str:
    """The message for rows rendered for frame(s) `found` given to a model answering in `frame`."""
    return (
        f"{split}: rows were rendered for frame {', '.join(found)} but the model answers in {frame.value!r}; "
        f"re-render them (trl_mig.templates.render_dataset(..., frame={frame.value!r})), or set "
        f"MIGGRPOConfig(frame={found[0]!r}) if the model was trained to answer in that frame"
    )


def check_frame_column(dataset: Any, frame: Frame, split: str) -> None:
    """Raise `ValueError` when a map-style set's `frame` column names another frame (iterable sets: per batch)."""
    if not hasattr(dataset, "unique") or "frame" not in (getattr(dataset, "column_names", None) or ()):
        return
    found = {Frame.parse(v) for v in dataset.unique("frame") if v is not None}
    if found - {frame}:
        raise ValueError(frame_error(sorted(f.value for f in found - {frame}), frame, split))


def resized_sizes_from_grid(
    images: Sequence[Any] | None, grid: Any, patch_size: int | None
) -> list[list[tuple[int, int]]] | None:
    """Per prompt, `(width, height)` of each image as the processor resized it, from its `image_grid_thw`.

    Args:
        images: per prompt, its images (or `None`), in the order the processor received them.
        grid: the processor's `image_grid_thw`, one `(t, h, w)` row per image, all prompts concatenated.
        patch_size: the image processor's `patch_size` (14 for Qwen-VL).

    Returns:
        One list per prompt, or `None` when the grid does not line up with the images.

    Example:
    ```python
    >>> resized_sizes_from_grid([["a", "b"], None, ["c"]], [[1, 6, 6], [1, 6, 8], [1, 4, 4]], 14)
    [[(84, 84), (112, 84)], [], [(56, 56)]]
    >>> resized_sizes_from_grid([["a"]], [[1, 6, 6], [1, 6, 8]], 14) is None
    True

    ```
    """
    if images is None or grid is None or not patch_size:
        return None
    rows = grid.tolist() if hasattr(grid, "tolist") else [list(r) for r in grid]
    counts = [len(x) if x else 0 for x in images]
    if sum(counts) != len(rows):
        return None
    out, start = [], 0
    for count in counts:
        out.append([(int(w) * patch_size, int(h) * patch_size) for _, h, w in rows[start : start + count]])
        start += count
    return out
