"""Render a whole schema dataset for one model: add `prompt` (+ `completion`) and `frame` columns, keep the rest.

The rendered set works with plain TRL (`SFTTrainer` reads `prompt`/`completion` + `images`; `GRPOTrainer` reads
`prompt` + `images` and passes every other column, `solution`, `target_image`, `image_sizes`, `frame`, to the rewards).
What was rendered (template, frame, pixel limits) is a `RenderInfo`, stored in `dataset.info.description` and read
back with `render_info(dataset)`, for the cards and the results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..geometry import Frame, resized_size
from .registry import PromptTemplate, check_syntax, get_template
from .render import _limits, render_completion, render_prompt, resolve_frame


__all__ = ["RENDER_INFO_PREFIX", "RenderInfo", "pixel_limits_from_processor", "render_dataset", "render_info"]

#: the line of `dataset.info.description` that holds the `RenderInfo` as JSON
RENDER_INFO_PREFIX = "trl-mig render: "
#: the columns rendering reads (others are kept untouched; `images` is never decoded)
_READ_COLUMNS = ("id", "question", "solution", "target_image", "image_sizes", "resized_sizes", "reasoning")


@dataclass(frozen=True)
class RenderInfo:
    """How a dataset was rendered: what cards and results record.

    Args:
        template (`str`), template_version (`int`): the prompt template.
        frame (`str`): the answer frame.
        min_pixels, max_pixels, factor (`int`): the `smart_resize` limits the prompt sizes and answers assume.
        answer_syntax (`str`): `"json"` or `"box_tokens"`.
        with_completion (`bool`): whether a `completion` column was rendered.
        multi_target (`bool`): whether the instructions say how to answer several targets.
        system_prompt (`str` or `None`): the system message, if any.
    """

    template: str
    template_version: int
    frame: str
    min_pixels: int
    max_pixels: int
    factor: int
    answer_syntax: str = "json"
    with_completion: bool = False
    multi_target: bool = False
    system_prompt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def render_info(dataset: Any) -> RenderInfo | None:
    """The `RenderInfo` `render_dataset` stored in a dataset's `info.description`, or `None` (not rendered)."""
    description = getattr(getattr(dataset, "info", None), "description", None) or ""
    for line in reversed(description.splitlines()):
        if line.startswith(RENDER_INFO_PREFIX):
            return RenderInfo.from_dict(json.loads(line[len(RENDER_INFO_PREFIX) :]))
    return None


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def pixel_limits_from_processor(processor: Any) -> dict[str, int]:
    """`min_pixels`, `max_pixels` and `factor` of a Qwen-VL processor or image processor (duck-typed: no import).

    Reads `size["shortest_edge"]` / `size["longest_edge"]` (transformers 5), else `min_pixels` / `max_pixels`, and
    `factor = patch_size * merge_size`. Keys it cannot find are left out.
    """
    image_processor = getattr(processor, "image_processor", processor)
    size = getattr(image_processor, "size", None)
    out = {
        "min_pixels": _get(size, "shortest_edge") or getattr(image_processor, "min_pixels", None),
        "max_pixels": _get(size, "longest_edge") or getattr(image_processor, "max_pixels", None),
    }
    patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
    if isinstance(patch, int) and isinstance(merge, int):
        out["factor"] = patch * merge
    return {k: int(v) for k, v in out.items() if isinstance(v, int)}


class _RowRenderer:
    """The `Dataset.map` function (a picklable class, so `num_proc` and the datasets cache work)."""

    def __init__(self, info: RenderInfo, template: PromptTemplate, columns: Sequence[str]) -> None:
        self.info, self.template, self.columns = info, template, tuple(columns)
        self.add_resized_sizes = Frame.parse(info.frame).needs_resized_size and "resized_sizes" not in self.columns

    def __call__(self, *values: Any) -> dict[str, Any]:
        row = dict(zip(self.columns, values))
        info = self.info
        kwargs = {"min_pixels": info.min_pixels, "max_pixels": info.max_pixels, "factor": info.factor}
        kwargs["answer_syntax"] = info.answer_syntax
        out: dict[str, Any] = {"frame": info.frame}
        if self.add_resized_sizes:
            # the sizes the prompt stated, as a column: rewards then score exactly under plain TRL too, whatever
            # pixel limits the processor uses (MIGGRPOTrainer replaces them with the processor's real output)
            out["resized_sizes"] = [
                list(resized_size(size, info.factor, info.min_pixels, info.max_pixels)) for size in row["image_sizes"]
            ]
        out["prompt"] = render_prompt(
            row, self.template, info.frame, multi_target=info.multi_target, system_prompt=info.system_prompt, **kwargs
        )
        if info.with_completion:
            out["completion"] = render_completion(row, self.template, info.frame, **kwargs)
        return out


def _message_feature():
    from datasets import List, Value

    return List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})


def _has_multi_target(dataset: Any) -> bool:
    if "solution" not in dataset.column_names:
        return False
    return any(boxes is not None and len(boxes) > 1 for boxes in dataset["solution"])


