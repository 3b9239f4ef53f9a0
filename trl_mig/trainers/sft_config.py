"""`MIGSFTConfig`: TRL's `SFTConfig` plus the cold-start settings of trl-mig (template, frame, LoRA, budget, merge).

Written against TRL 1.16 / transformers 5.24. Only what TRL lacks is added; defaults of TRL's own fields change where
multi-image grounding rows need it, each with the reason next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig


#: default LoRA targets: every linear projection of the *language model* decoder layers, as a regex that PEFT matches
#: against full module names (`re.fullmatch`). Qwen-VL vision blocks reuse the names `gate_proj`/`up_proj`/`down_proj`
#: (`model.visual.blocks.N.mlp.*`), so a plain list of names would put adapters on the vision tower too.
DEFAULT_LORA_TARGET_MODULES = r".*\.language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class MIGSFTConfig(SFTConfig):
    r"""
    Configuration class for [`MIGSFTTrainer`]: cold-start SFT of a multi-image grounding model on chain-of-thought rows.

    Everything of [`~trl.SFTConfig`] applies. New parameters:

    Parameters:
        > Parameters that control the rows

        template (`str`, *optional*, defaults to `"mig-think-v1"`):
            Prompt template used to render schema rows (rows without `prompt`/`completion`) into conversational
            `prompt` + `completion`. Ignored for rows that are already rendered.
        frame (`str`, *optional*):
            Coordinate frame the answers are written in. Defaults to the model's frame (`frame_for_model`, from
            `config.model_type`); for an already rendered dataset, to the frame it was rendered in.
        drop_over_budget (`bool`, *optional*, defaults to `False`):
            Rows longer than `max_length` (prompt with every image placeholder expanded, plus completion) are refused
            with an error naming them. `True` drops them instead and logs how many.

        > Parameters that control what is trained

        use_lora (`bool`, *optional*, defaults to `True`):
            Train a LoRA adapter on the language model (vision tower and merger untouched). `False` trains the full
            model, except the vision tower when `freeze_vision_tower=True`.
        lora_r (`int`, *optional*, defaults to `16`): LoRA rank.
        lora_alpha (`int`, *optional*, defaults to `32`): LoRA scaling numerator (scale = `lora_alpha / lora_r`).
        lora_dropout (`float`, *optional*, defaults to `0.05`): dropout on the LoRA input.
        lora_target_modules (`str` or `list[str]`, *optional*):
            Modules that get adapters, as PEFT reads them: a string is a regex matched against full module names (or
            `"all-linear"`), a list holds module-name suffixes. Defaults to `DEFAULT_LORA_TARGET_MODULES`, the linear
            layers of the language model only.
        freeze_vision_tower (`bool`, *optional*, defaults to `True`):
            With `use_lora=False`, keep the vision tower (including the patch merger) frozen.

        > Parameters that control the merge

        merge_at_end (`bool`, *optional*, defaults to `True`):
            At the end of `train()`, save the adapter (or model) to `output_dir` and write a standalone merged model +
            processor + chat template + card to `merged_output_dir`, loadable without PEFT.
        merged_output_dir (`str`, *optional*):
            Where the merged model goes. Defaults to `<output_dir>/merged`.

    > [!NOTE]
    > Defaults that differ from [`~trl.SFTConfig`]:
    > - `max_length`: `4096` instead of `1024`: a Qwen2.5-VL image at transformers' default `max_pixels` alone takes up
    >   to 1280 tokens, so 1024 truncates most multi-image rows. The budget check refuses rows that still do not fit.
    > - `learning_rate`: `1e-4` instead of `2e-5`, a LoRA learning rate; use about `1e-5` for full fine-tuning.
    > - `completion_only_loss`: `True` instead of `None` (the same on prompt-completion rows, but explicit: `False`
    >   would train on the prompt, image placeholder tokens included, and is refused).
    > - `activation_checkpointing`: `True` (TRL's default, set through the new name so that building a config raises
    >   no transformers deprecation warning about the `gradient_checkpointing` alias).
    """

    # TRL fields whose defaults change
    max_length: int | None = field(
        default=4096,
        metadata={
            "help": "Maximum tokenized length (prompt with every image placeholder expanded + completion). Rows longer "
            "than this are refused by the budget check (or dropped with `drop_over_budget`), never truncated. "
            "`None` disables both truncation and the check."
        },
    )
    learning_rate: float = field(
        default=1e-4,
        metadata={"help": "The initial learning rate for AdamW (a LoRA rate; use about 1e-5 for full fine-tuning)."},
    )
    completion_only_loss: bool | None = field(
        default=True,
        metadata={
            "help": "Compute the loss on the completion only (the prompt, image placeholder tokens included, is "
            "masked). `False` is refused."
        },
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Deprecated transformers alias of `activation_checkpointing`; leave unset and use "
            "`activation_checkpointing`.",
            "nargs": "?",
            "const": True,
        },
    )

    # rows
    template: str = field(
        default="mig-think-v1",
        metadata={"help": "Prompt template that renders schema rows into `prompt` + `completion` (`mig-think-v1`)."},
    )
    frame: str | None = field(
        default=None,
        metadata={
            "help": "Coordinate frame of the answers (`qwen2_5_vl`, `qwen2_vl`, `qwen3_vl`, `pixel`, `normalized`). "
            "Defaults to the model's frame, or to the frame a rendered dataset was rendered in."
        },
    )
    drop_over_budget: bool = field(
        default=False,
        metadata={
            "help": "Drop rows longer than `max_length` (and log how many) instead of refusing them with an error."
        },
    )

    # what is trained
    use_lora: bool = field(
        default=True,
        metadata={"help": "Train a LoRA adapter on the language model; `False` trains the full model."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = lora_alpha / lora_r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout probability on the LoRA input."})
    lora_target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Modules that get LoRA adapters: a regex over full module names (or `all-linear`), or a list of "
            "module-name suffixes. Defaults to the linear layers of the language model only (vision tower and "
            "merger excluded)."
        },
    )
    freeze_vision_tower: bool = field(
        default=True,
        metadata={"help": "With `use_lora=False`, keep the vision tower and patch merger frozen."},
    )

    # merge
    merge_at_end: bool = field(
        default=True,
        metadata={
            "help": "At the end of `train()`, save the adapter to `output_dir` and write a standalone merged model "
            "(+ processor, chat template, card) to `merged_output_dir`."
        },
    )
    merged_output_dir: str | None = field(
        default=None,
        metadata={"help": "Where the merged model goes; defaults to `<output_dir>/merged`."},
    )

    def __post_init__(self):
        # TRL 1.16 sets `gradient_checkpointing=True`, which transformers 5.24 reads as the deprecated alias and warns
        # about on every config: the same default is set through the new name, and a value the user gives to the old
        # name still wins (with transformers' own warning).
        if self.gradient_checkpointing is None and self.activation_checkpointing is None:
            self.activation_checkpointing = True
        super().__post_init__()
        self._validate()

    def _validate(self) -> None:
        from ..templates import get_template, resolve_frame

        get_template(self.template)  # raises, listing the known templates
        if self.frame is not None:
            self.frame = resolve_frame(self.frame).value
        if self.completion_only_loss is False:
            raise ValueError(
                "completion_only_loss=False would train on the prompt, image placeholder tokens included; "
                "MIGSFTTrainer trains on the completion only: leave completion_only_loss unset (True)"
            )
        self.completion_only_loss = True
        if self.assistant_only_loss:
            raise ValueError(
                "assistant_only_loss=True needs `messages` rows; MIGSFTTrainer trains on prompt/completion rows, whose "
                "loss is already on the completion only: set assistant_only_loss=False"
            )
        if self.max_length is not None and self.max_length <= 0:
            raise ValueError(f"max_length must be positive or None, got {self.max_length}")
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be a positive integer, got {self.lora_r}")
        if self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be positive, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if isinstance(self.lora_target_modules, (list, tuple)) and not self.lora_target_modules:
            raise ValueError("lora_target_modules is an empty list; leave it unset for the language model's layers")

    @property
    def resolved_lora_target_modules(self) -> list[str] | str:
        """`lora_target_modules`, or the default regex over the language model's linear layers."""
        if self.lora_target_modules is None:
            return DEFAULT_LORA_TARGET_MODULES
        return self.lora_target_modules
