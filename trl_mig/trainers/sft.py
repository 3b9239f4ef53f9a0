"""`MIGSFTTrainer`: cold-start SFT of a multi-image grounding model, a thin subclass of TRL's `SFTTrainer`.

Written against TRL 1.16 (pinned `>=1.16,<1.17`). What it adds, and where:

- `__init__` (before `SFTTrainer.__init__`): renders schema rows into conversational `prompt` + `completion` with the
  prompt template (frame from the model), refuses or drops rows that `max_length` would truncate
  (`trl_mig.trainers.budget`), and builds the default LoRA config (language model only). After it: freezes the vision
  tower for full fine-tuning.
- Loss on the completion only is TRL's own prompt-completion path: `DataCollatorForVisionLanguageModeling.
  _collate_prompt_completion` processes the prompt (images expanded into `<|image_pad|>` runs) and the completion
  separately and sets every label outside the completion to -100 (`completion_only_loss=True`).
- `train`: calls `SFTTrainer.train`, then, on `merge_at_end`, `save_merged`. Overriding `train` rather than adding an
  `on_train_end` callback because the merge needs the trainer (`save_model`, processor, card settings, the
  accelerator's main process), which callbacks do not get; `Trainer.train`'s own flow is untouched.
- `create_model_card`: TRL's card (`_name`, `_paper`, `_tag_names` below), then `append_mig_section`.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path
from typing import Any

from accelerate.logging import get_logger
from accelerate.utils import is_peft_model
from datasets import Dataset, IterableDataset
from transformers import AutoConfig, AutoProcessor
from trl import SFTTrainer
from trl.trainer.utils import get_config_model_id

import trl_mig.models  # noqa: F401  (registers trl-mig's processor classes: AutoProcessor loads tiny checkpoints)

from ..geometry import Frame, frame_for_model
from ..templates import RenderInfo, pixel_limits_from_processor, render_dataset, render_info, resolve_frame
from .budget import check_token_budget
from .cards import MIG_PAPER, MIG_TAGS, append_mig_section
from .merge import merge_adapter
from .sft_config import MIGSFTConfig


__all__ = ["VISION_TOWER_PATTERN", "MIGSFTTrainer", "freeze_vision_tower"]

logger = get_logger(__name__)

#: parameters of the vision tower (patch embedding, blocks and merger) across VLM families: Qwen-VL `visual`,
#: LLaVA-style `vision_tower`, Idefics/SmolVLM-style `vision_model`
VISION_TOWER_PATTERN = re.compile(r"(^|\.)(visual|vision_tower|vision_model)\.")


def freeze_vision_tower(model: Any) -> int:
    """Set `requires_grad=False` on every vision-tower parameter (`VISION_TOWER_PATTERN`); return how many.

    `Trainer.create_optimizer` only optimises parameters that require grad, and it runs in `train()`, so freezing
    after `SFTTrainer.__init__` is enough.
    """
    frozen = 0
    for name, param in model.named_parameters():
        if VISION_TOWER_PATTERN.search(name):
            param.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError(
            f"freeze_vision_tower=True but no parameter of {type(model).__name__} lies under "
            "`visual`, `vision_tower` or `vision_model`; freeze it yourself and set freeze_vision_tower=False"
        )
    return frozen


def _as_config(args: Any, model: Any) -> MIGSFTConfig:
    """`args` as a `MIGSFTConfig` (a plain `SFTConfig` / `TrainingArguments` is converted, as `SFTTrainer` does)."""
    import dataclasses

    if isinstance(args, MIGSFTConfig):
        return args
    if args is None:
        name = model if isinstance(model, str) else get_config_model_id(model.config)
        return MIGSFTConfig(f"{Path(str(name)).name or 'model'}-MIG-SFT")
    # field values as set, not `to_dict()`: it masks every `*_token` field (`pad_token`, `eos_token`, `hub_token`)
    names = {f.name for f in dataclasses.fields(MIGSFTConfig) if f.init}
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and f.name in names}
    return MIGSFTConfig(**values)


def _loadable(name: str | None) -> bool:
    """Whether `from_pretrained(name)` can find the model (a local directory, or a Hub id reachable or cached)."""
    if not name:
        return False
    if os.path.isdir(name):
        return True
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return False
    return True


def _is_rendered(dataset: Any) -> bool:
    columns = dataset.column_names or list(next(iter(dataset)).keys())
    return "prompt" in columns and "completion" in columns


def _drop_stale_adapter(output_dir: str | os.PathLike) -> None:
    """Remove an adapter an earlier LoRA run left in `output_dir` before a full fine-tune's merge reads that folder:
    `merge_adapter` would otherwise find `adapter_config.json` and merge the old adapter instead of the new model."""
    stale = [
        Path(output_dir) / name for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
    ]
    stale = [path for path in stale if path.is_file()]
    if stale:
        logging.getLogger(__name__).warning(
            "removing a stale LoRA adapter from %s (full fine-tuning wrote a whole model there)", output_dir
        )
        for path in stale:
            path.unlink()


class MIGSFTTrainer(SFTTrainer):
    """[`~trl.SFTTrainer`] for multi-image grounding cold start: schema rows in, LoRA on the language model, loss on
    the completion only, a token budget check, and a standalone merged checkpoint at the end.

    Args:
        model (`str`, `PreTrainedModel` or `PeftModel`): as for `SFTTrainer` (a path or Hub id is loaded with
            `args.model_init_kwargs`). A `PeftModel` continues training its adapter.
        args ([`MIGSFTConfig`], *optional*): a plain `SFTConfig` is converted (trl-mig defaults for the rest).
        train_dataset (`Dataset` or `IterableDataset`):
            Schema rows (`trl_mig.schema`, with `reasoning`), rendered here with `args.template` in `args.frame`
            (default: the model's frame), or rows already rendered by `trl_mig.templates.render_dataset` (any
            conversational `prompt`/`completion` rows with `images` work).
        eval_dataset (*optional*): the same, or a dict of them.
        processing_class (`ProcessorMixin`, *optional*): defaults to `AutoProcessor.from_pretrained(model)`. Its pixel
            limits set the image token counts and, for `qwen2_5_vl`, the coordinates the prompts and answers use.
        peft_config (`PeftConfig`, *optional*): overrides the LoRA config built from `args` (`use_lora=True` only).
        data_collator (*optional*): defaults to TRL's `DataCollatorForVisionLanguageModeling` (completion-only labels).
        **kwargs: the other `SFTTrainer` arguments (`callbacks`, `optimizers`, `compute_metrics`, ...).

    Example:
    ```python
    from trl_mig import MIGSFTConfig, MIGSFTTrainer

    trainer = MIGSFTTrainer("Qwen/Qwen2.5-VL-3B-Instruct", args=MIGSFTConfig("runs/sft"), train_dataset=cot_rows)
    trainer.train()  # adapter in runs/sft, standalone merged model in runs/sft/merged
    ```
    """

    _tag_names = ["trl", "sft", *MIG_TAGS]
    _name = "MIG-SFT"
    _paper = MIG_PAPER

    def __init__(
        self,
        model: Any,
        args: MIGSFTConfig | Any | None = None,
        data_collator: Any = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        peft_config: Any = None,
        **kwargs: Any,
    ) -> None:
        args = _as_config(args, model)
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        if isinstance(model, str):
            init_kwargs = args.model_init_kwargs or {}
            revision, remote = init_kwargs.get("revision"), args.trust_remote_code
            model_config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=remote)
            model_id = model
        else:
            model_config, revision, model_id = model.config, None, get_config_model_id(model.config)
        if processing_class is None:  # what SFTTrainer would load; loaded here to render and count with it
            processing_class = AutoProcessor.from_pretrained(
                model_id, revision=revision, trust_remote_code=args.trust_remote_code
            )

        self._mig_frame = self._resolve_frame(args, model_config, train_dataset)
        self._mig_dropped: dict[str, int] = {}
        train_dataset = self._prepare_rows(train_dataset, processing_class, args, "train")
        self._mig_render_info: RenderInfo | None = render_info(train_dataset)
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._prepare_rows(d, processing_class, args, k) for k, d in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._prepare_rows(eval_dataset, processing_class, args, "eval")

        already_peft = not isinstance(model, str) and is_peft_model(model)
        if not args.use_lora and (peft_config is not None or already_peft):
            raise ValueError(
                "use_lora=False (full fine-tuning) but a `peft_config` or a PeftModel was given; set use_lora=True "
                "to train an adapter, or pass a plain model without `peft_config`"
            )
        if args.use_lora and peft_config is None and not already_peft:
            peft_config = self._default_lora_config(args)
        base = model_id if not already_peft else model.peft_config[model.active_adapter].base_model_name_or_path
        self._mig_base_model: str | None = base or None  # a model built in memory has no name

        super().__init__(
            model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            **kwargs,
        )
        if not args.use_lora and args.freeze_vision_tower:
            frozen = freeze_vision_tower(self.model)
            logger.info(f"full fine-tuning: froze {frozen} vision tower parameter tensors")

    # ------------------------------------------------------------------ data
    @staticmethod
    def _resolve_frame(args: MIGSFTConfig, model_config: Any, dataset: Any) -> Frame:
        """The answer frame: `args.frame`, else the rendered dataset's, else the model's; contradictions raise."""
        rendered = None
        if _is_rendered(dataset):
            info = render_info(dataset)
            if info is not None:
                rendered = info.frame
            elif "frame" in (dataset.column_names or []):
                rendered = next(iter(dataset))["frame"]
        if args.frame is not None and rendered is not None and Frame.parse(rendered) != Frame.parse(args.frame):
            raise ValueError(
                f"the dataset was rendered in frame {rendered!r} but MIGSFTConfig.frame={args.frame!r}; re-render the "
                "rows in that frame, or leave `frame` unset"
            )
        if args.frame is not None:
            return resolve_frame(args.frame)
        if rendered is not None:
            return resolve_frame(rendered)
        return frame_for_model(model_config)

    def _prepare_rows(self, dataset: Any, processor: Any, args: MIGSFTConfig, split: str) -> Any:
        """Render schema rows (or check rendered ones against the processor), then apply the token budget."""
        if not _is_rendered(dataset):
            dataset = render_dataset(
                dataset,
                args.template,
                self._mig_frame,
                processor=processor,
                with_completion=True,
                num_proc=args.dataset_num_proc,
            )
        else:
            info = render_info(dataset)
            if info is not None and Frame.parse(info.frame) is not self._mig_frame:
                raise ValueError(
                    f"the {split} rows were rendered in frame {info.frame!r} but training uses "
                    f"{self._mig_frame.value!r}; render every split in the same frame"
                )
            limits = pixel_limits_from_processor(processor)
            rendered = (
                {"min_pixels": info.min_pixels, "max_pixels": info.max_pixels, "factor": info.factor} if info else {}
            )
            differs = {k: (v, limits[k]) for k, v in rendered.items() if k in limits and limits[k] != v}
            if info is not None and Frame.parse(info.frame) is Frame.QWEN2_5_VL and differs:
                raise ValueError(
                    f"the {split} rows were rendered for pixel limits {rendered} but the processor uses {limits}: "
                    "qwen2_5_vl prompts state, and answers use, the resized image sizes, which would be wrong. "
                    "Re-render the rows with `render_dataset(..., processor=processor)`, or pass schema rows"
                )
        before = len(dataset) if isinstance(dataset, Dataset) else None  # a streamed set is checked as it is read
        dataset = check_token_budget(dataset, processor, args.max_length, drop=args.drop_over_budget, split=split)
        if before is not None and len(dataset) < before:
            self._mig_dropped[split] = before - len(dataset)
            if len(dataset) == 0:
                raise ValueError(
                    f"every {split} row is longer than max_length={args.max_length}; raise max_length or lower the "
                    "processor's max_pixels"
                )
        return dataset

    @staticmethod
    def _default_lora_config(args: MIGSFTConfig) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=args.resolved_lora_target_modules,
            task_type="CAUSAL_LM",
        )

    # ------------------------------------------------------------------ cards
    def _mig_card_settings(self, dataset_name: str | None = None) -> dict[str, Any]:
        """Rows of the card's trl-mig table: what makes the checkpoint usable and the run reproducible."""
        info, args = self._mig_render_info, self.args
        limits = pixel_limits_from_processor(self.processing_class)
        model = self.accelerator.unwrap_model(self.model)
        if is_peft_model(model):
            lora = model.peft_config[model.active_adapter]
            targets = lora.target_modules if isinstance(lora.target_modules, str) else sorted(lora.target_modules)
            tuning = f"LoRA r={lora.r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout}, targets `{targets}`"
        else:
            tuning = "full fine-tuning" + (", vision tower frozen" if args.freeze_vision_tower else "")
        data = dataset_name or getattr(getattr(self.train_dataset, "info", None), "dataset_name", None) or "in memory"
        if isinstance(self.train_dataset, Dataset):
            data += f", {len(self.train_dataset)} rows"
        dropped = ", ".join(f"{split}: {n}" for split, n in self._mig_dropped.items())
        settings = {
            "base model": self._mig_base_model,
            "prompt template": f"{info.template} (v{info.template_version})" if info else "rendered outside trl-mig",
            "frame": self._mig_frame.value,
            "pixel limits": ", ".join(f"{k}={v}" for k, v in limits.items()),
            "training data": data,
            "max_length": args.max_length,
            "rows dropped over budget": dropped or None,
            "fine-tuning": tuning,
            "loss": "completion only",
        }
        # values sit in a Markdown table: a `|` (as in the default LoRA regex) would split the cell
        return {k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in settings.items()}

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ) -> None:
        """TRL's card (base model, paper, citation, versions), then the trl-mig section (template, frame, limits)."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        append_mig_section(
            os.path.join(self.args.output_dir, "README.md"),
            trainer=type(self).__name__,
            frame=self._mig_frame,
            settings=self._mig_card_settings(dataset_name),
        )

    # ------------------------------------------------------------------ merge
    def train(self, *args: Any, **kwargs: Any) -> Any:
        """`SFTTrainer.train`, then `save_merged()` when `args.merge_at_end` (the default)."""
        output = super().train(*args, **kwargs)
        if self.args.merge_at_end:
            self.save_merged()
        return output

    def save_merged(self, output_dir: str | os.PathLike | None = None) -> Path:
        """Save the adapter (or full model) + processor + card to `args.output_dir`, then write a standalone merged
        checkpoint (model, processor, chat template, card) to `output_dir`.

        The merge reloads the base from the path the adapter records and merges on it (PEFT's `merge_and_unload`), so
        the trainer's model is left as it is (a later `evaluate` or `save_model` still sees the adapter), and a
        quantized training base merges into full-precision weights. When the base cannot be loaded from there (a model
        built in memory), a CPU copy of the trained model is merged instead (not under ZeRO-3 / FSDP, whose
        parameters are sharded: train from a saved checkpoint there).

        Args:
            output_dir (`str` or `PathLike`, *optional*): defaults to `args.merged_output_dir`, else
                `<args.output_dir>/merged`.

        Returns:
            `Path`: the merged checkpoint's directory.
        """
        output_dir = Path(output_dir or self.args.merged_output_dir or os.path.join(self.args.output_dir, "merged"))
        if self.is_world_process_zero():  # first, as TRL's `_save_checkpoint` does: PEFT then adds its metadata
            self.create_model_card(model_name=Path(self.args.output_dir).name)
        self.save_model()  # every process: DeepSpeed/FSDP gather the weights; only the main process writes
        if self.is_world_process_zero():
            model = self.accelerator.unwrap_model(self.model)
            merge_kwargs = {
                "processor": self.processing_class,
                "card_settings": self._mig_card_settings(),
                "frame": self._mig_frame,
                "model_name": Path(self.args.output_dir).name,
            }
            base = self._mig_base_model
            if not is_peft_model(model):  # full fine-tuning: output_dir holds the whole model
                _drop_stale_adapter(self.args.output_dir)
                merge_adapter(self.args.output_dir, output_dir, base_model=base or None, **merge_kwargs)
            elif _loadable(base):
                merge_adapter(self.args.output_dir, output_dir, **merge_kwargs)
            else:
                logger.warning(f"the base model {base!r} cannot be reloaded; merging a CPU copy of the trained model")
                merge_adapter(copy.deepcopy(model).to("cpu"), output_dir, **merge_kwargs)
        self.accelerator.wait_for_everyone()
        return output_dir
