"""`MIGGRPOTrainer`: TRL's `GRPOTrainer` for multi-image grounding, written against TRL 1.16 (`trl>=1.16,<1.17`).

What it adds to `trl.GRPOTrainer`, each in the narrowest place (STYLE.md's escalation order):

- **Defaults** (constructor): `format_reward` + `iou_reward` with equal weights when no reward is passed (DESIGN.md
  section 4); schema rows without a `prompt` are rendered with the config's template for the model's frame and the
  processor's pixel limits (`trl_mig.templates.render_dataset`) before TRL sees them.
- **What the rewards read** (`_tokenize_prompts` + `_calculate_rewards`): every row gets `resized_sizes`, the
  processor's own size for each image (`image_grid_thw` x patch size, kept from the tokenisation TRL does anyway), and
  `frame`, the frame the model answers in. Rewards are plain functions of columns; nothing else changes for them.
- **Per-step metrics** (`_calculate_rewards`, which sees the decoded completions and their columns once per
  generation): `grounding/*` keys and the failure taxonomy of `trl_mig.trainers.rollout_metrics`, through TRL's
  `log_metric` channel (averaged per logging step, across processes); TRL already logs each reward on its own as
  `rewards/<name>/mean` and `rewards/<name>/std`.
- **Drawings** (same place, only on drawing steps): gold and predicted boxes on a few completions' images, PNG files
  under `output_dir/completions/step-XXXXXX/` and images for the wandb / trackio runs TRL already logs to.
- **Card** (`create_model_card`): TRL's card with the paper, plus trl-mig's section (base model, rewards, data,
  template, frame, pixel limits).

**Frame.** `MIGGRPOConfig.frame` if set, else `frame_for_model(model)`. A dataset's `frame` column (written by
`render_dataset`) must name that frame: the prompts told the model how to write coordinates, so a different frame
would score every answer in the wrong units. A mismatch is an error at construction (map-style sets) or at the first
batch (iterable sets); re-render the rows or set `frame` to the one they were rendered with. The trainer then passes
its frame to the rewards for every row.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from accelerate.logging import get_logger
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.trainer.utils import get_config_model_id

import trl_mig.models  # noqa: F401  (tiny checkpoints name trl-mig's processor classes; real ones need nothing)

from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame, frame_for_model
from ..rewards import FormatReward, format_reward, iou_reward
from ..scoring import FrameSpec
from ..templates import PromptTemplate, get_template, pixel_limits_from_processor, render_dataset, render_info
from .cards import MIG_PAPER, MIG_TAGS, append_mig_section
from .grpo_config import MIGGRPOConfig
from .rollout_columns import check_frame_column, frame_error, needs_render, resized_sizes_from_grid, row_images
from .rollout_metrics import CompletionScore, rollout_metrics, score_completions
from .rollout_panels import completion_panel, panel_file_name


logger = get_logger(__name__)

__all__ = ["MIGGRPOTrainer"]

_DEFAULTS = {f: MIGGRPOConfig.__dataclass_fields__[f].default for f in
             ("template", "frame", "grounding_metrics", "log_boxes_steps", "num_boxed_completions")}  # fmt: skip


def _option(args: Any, name: str) -> Any:
    """A trl-mig setting from `args`; a plain `GRPOConfig` gets `MIGGRPOConfig`'s defaults."""
    return getattr(args, name, _DEFAULTS[name])


