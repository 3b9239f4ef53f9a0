"""Merge a LoRA adapter into its base model and write a standalone checkpoint: model + processor + chat template + card.

The output loads with `AutoModelForImageTextToText.from_pretrained` / `AutoProcessor.from_pretrained` in a process
that never imports PEFT (no `adapter_config.json` is written), which is what the sampler, the evaluator, vLLM and
`transformers serve` need. Written against PEFT 0.21 (`merge_and_unload`) and TRL 1.16 (`generate_model_card`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cards import MIG_PAPER, MIG_TAGS, append_mig_section


if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, ProcessorMixin

__all__ = ["merge_adapter", "write_model_card"]

_ADAPTER_CONFIG = "adapter_config.json"
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def _load_model(path: str | os.PathLike, dtype: Any) -> PreTrainedModel:
    from transformers import AutoModelForImageTextToText

    import trl_mig.models  # noqa: F401  (registers trl-mig's processor classes, named by tiny checkpoints)

    return AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype)


def _load_processor(candidates: list[str | None]) -> ProcessorMixin:
    from transformers import AutoProcessor

    import trl_mig.models  # noqa: F401

    for candidate in candidates:
        if candidate and (
            not os.path.isdir(candidate) or any(os.path.isfile(os.path.join(candidate, f)) for f in _PROCESSOR_FILES)
        ):
            return AutoProcessor.from_pretrained(candidate)
    raise ValueError(
        f"no processor found in {[c for c in candidates if c]}; pass `processor=` (the one used for training)"
    )


def _base_name(model: Any, base: str | None) -> str | None:
    name = base or getattr(getattr(model, "config", None), "_name_or_path", None) or None
    return str(name) if name else None


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    frame: Any,
    settings: Mapping[str, Any],
    base_model: str | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    tags: list[str] | None = None,
    trainer: str = "MIGSFTTrainer",
    trainer_name: str = "MIG-SFT",
) -> Path:
    """Write `README.md`: TRL's model card (base model, paper, citations, versions) + the trl-mig section.

    Args:
        output_dir (`str` or `PathLike`): the checkpoint directory.
        frame: the coordinate frame the model answers in.
        settings (`Mapping`): rows of the trl-mig settings table.
        base_model (`str`, *optional*): the base model's Hub id; a local path is left out of the card metadata.
        model_name (`str`, *optional*): defaults to the directory name.
        dataset_name (`str`, *optional*): the training set's Hub id.
        tags (`list[str]`, *optional*, defaults to `["sft"]`): the method's tags; `trl` and trl-mig's are always there.
        trainer (`str`, *optional*, defaults to `"MIGSFTTrainer"`): the class named in the trl-mig section.
        trainer_name (`str`, *optional*, defaults to `"MIG-SFT"`): the method name in TRL's card.

    Returns:
        `Path`: the card's path.
    """
    from trl.trainer.utils import generate_model_card

    output_dir = Path(output_dir)
    hub_base = base_model if base_model and not os.path.isdir(base_model) else None
    card = generate_model_card(
        base_model=hub_base,
        model_name=model_name or output_dir.name,
        hub_model_id=model_name or output_dir.name,
        dataset_name=dataset_name,
        tags=list(dict.fromkeys(["trl", *(["sft"] if tags is None else tags), *MIG_TAGS])),
        wandb_url=None,
        trackio_url=None,
        trainer_name=trainer_name,
        trainer_citation=MIG_PAPER["citation"],
        paper_title=MIG_PAPER["title"],
        paper_id=MIG_PAPER["id"],
    )
    readme = output_dir / "README.md"
    card.save(str(readme))
    append_mig_section(readme, trainer=trainer, frame=frame, settings=settings)
    return readme


def merge_adapter(
    adapter: str | os.PathLike | PreTrainedModel,
    output_dir: str | os.PathLike,
    *,
    base_model: str | os.PathLike | PreTrainedModel | None = None,
    processor: ProcessorMixin | str | os.PathLike | None = None,
    card_settings: Mapping[str, Any] | None = None,
    frame: Any = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    dtype: Any = "auto",
    trainer: str = "MIGSFTTrainer",
    trainer_name: str = "MIG-SFT",
    tags: list[str] | None = None,
) -> Path:
    """Merge a LoRA adapter into its base model and save a standalone checkpoint, loadable without PEFT.

    Args:
        adapter (`str`, `PathLike` or `PreTrainedModel`):
            An adapter directory (`adapter_config.json` + weights, as `PeftModel.save_pretrained` / `Trainer.save_model`
            write it), a `PeftModel` (merged *in place*: PEFT's `merge_and_unload` rewrites its base model; pass a copy
            to keep it), or a plain model / model directory (full fine-tuning: saved as is, with processor and card).
        output_dir (`str` or `PathLike`): where the merged checkpoint goes.
        base_model (`str`, `PathLike` or `PreTrainedModel`, *optional*):
            The base to merge into. Defaults to `base_model_name_or_path` of the adapter's config. Needed when the
            adapter was trained on a model that is not where its config says (moved, or built in memory).
        processor (`ProcessorMixin`, `str` or `PathLike`, *optional*):
            The processor to save beside the model (tokenizer, image processor, chat template). Defaults to the one in
            the adapter directory (the trainer saves it there), else the base model's.
        card_settings (`Mapping`, *optional*): rows of the card's trl-mig settings table (template, pixel limits, data,
            LoRA settings...). Base model and adapter are added when missing.
        frame (*optional*): the answer frame for the card; defaults to the model's (`frame_for_model`).
        model_name, dataset_name (`str`, *optional*): for the card.
        dtype (*optional*, defaults to `"auto"`): dtype the base is loaded (and the merge done) in; `"auto"` keeps the
            checkpoint's own.
        trainer, trainer_name, tags (*optional*): what trained the adapter, for the card (`"MIGSFTTrainer"`,
            `"MIG-SFT"`, `["sft"]`); a GRPO adapter passes its own.

    Returns:
        `Path`: `output_dir`, holding `config.json`, weights, `generation_config.json`, processor and tokenizer files,
        `chat_template.jinja` and `README.md`; no `adapter_config.json`.

    Example:
    ```python
    merge_adapter("runs/sft", "runs/sft/merged")  # base model and processor found from the adapter directory
    ```
    """
    from accelerate.utils import is_peft_model

    from ..geometry import frame_for_model

    output_dir = Path(output_dir)
    adapter_path = str(adapter) if isinstance(adapter, (str, os.PathLike)) else None
    base_path = str(base_model) if isinstance(base_model, (str, os.PathLike)) else None
    settings: dict[str, Any] = dict(card_settings or {})

    if adapter_path is not None and os.path.isfile(os.path.join(adapter_path, _ADAPTER_CONFIG)):
        from peft import PeftConfig, PeftModel

        if base_model is not None and not isinstance(base_model, (str, os.PathLike)):
            base = base_model
        else:
            base_path = base_path or PeftConfig.from_pretrained(adapter_path).base_model_name_or_path
            if not base_path:
                raise ValueError(
                    f"the adapter in {adapter_path!r} names no base model (`base_model_name_or_path` is empty); "
                    "pass `base_model=` (the model it was trained on)"
                )
            base = _load_model(base_path, dtype)
        model = PeftModel.from_pretrained(base, adapter_path).merge_and_unload(safe_merge=True)
        settings.setdefault("adapter", adapter_path)
        base_name = _base_name(base, base_path)
    elif adapter_path is not None:  # a full model directory: the base is unknown unless given
        model = _load_model(adapter_path, dtype)
        base_name = base_path
    elif is_peft_model(adapter):
        base_path = base_path or adapter.peft_config[adapter.active_adapter].base_model_name_or_path
        model = adapter.merge_and_unload(safe_merge=True)
        base_name = _base_name(model, base_path)
    else:
        model = adapter
        base_name = _base_name(model, base_path)

    settings = {"base model": base_name, **settings}
    if not isinstance(processor, (str, os.PathLike)) and processor is not None:
        proc = processor
    else:
        proc = _load_processor([str(processor) if processor is not None else None, adapter_path, base_path])

    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    proc.save_pretrained(output_dir)
    write_model_card(
        output_dir,
        frame=frame if frame is not None else frame_for_model(model),
        settings=settings,
        base_model=base_name,
        model_name=model_name,
        dataset_name=dataset_name,
        tags=tags,
        trainer=trainer,
        trainer_name=trainer_name,
    )
    return output_dir
