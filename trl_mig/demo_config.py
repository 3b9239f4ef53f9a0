"""The settings of `trl-mig demo` (`trl_mig.demo`): `DemoArguments` and the fixed parts of its world and model.

Every value here is the learning benchmark's (`benchmarks/learning/bench_learning.py`, `stages.py`, `worlds.py`; the
findings behind them in `benchmarks/learning/NOTES.md`), except the sizes the demo's 5-minute budget sets: rows,
steps, images per question and new tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


__all__ = ["FAMILY", "MAX_PIXELS", "MIN_PIXELS", "WORLD", "DemoArguments"]

#: the demo's model family when it builds its own base (the learning benchmark's `FRAME`), and its processor's pixel
#: budget: 112-px images resize to 128 x 128, 16 merged vision tokens per image (`benchmarks/learning/worlds.py`)
FAMILY = "qwen3_vl"
MIN_PIXELS, MAX_PIXELS = 64 * 64, 128 * 128
#: the benchmark's synthetic world (`bench_learning.build_data`); `DemoArguments.max_images` sets the image count
WORLD = {"style": "simple", "image_min_side": 112, "image_max_side": 112, "min_images": 2, "max_objects": 2,
         "min_object_frac": 0.2}  # fmt: skip


@dataclass
class DemoArguments:
    """Arguments of `trl-mig demo`. The defaults run in under 5 minutes on 2 CPU cores.

    The defaults are the settings of the learning benchmark (`benchmarks/learning/bench_learning.py`, findings in
    `benchmarks/learning/NOTES.md`) scaled to that budget: its model (preset `bench`, Qwen3-VL), tasks, template, LoRA
    and GRPO settings, with fewer rows, steps, images and new tokens. The benchmark first pre-trains a base model
    (about 30 minutes, cached); the demo's budget has no room for that, so its base is random and not pre-trained
    (unless `base_model` names a checkpoint, such as that cached base) and metrics near 0 are still expected.
    """

    output_dir: str = field(default="trl-mig-demo", metadata={"help": "Where everything the demo makes is written."})
    seed: int = field(default=0, metadata={"help": "Seed of the data, the model weights and the training runs."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "A saved checkpoint to start from (e.g. the learning benchmark's cached pre-trained base) instead "
            "of a random tiny Qwen3-VL; its frame comes from its `model_type`, and `model_size` is ignored."
        },
    )
    model_size: str = field(
        default="bench",
        metadata={
            "help": "Preset of the random tiny Qwen3-VL: `bench` (~1.3M parameters, the learning benchmark's), "
            "`tiny` (~0.2M) or `small` (~4.8M)."
        },
    )
    template: str = field(
        default="mig-think-brief-v1",
        metadata={"help": "Prompt template of every stage (SFT, sampling, GRPO, evaluation); the benchmark's."},
    )
    tasks: list[str] = field(
        default_factory=lambda: ["group_grounding", "refer_grounding", "multi_view", "common_object"],
        metadata={"help": "Synthetic tasks and weights (see `trl-mig build synthetic --help`)."},
    )
    reasoning: str = field(
        default="brief",
        metadata={
            "help": "The generator's reasoning texts: `brief` (the target, its image, a coarse position; the "
            "benchmark's) or `full` (every object of every image listed)."
        },
    )
    max_images: int = field(default=3, metadata={"help": "Images per question: 2 to this (the benchmark uses 5)."})
    num_cot: int = field(default=128, metadata={"help": "Cold-start CoT rows (SFT)."})
    num_pool: int = field(default=32, metadata={"help": "Prompts sampled by the rejection sampler."})
    num_test: int = field(default=32, metadata={"help": "Held-out rows every stage is evaluated on."})
    sft_epochs: float = field(default=1.0, metadata={"help": "SFT epochs over the CoT rows."})
    sft_learning_rate: float = field(default=1e-3, metadata={"help": "SFT (LoRA, cosine schedule) learning rate."})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank (alpha = 2r)."})
    num_generations: int = field(default=6, metadata={"help": "Samples per prompt (sampler and GRPO group size)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (sampler and GRPO)."})
    min_pass_rate: float = field(default=0.0, metadata={"help": "Lower edge of the RL set's pass-rate band."})
    max_pass_rate: float = field(default=1.0, metadata={"help": "Upper edge of the RL set's pass-rate band."})
    include_min: bool = field(
        default=False, metadata={"help": "Keep prompts at the lower edge too (e.g. all-wrong ones, with 0)."}
    )
    grpo_steps: int = field(default=8, metadata={"help": "GRPO optimizer steps."})
    grpo_prompts_per_step: int = field(default=2, metadata={"help": "Prompts per GRPO step (x num_generations)."})
    grpo_learning_rate: float = field(
        default=1e-4, metadata={"help": "GRPO learning rate (the benchmark saw 5e-4 break the format in 10 steps)."}
    )
    grpo_beta: float = field(default=0.0, metadata={"help": "GRPO KL coefficient."})
    max_new_tokens: int = field(
        default=128,
        metadata={
            "help": "Longest completion (sampling, GRPO, evaluation): brief completions are 60-77 tokens (the "
            "benchmark's budget); use 448 with `--reasoning full`."
        },
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts per generation call and per SFT step."})
    images_per_stage: int = field(default=4, metadata={"help": "Held-out answers drawn per stage."})
    overwrite: bool = field(
        default=True,
        metadata={
            "help": "Replace a previous demo in `output_dir` (a folder the demo did not make is never removed)."
        },
    )

    def __post_init__(self) -> None:
        from .templates import get_template

        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        for name in ("num_cot", "num_pool", "num_test", "num_generations", "grpo_steps", "grpo_prompts_per_step",
                     "batch_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2: GRPO compares the samples of a group")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (the samples of a prompt must differ), got {self.temperature}")
        if not 2 <= self.max_images <= 10:
            raise ValueError(f"max_images must be in [2, 10] (the synthetic generator's range), got {self.max_images}")
        from .datasets_builders.synthetic import REASONINGS

        if self.reasoning not in REASONINGS:
            raise ValueError(f"reasoning must be one of {', '.join(REASONINGS)}, got {self.reasoning!r}")
        self.template = get_template(self.template).name  # raises naming the known templates
        if self.base_model is not None and not (Path(self.base_model) / "config.json").is_file():
            raise ValueError(
                f"base_model={self.base_model!r} is not a saved checkpoint (no config.json); pass the folder "
                "`save_pretrained` wrote, or leave --base_model unset for a random tiny Qwen3-VL"
            )
