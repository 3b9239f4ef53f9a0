"""`MIGGRPOConfig`: TRL's `GRPOConfig` plus the settings multi-image grounding RL needs (written against TRL 1.16)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from ..geometry import Frame
from ..templates import get_template


@dataclass
class MIGGRPOConfig(GRPOConfig):
    r"""
    Configuration class for [`MIGGRPOTrainer`]: every [`~trl.GRPOConfig`] parameter, plus the ones below.

    Parameters:
        > Rendering and coordinates

        template (`str`, *optional*, defaults to `"mig-think-v1"`):
            Prompt template (`trl_mig.templates`) used to render schema rows that have no `prompt` column yet. For
            rows rendered elsewhere, name the template they were rendered with: it also decides which format the
            default format reward and `grounding/format_rate` expect (`mig-direct-v1`: an answer block alone).
        frame (`str`, *optional*):
            Coordinate frame the model answers in (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `pixel`, `normalized`).
            Defaults to the model's (`trl_mig.geometry.frame_for_model`, from `config.model_type`); set it for a
            model trained to answer in another frame. Rows are rendered with it, it reaches the rewards as the
            per-row `frame` column, and a rendered dataset whose `frame` column names another frame is an error.

        > Logging

        grounding_metrics (`bool`, *optional*, defaults to `True`):
            Log `grounding/acc@0.5`, `grounding/strict_acc@0.5`, `grounding/miou`, `grounding/format_rate` and the
            failure taxonomy `grounding/failure/*` of the sampled completions at every generation, and add the
            per-completion `grounding_iou` / `grounding_outcome` columns to TRL's completions table.
        log_boxes_steps (`int`, *optional*, defaults to `50`):
            Draw predicted (red) and gold (green) boxes on the images of a few sampled completions at the first
            generation and then every `log_boxes_steps` optimizer steps, saved as PNG files under
            `output_dir/completions/step-XXXXXX/` and sent to the wandb / trackio runs in `report_to`. `0` disables.
        num_boxed_completions (`int`, *optional*, defaults to `4`):
            Completions drawn at each drawing step (on the main process).

    > [!NOTE]
    > `activation_checkpointing` (transformers' new name for `gradient_checkpointing`) defaults to `True`, TRL's
    > default, set under the new name so that building the config raises no deprecation warning. Passing the old
    > `gradient_checkpointing` still works (transformers warns about the name).
    """

    template: str = field(
        default="mig-think-v1",
        metadata={
            "help": "Prompt template that renders schema rows without a `prompt` column (`mig-think-v1`, "
            "`mig-direct-v1`); for pre-rendered rows, the template they were rendered with."
        },
    )
    frame: str | None = field(
        default=None,
        metadata={
            "help": "Coordinate frame the model answers in (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `pixel`, "
            "`normalized`). Defaults to the model's, from `config.model_type`."
        },
    )
    grounding_metrics: bool = field(
        default=True,
        metadata={
            "help": "Log IoU/accuracy metrics, format rate and the failure taxonomy of the sampled completions "
            "(`grounding/*`) at every generation."
        },
    )
    log_boxes_steps: int = field(
        default=50,
        metadata={
            "help": "Draw predicted and gold boxes on a few sampled completions at the first generation and then "
            "every this many steps (PNG files under `output_dir/completions/`, and wandb/trackio images). 0 disables."
        },
    )
    num_boxed_completions: int = field(
        default=4,
        metadata={"help": "Completions drawn at each drawing step."},
    )
    # TRL's default (`True`) set under transformers 5's new name, see the note in the docstring
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Deprecated alias of `activation_checkpointing` (transformers 5). Unset by default: "
            "`activation_checkpointing` defaults to True."
        },
    )

    def __post_init__(self):
        # Default resolution, not validation: TRL 1.16 defaults `gradient_checkpointing=True`, which transformers 5.24
        # reports as a deprecated name on every config built. Same behaviour under the new name, and no warning.
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        super().__post_init__()

        self.template = get_template(self.template).name  # raises naming the known templates
        if self.frame is not None:
            try:
                self.frame = Frame.parse(self.frame).value
            except ValueError as exc:
                raise ValueError(f"MIGGRPOConfig.frame: {exc}; or leave it unset to use the model's frame") from exc
            if self.frame == Frame.COCO_XYWH.value:
                raise ValueError(
                    "MIGGRPOConfig.frame='coco_xywh' is a storage frame, models do not answer in it; use one of "
                    "qwen2_vl, qwen2_5_vl, qwen3_vl, pixel, normalized, or leave it unset"
                )
        if not isinstance(self.log_boxes_steps, int) or self.log_boxes_steps < 0:
            raise ValueError(
                f"MIGGRPOConfig.log_boxes_steps must be an integer >= 0, got {self.log_boxes_steps!r}; "
                "use 0 to disable drawing"
            )
        if not isinstance(self.num_boxed_completions, int) or self.num_boxed_completions < 0:
            raise ValueError(
                f"MIGGRPOConfig.num_boxed_completions must be an integer >= 0, got {self.num_boxed_completions!r}"
            )
        if self.log_boxes_steps > 0 and self.num_boxed_completions == 0:
            raise ValueError(
                f"MIGGRPOConfig.log_boxes_steps={self.log_boxes_steps} asks for drawings but "
                "num_boxed_completions=0; set num_boxed_completions >= 1, or log_boxes_steps=0 to disable drawing"
            )