class MIGGRPOTrainer(GRPOTrainer):
    """[`~trl.GRPOTrainer`] for multi-image grounding (paper: https://huggingface.co/papers/2507.00748).

    Same arguments as `GRPOTrainer`; differences:

    Args:
        reward_funcs (*optional*): defaults to `[format_reward, iou_reward]` (equal weights unless
            `args.reward_weights`); the format reward follows the template (`mig-direct-v1`: answer block only).
        args ([`MIGGRPOConfig`], *optional*): a plain `GRPOConfig` works too, with `MIGGRPOConfig`'s defaults for the
            trl-mig settings.
        train_dataset, eval_dataset: schema rows (`trl_mig.schema`), rendered here when they have no `prompt`
            column, or rows rendered by `trl_mig.templates.render_dataset`.

    Attributes:
        frame (`Frame`): the frame answers are scored in.
        template (`PromptTemplate`): the prompt template of the rows.
        pixel_limits (`dict`): the processor's `min_pixels`, `max_pixels`, `factor`.

    Example:
    ```python
    from trl_mig import MIGGRPOTrainer
    from trl_mig.trainers import MIGGRPOConfig

    trainer = MIGGRPOTrainer("Qwen/Qwen2.5-VL-3B-Instruct", args=MIGGRPOConfig("out"), train_dataset=schema_rows)
    trainer.train()
    ```
    """

    _tag_names = ["trl", "grpo", *MIG_TAGS]
    _name = "trl-mig GRPO"
    _paper = MIG_PAPER

    def __init__(
        self,
        model: Any,
        reward_funcs: Callable | Sequence[Callable] | None = None,
        args: MIGGRPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        # Everything trl-mig needs is settled before TRL 1.16's `GRPOTrainer.__init__` runs, so TRL sees the final
        # rewards and rendered rows. The signature stays TRL's.
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = MIGGRPOConfig(f"{model_name.rstrip('/').split('/')[-1]}-MIG-GRPO")
        info = render_info(train_dataset) if train_dataset is not None else None
        template = get_template(info.template if info is not None else _option(args, "template"))
        if info is not None and template.name != get_template(_option(args, "template")).name:
            logger.info(f"train_dataset was rendered with {template.name!r}; scoring its format with that template")
        frame = self._resolve_frame(model, args)

        if any(needs_render(d) for d in self._splits(train_dataset, eval_dataset)):
            if processing_class is None:  # as TRL 1.16's `GRPOTrainer.__init__` loads it, so it is loaded once
                from transformers import AutoProcessor

                processing_class = AutoProcessor.from_pretrained(
                    model if isinstance(model, str) else get_config_model_id(model.config),
                    revision=(args.model_init_kwargs or {}).get("revision"),
                    truncation_side="left",
                    padding_side="left",
                    trust_remote_code=args.trust_remote_code,
                )
            train_dataset = self._render(train_dataset, template, frame, processing_class)
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: self._render(v, template, frame, processing_class) for k, v in eval_dataset.items()}
            else:
                eval_dataset = self._render(eval_dataset, template, frame, processing_class)
        check_frame_column(train_dataset, frame, "train_dataset")
        for name, split in eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval", eval_dataset)]:
            check_frame_column(split, frame, f"eval_dataset[{name!r}]" if name != "eval" else "eval_dataset")

        if reward_funcs is None:
            reward_funcs = [format_reward if template.reasoning else FormatReward(require_think=False), iou_reward]

        self.frame, self.template = frame, template
        self._mig_resized: list[list] | None = None  # set by `_tokenize_prompts`, read by `_calculate_rewards`
        self._mig_last_drawn_step: int | None = None
        super().__init__(
            model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        limits = pixel_limits_from_processor(self.processing_class)
        self.pixel_limits = {
            "min_pixels": limits.get("min_pixels", DEFAULT_MIN_PIXELS),
            "max_pixels": limits.get("max_pixels", DEFAULT_MAX_PIXELS),
            "factor": limits.get("factor", DEFAULT_FACTOR),
        }
        self._mig_spec = FrameSpec(frame, **self.pixel_limits)
        image_processor = getattr(self.processing_class, "image_processor", None)
        if image_processor is None and "images" in (getattr(train_dataset, "column_names", None) or ()):
            raise ValueError(
                f"the rows have images but the processing class is a {type(self.processing_class).__name__} without "
                "an image processor: load the model's processor (`AutoProcessor.from_pretrained`); for trl-mig's tiny "
                "checkpoints run `import trl_mig.models` first, which registers their processor class"
            )
        self._mig_patch_size = getattr(image_processor, "patch_size", None)
        if info is not None and (info.min_pixels, info.max_pixels, info.factor) != tuple(self.pixel_limits.values()):
            logger.warning(
                f"train_dataset was rendered for pixel limits min_pixels={info.min_pixels}, "
                f"max_pixels={info.max_pixels}, factor={info.factor} but the processor uses {self.pixel_limits}: "
                "prompts state image sizes the model does not see; re-render with processor=... to match"
            )

    # ----------------------------------------------------------------------------------------------------------
    # construction helpers

    @staticmethod
    def _splits(train_dataset: Any, eval_dataset: Any) -> list[Any]:
        evals = list(eval_dataset.values()) if isinstance(eval_dataset, dict) else [eval_dataset]
        return [d for d in [train_dataset, *evals] if d is not None]

    @staticmethod
    def _resolve_frame(model: Any, args: Any) -> Frame:
        """`args.frame`, else the model's frame (reading only `config.json` when `model` is a path or Hub id)."""
        if _option(args, "frame"):
            return Frame.parse(_option(args, "frame"))
        source = model
        if isinstance(model, str):
            from transformers import AutoConfig

            source = AutoConfig.from_pretrained(
                model,
                revision=(args.model_init_kwargs or {}).get("revision"),
                trust_remote_code=args.trust_remote_code,
            )
        return frame_for_model(source)

    @staticmethod
    def _render(dataset: Any, template: PromptTemplate, frame: Frame, processor: Any) -> Any:
        if dataset is None or not needs_render(dataset):
            return dataset
        return render_dataset(dataset, template, frame, processor=processor)

    # ----------------------------------------------------------------------------------------------------------
    # TRL 1.16 overrides

    def _tokenize_prompts(self, prompts: list):
        """TRL 1.16 `GRPOTrainer._tokenize_prompts`, unchanged; also keeps each image's processed size.

        TRL tokenises the prompts with the processor for generation, which returns `image_grid_thw`: the exact size
        the model sees. Keeping it here costs nothing, where asking the image processor again would repeat its work.
        """
        prompt_ids, images, multimodal_fields = super()._tokenize_prompts(prompts)
        self._mig_resized = resized_sizes_from_grid(
            images, multimodal_fields.get("image_grid_thw"), self._mig_patch_size
        )
        return prompt_ids, images, multimodal_fields

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL 1.16 `GRPOTrainer._calculate_rewards`: the rewards see two more columns; then metrics and drawings.

        TRL passes every key of `inputs` (one dict per completion) to the rewards as a column, so adding
        `resized_sizes` and `frame` to a copy of each dict is all the rewards need. The returned tensor is TRL's.
        """
        inputs = self._with_grounding_columns(inputs)
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if _option(self.args, "grounding_metrics") and "solution" in inputs[0]:
            with profiling_context(self, "grounding_metrics"):
                scores = self._score(inputs, completions)
            if self._should_draw():
                with profiling_context(self, "draw_boxes"):
                    self._draw(inputs, completions, scores)
        return rewards_per_func

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ) -> None:
        """TRL 1.16 `_BaseTrainer.create_model_card` writes `README.md` (base model, this class's `_paper`,
        `_tag_names`, `_name`); the trl-mig section with the grounding settings is appended to it."""
        if model_name is None:  # as TRL 1.16's `GRPOTrainer._save_checkpoint` names it
            hub_id = self.args.hub_model_id
            model_name = hub_id.split("/")[-1] if hub_id else Path(self.args.output_dir).name
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        answer = '{"image": N, "bbox_2d": [x1, y1, x2, y2]}'
        append_mig_section(
            Path(self.args.output_dir) / "README.md",
            trainer=type(self).__name__,
            frame=self.frame,
            settings=self.card_settings(dataset_name),
            answer_format=f"<think>...</think><answer>{answer}</answer>" if self.template.reasoning
            else f"<answer>{answer}</answer>",
        )  # fmt: skip

    # ----------------------------------------------------------------------------------------------------------
    # what the overrides call

    def _with_grounding_columns(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of the rows with `resized_sizes` (the processor's sizes) and `frame` (the trainer's)."""
        resized, self._mig_resized = self._mig_resized, None
        images = [row_images(x) for x in inputs]
        if resized is None or len(resized) != len(inputs) or any(len(r) != len(i) for r, i in zip(resized, images)):
            resized = self._resized_by_processor(images)  # rollout_func / environments: no tokenisation to reuse
        frame = self.frame.value
        for value in {x.get("frame") for x in inputs}:
            if value is not None and value != frame and Frame.parse(value) is not self.frame:
                raise ValueError(frame_error([str(value)], self.frame, "a training batch"))
        return [{**x, "resized_sizes": r, "frame": frame} for x, r in zip(inputs, resized)]

    def _resized_by_processor(self, images: list[list[Any]]) -> list[list | None]:
        flat = [img for row in images for img in row]
        image_processor = getattr(self.processing_class, "image_processor", None)
        if not flat or image_processor is None or not self._mig_patch_size:
            return [None] * len(images)
        grid = image_processor(images=flat, return_tensors="pt").get("image_grid_thw")
        resized = resized_sizes_from_grid(images, grid, self._mig_patch_size)
        return resized if resized is not None else [None] * len(images)

    def _score(self, inputs: list[dict[str, Any]], completions: list[Any]) -> list[CompletionScore]:
        """Score the local completions, log the `grounding/*` metrics and the per-completion table columns."""

        def column(name: str) -> list[Any] | None:
            return [x.get(name) for x in inputs] if name in inputs[0] else None

        scores = score_completions(
            completions,
            column("solution"),
            column("target_image"),
            column("image_sizes"),
            column("resized_sizes"),
            column("frame"),
            spec=self._mig_spec,
            require_think=self.template.reasoning,
            images=[row_images(x) for x in inputs],
            ids=column("id"),
        )
        for key, value in rollout_metrics(scores).items():
            self._log_metric(key, value)  # TRL 1.16: averaged over the logging step and across processes
        self._log_completion_extra("grounding_iou", [s.iou if s.outcome is not None else None for s in scores])
        self._log_completion_extra("grounding_outcome", [s.outcome for s in scores])
        return scores

    def _should_draw(self) -> bool:
        every = _option(self.args, "log_boxes_steps")
        if every <= 0 or not self.model.training or not self.accelerator.is_main_process:
            return False
        last, step = self._mig_last_drawn_step, self.state.global_step
        return last is None or step < last or step - last >= every  # `step < last`: a new `train()` started over

    def _draw(self, inputs: list[dict[str, Any]], completions: list[Any], scores: list[CompletionScore]) -> None:
        """Boxes on the images of the first labelled completions: PNG files, and images for wandb / trackio."""
        step = self.state.global_step
        self._mig_last_drawn_step = step
        folder = Path(self.args.output_dir) / "completions" / f"step-{step:06d}"
        labelled = [i for i, s in enumerate(scores) if s.outcome is not None]
        panels = []
        for rank, i in enumerate(labelled[: _option(self.args, "num_boxed_completions")]):
            drawn = completion_panel(inputs[i], completions[i], scores[i], step)
            if drawn is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            # compress_level=1: a few times faster to write than the default 6, and these files are small anyway
            drawn[0].save(folder / panel_file_name(rank, inputs[i].get("id", i)), compress_level=1)
            panels.append(drawn)
        for tracker in self._image_trackers():
            tracker.log({"completions/boxes": [tracker.Image(panel, caption=title) for panel, title in panels]})

    def _image_trackers(self) -> list[Any]:
        """The wandb / trackio modules TRL 1.16's `GRPOTrainer.log` logs completions to (already imported by then)."""
        report_to = self.args.report_to or []
        trackers = []
        wandb = sys.modules.get("wandb") if "wandb" in report_to else None
        if wandb is not None and getattr(wandb, "run", None) is not None:
            trackers.append(wandb)
        trackio = sys.modules.get("trackio") if "trackio" in report_to else None
        if trackio is not None:
            trackers.append(trackio)
        return trackers

    def card_settings(self, dataset_name: str | None = None) -> dict[str, str]:
        """The rows of the card's settings table (also useful in reports)."""
        weights = self.reward_weights.tolist()
        rewards = ", ".join(f"`{name}` (weight {w:g})" for name, w in zip(self.reward_func_names, weights))
        data = dataset_name or getattr(getattr(self.train_dataset, "info", None), "dataset_name", None) or "in memory"
        if hasattr(self.train_dataset, "__len__"):
            data = f"{data} ({len(self.train_dataset):,} rows)"
        limits = self.pixel_limits
        return {
            "base model": get_config_model_id(self.model.config) or "unknown",
            "algorithm": f"GRPO family (https://huggingface.co/papers/2402.03300), loss `{self.args.loss_type}`, "
            f"beta={self.args.beta:g}, {self.args.num_generations} generations per prompt",
            "rewards": rewards,
            "data": data,
            "prompt template": f"`{self.template.name}` (version {self.template.version})",
            "frame": f"`{self.frame.value}`",
            "pixel limits": f"min_pixels={limits['min_pixels']:,}, max_pixels={limits['max_pixels']:,}, "
            f"factor={limits['factor']}",
        }