def render_dataset(
    dataset: Any,
    template: str | PromptTemplate = "mig-think-v1",
    frame: Any = Frame.QWEN2_5_VL,
    *,
    processor: Any = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    factor: int | None = None,
    with_completion: bool | None = None,
    answer_syntax: str = "json",
    multi_target: bool | None = None,
    system_prompt: str | None = None,
    num_proc: int | None = None,
) -> Any:
    """Add `prompt` (+ `completion`), `frame` (+ `resized_sizes`) columns to a schema dataset for one model.

    For `qwen2_5_vl`, `resized_sizes` holds each image's size after `smart_resize` with the given limits (what the
    prompt states), unless the set already has that column: `trl_mig.rewards` read it, so scoring is exact under
    plain TRL trainers whatever limits the processor uses.

    Every schema column is kept (rewards read `solution`, `target_image`, `image_sizes`, `frame`), images are never
    decoded, and the `RenderInfo` is stored in `info.description` (read it with `render_info`).

    Args:
        dataset (`datasets.Dataset` or `datasets.DatasetDict`): a schema set (`trl_mig.schema.features`).
        template (`str` or `PromptTemplate`, *optional*, defaults to `"mig-think-v1"`): the prompt template.
        frame (*optional*, defaults to `"qwen2_5_vl"`): the answer frame, or a model / config / `model_type`
            (`trl_mig.geometry.frame_for_model`).
        processor (*optional*): a Qwen-VL processor whose pixel limits are used (`pixel_limits_from_processor`).
        min_pixels, max_pixels, factor (`int`, *optional*): `smart_resize` limits; explicit values win over the
            processor's; else transformers 5.24's defaults (`3136`, `1003520`, `28`). They must match the processor
            used for training: `qwen2_5_vl` prompts state, and answers use, the resized sizes they give.
        with_completion (`bool`, *optional*): render the SFT `completion`; defaults to whether the set has a
            `reasoning` column (CoT/SFT sets do, RL and benchmark sets do not).
        answer_syntax (`str`, *optional*, defaults to `"json"`): `"json"` or `"box_tokens"`.
        multi_target (`bool`, *optional*): say how to answer several targets; defaults to whether any row (of any
            split) has several gold boxes. Decided per dataset so no prompt tells how many targets its row has.
        system_prompt (`str`, *optional*): a system message (none by default).
        num_proc (`int`, *optional*): processes for `Dataset.map`.

    Returns:
        The rendered `Dataset` (or `DatasetDict`). Rows that cannot be rendered raise `ValueError` naming their id.
    """
    template, frame = get_template(template), resolve_frame(frame)
    check_syntax(answer_syntax)
    limits = pixel_limits_from_processor(processor) if processor is not None else {}
    explicit = {"min_pixels": min_pixels, "max_pixels": max_pixels, "factor": factor}
    limits.update({k: v for k, v in explicit.items() if v is not None})
    min_pixels, max_pixels, factor = _limits(limits.get("min_pixels"), limits.get("max_pixels"), limits.get("factor"))
    from datasets import DatasetDict, IterableDatasetDict

    splits = dict(dataset) if isinstance(dataset, (DatasetDict, IterableDatasetDict)) else None
    if multi_target is None:
        multi_target = any(_has_multi_target(d) for d in (splits.values() if splits is not None else [dataset]))
    settings = {
        "template": template, "frame": frame, "min_pixels": min_pixels, "max_pixels": max_pixels, "factor": factor,
        "with_completion": with_completion, "answer_syntax": answer_syntax, "multi_target": multi_target,
        "system_prompt": system_prompt, "num_proc": num_proc,
    }  # fmt: skip
    if splits is not None:
        return type(dataset)({name: render_dataset(split, **settings) for name, split in splits.items()})

    columns = dataset.column_names
    missing = [c for c in ("id", "question", "image_sizes") if c not in columns]
    if missing:
        raise ValueError(f"render_dataset needs the schema columns {missing} (see trl_mig.schema.features)")
    if with_completion is None:
        with_completion = "reasoning" in columns
    info = RenderInfo(
        template.name, template.version, frame.value, min_pixels, max_pixels, factor, answer_syntax,
        bool(with_completion), bool(multi_target), system_prompt,
    )  # fmt: skip
    read = [c for c in _READ_COLUMNS if c in columns]
    features = dataset.features.copy() if dataset.features is not None else None
    if features is not None:
        from datasets import Value

        features["frame"] = Value("string")
        if frame.needs_resized_size and "resized_sizes" not in columns:
            from datasets import List

            features["resized_sizes"] = List(List(Value("int32")))
        features["prompt"] = _message_feature()
        if with_completion:
            features["completion"] = _message_feature()
    kwargs: dict[str, Any] = {"input_columns": read, "features": features}
    if hasattr(dataset, "_fingerprint"):  # `Dataset`; `IterableDataset.map` takes neither
        kwargs.update(num_proc=num_proc, desc=f"Rendering {template.name} ({frame.value})")
    rendered = dataset.map(_RowRenderer(info, template, read), **kwargs)
    description = "\n".join(
        line for line in (rendered.info.description or "").splitlines() if not line.startswith(RENDER_INFO_PREFIX)
    )
    rendered.info.description = (description + "\n" if description else "") + RENDER_INFO_PREFIX + info.to_json()
    return rendered
