"""Token budget of prompt/completion rows: refuse (or drop) rows that `max_length` would truncate.

TRL 1.16's `DataCollatorForVisionLanguageModeling` truncates every prompt + completion to `max_length` *after* the
processor has expanded each `<|image_pad|>` into one token per merged patch: a row over budget silently loses the end
of its answer, or, when the prompt alone is too long, image tokens (then the model fails with "Image features and
image tokens do not match" mid-run). This module counts each row's length the way the collator will build it, without
touching pixels:

- the prompt and completion texts come from `trl.data_utils.apply_chat_template`, the function the collator calls;
- text tokens come from the processor's tokenizer (`add_special_tokens=False`, as in the collator);
- each image's placeholder count comes from the processor's `_get_num_multimodal_tokens` (the method vLLM uses for the
  same purpose; for Qwen-VL, `smart_resize` patches / `merge_size**2`) given the row's `image_sizes` (original
  `(width, height)`, schema column) or, without that column, the decoded images' sizes.

`tests/test_sft_trainer.py` checks the counts against the real collator's output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


__all__ = ["RowLength", "check_token_budget", "token_lengths"]

logger = logging.getLogger(__name__)

#: rows listed by name in the error message; the rest are counted
_MAX_LISTED = 10


@dataclass(frozen=True)
class RowLength:
    """How many tokens one row takes once collated.

    Args:
        id (`str`): the row's `id` (or `#<index>` when the dataset has no `id` column).
        prompt_tokens (`int`): prompt tokens, image placeholders expanded (`image_tokens` included).
        image_tokens (`tuple[int, ...]`): placeholder tokens of each image.
        completion_tokens (`int`): completion tokens (end-of-turn tokens included).
    """

    id: str
    prompt_tokens: int
    image_tokens: tuple[int, ...]
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def describe(self) -> str:
        images = sum(self.image_tokens)
        return (
            f"row {self.id!r}: {self.total} tokens (prompt {self.prompt_tokens}, of which {images} image tokens for "
            f"{len(self.image_tokens)} image(s); completion {self.completion_tokens})"
        )


def _image_token_counts(processor: Any, sizes_hw: Sequence[Sequence[int]]) -> list[int]:
    """Placeholder tokens per image of the given `(height, width)` sizes, from the processor's own arithmetic."""
    if not sizes_hw:
        return []
    counter = getattr(processor, "_get_num_multimodal_tokens", None)
    if counter is not None:
        data = counter(image_sizes=[list(s) for s in sizes_hw])
        counts = data["num_image_tokens"] if isinstance(data, dict) else getattr(data, "num_image_tokens", None)
        if counts is not None:
            return [int(c) for c in counts]
    image_processor = getattr(processor, "image_processor", None)
    patches = getattr(image_processor, "get_number_of_image_patches", None)
    merge = getattr(image_processor, "merge_size", None)
    if patches is not None and isinstance(merge, int):
        return [int(patches(h, w, {})) // merge**2 for h, w in sizes_hw]
    raise ValueError(
        f"cannot count the image tokens of {type(processor).__name__} without processing pixels (it has no "
        "`_get_num_multimodal_tokens`); set max_length=None to skip the token budget check"
    )


def _image_token_id(processor: Any) -> int:
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    token = getattr(processor, "image_token", None)
    if token is None:
        raise ValueError(f"{type(processor).__name__} names no `image_token`; cannot count image tokens")
    return processor.tokenizer.convert_tokens_to_ids(token)


def _sizes_hw(row: dict[str, Any], rid: str) -> list[tuple[int, int]]:
    if row.get("image_sizes") is not None:
        return [(int(h), int(w)) for w, h in row["image_sizes"]]
    images = row.get("images")
    if images is None:
        images = [] if row.get("image") is None else [row["image"]]
    sizes = []
    for i, image in enumerate(images):
        size = getattr(image, "size", None)
        if size is None:
            raise ValueError(f"row {rid!r}: image {i} has no size (not decoded); add an `image_sizes` column")
        sizes.append((int(size[1]), int(size[0])))
    return sizes


def _row_texts(row: dict[str, Any], n_images: int, processor: Any) -> tuple[str, str]:
    """The prompt and completion strings the collator tokenizes (conversational rows go through the chat template)."""
    from trl.data_utils import apply_chat_template, is_conversational, prepare_multimodal_messages

    example = {"prompt": row["prompt"], "completion": row["completion"]}
    if is_conversational(example):
        # placeholders stand in for the images: the template writes one image block per image part, never pixels
        example["prompt"] = prepare_multimodal_messages(example["prompt"], images=[None] * n_images)
        example["completion"] = prepare_multimodal_messages(example["completion"])
        example = apply_chat_template(example, processor)
    return example["prompt"], example["completion"]


def _lengths_of_rows(rows: list[dict[str, Any]], ids: list[str], processor: Any) -> list[RowLength]:
    tokenizer = getattr(processor, "tokenizer", processor)
    image_id = _image_token_id(processor)
    sizes = [_sizes_hw(row, rid) for row, rid in zip(rows, ids)]
    texts = []
    for row, rid, row_sizes in zip(rows, ids, sizes):
        try:
            texts.append(_row_texts(row, len(row_sizes), processor))
        except ValueError as exc:
            raise ValueError(f"row {rid!r}: {exc}") from exc
    prompt_ids = tokenizer([t[0] for t in texts], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    counts = _image_token_counts(processor, [s for row_sizes in sizes for s in row_sizes])
    out, start = [], 0
    for rid, row_sizes, p_ids, c_ids in zip(ids, sizes, prompt_ids, completion_ids):
        image_tokens = tuple(counts[start : start + len(row_sizes)])
        start += len(row_sizes)
        placeholders = sum(1 for t in p_ids if t == image_id)
        if placeholders != len(row_sizes):
            raise ValueError(
                f"row {rid!r}: the rendered prompt has {placeholders} image placeholder(s) for {len(row_sizes)} "
                "image(s); each image needs exactly one image part in the prompt"
            )
        prompt = len(p_ids) - placeholders + sum(image_tokens)
        out.append(RowLength(rid, prompt, image_tokens, len(c_ids)))
    return out


def _columns(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None:  # IterableDataset with unknown features
        names = list(next(iter(dataset)).keys())
    return list(names)


def token_lengths(dataset: Any, processor: Any, *, batch_size: int = 256) -> list[RowLength]:
    """Count the collated length of every row of a prompt/completion `datasets.Dataset`, without processing pixels.

    Args:
        dataset (`datasets.Dataset`): rows with `prompt`, `completion` and `image_sizes` (or `images`).
        processor (`ProcessorMixin`): the processor training will use (its pixel limits set the image tokens).
        batch_size (`int`, *optional*, defaults to `256`): rows tokenized per call.

    Returns:
        `list[RowLength]`, in dataset order.
    """
    columns = _columns(dataset)
    missing = [c for c in ("prompt", "completion") if c not in columns]
    if missing:
        raise ValueError(f"token_lengths needs rendered rows; missing columns {missing} (see render_dataset)")
    size_column = "image_sizes" if "image_sizes" in columns else "images" if "images" in columns else "image"
    keep = [c for c in ("id", "prompt", "completion", size_column) if c in columns]
    table = dataset.select_columns(keep)
    out: list[RowLength] = []
    for start in range(0, len(table), batch_size):
        batch = table[start : start + batch_size]
        n = len(batch["prompt"])
        rows = [{k: batch[k][i] for k in batch} for i in range(n)]
        ids = [str(r["id"]) if r.get("id") is not None else f"#{start + i}" for i, r in enumerate(rows)]
        out.extend(_lengths_of_rows(rows, ids, processor))
    return out


def _over_budget_error(
    over: list[RowLength], n_rows: int | None, max_length: int, split: str, processor: Any
) -> ValueError:
    from ..templates import pixel_limits_from_processor

    listed = "\n".join(f"  - {r.describe()}" for r in over[:_MAX_LISTED])
    if len(over) > _MAX_LISTED:
        listed += f"\n  - ... and {len(over) - _MAX_LISTED} more"
    longest = max(r.total for r in over)
    max_pixels = pixel_limits_from_processor(processor).get("max_pixels")
    pixels = f" (now {max_pixels})" if max_pixels is not None else ""
    counted = f"{len(over)} of {n_rows} {split} rows are" if n_rows is not None else f"a streamed {split} row is"
    return ValueError(
        f"{counted} longer than max_length={max_length} tokens; training would "
        f"truncate them, cutting the answer or image tokens:\n{listed}\n"
        f"Fix one of: raise `max_length` to at least {longest}; lower the processor's `max_pixels`{pixels} so "
        "images take fewer tokens (re-render the rows with that processor); drop these rows from the dataset, or "
        "set `drop_over_budget=True` to drop them automatically."
    )


class _BudgetFilter:
    """`IterableDataset.filter` function: checks each streamed row (no up-front pass is possible)."""

    def __init__(self, processor: Any, max_length: int, drop: bool, split: str) -> None:
        self.processor, self.max_length, self.drop, self.split = processor, max_length, drop, split
        self.seen = 0

    def __call__(self, row: dict[str, Any]) -> bool:
        self.seen += 1
        rid = str(row["id"]) if row.get("id") is not None else f"#{self.seen - 1}"
        (length,) = _lengths_of_rows([row], [rid], self.processor)
        if length.total <= self.max_length:
            return True
        if self.drop:
            logger.warning("dropping %s row over budget: %s", self.split, length.describe())
            return False
        raise _over_budget_error([length], None, self.max_length, self.split, self.processor)


def check_token_budget(
    dataset: Any, processor: Any, max_length: int | None, *, drop: bool = False, split: str = "train"
) -> Any:
    """Refuse, or drop, the rows longer than `max_length` once collated.

    Args:
        dataset (`datasets.Dataset` or `datasets.IterableDataset`): rendered prompt/completion rows.
        processor (`ProcessorMixin`): the processor training will use.
        max_length (`int` or `None`): the collator's truncation length; `None` (no truncation) skips the check.
        drop (`bool`, *optional*, defaults to `False`): drop the rows over budget (logging how many) instead of
            raising.
        split (`str`, *optional*, defaults to `"train"`): the split's name, for messages.

    Returns:
        The dataset, without the rows over budget when `drop=True`. An `IterableDataset` is checked lazily, row by row,
        as it streams.

    Raises:
        `ValueError`: rows over budget and `drop=False`; the message names each row, its length and the fixes.
    """
    if max_length is None:
        return dataset
    from datasets import Dataset

    if not isinstance(dataset, Dataset):  # IterableDataset: no length, no random access
        return dataset.filter(_BudgetFilter(processor, max_length, drop, split))
    lengths = token_lengths(dataset, processor)
    over = [r for r in lengths if r.total > max_length]
    if not over:
        return dataset
    if not drop:
        raise _over_budget_error(over, len(lengths), max_length, split, processor)
    keep = [i for i, r in enumerate(lengths) if r.total <= max_length]
    logger.warning(
        "dropped %d of %d %s rows longer than max_length=%d (longest %d tokens): %s",
        len(over), len(lengths), split, max_length, max(r.total for r in over),
        ", ".join(r.id for r in over[:_MAX_LISTED]) + (" ..." if len(over) > _MAX_LISTED else ""),
    )  # fmt: skip
    return dataset.select(keep)
