"""`trl-mig grpo --config recipe.yaml`: rule-based RL (GRPO family) on the RL set with `MIGGRPOTrainer`.

Parsed by TRL's `TrlParser` from (`GRPOScriptArguments`, `MIGGRPOConfig`). `GRPOConfig` has `reward_weights` but no
`reward_funcs` (TRL keeps that in its own script arguments): trl-mig defines its own script arguments instead of
reusing TRL's, whose fields would clash with these.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rewards import DEFAULT_REWARD_FUNCS
from .common import TrainingScriptArguments


logger = logging.getLogger(__name__)

COMMAND = "grpo"
HELP = "rule-based RL with format and IoU rewards (MIGGRPOTrainer)"


@dataclass
class GRPOScriptArguments(TrainingScriptArguments):
    """What `trl-mig grpo` trains, on what, and with which rewards, besides the `MIGGRPOConfig` settings."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The model to train: the merged SFT model (folder or Hub id)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "RL set (schema rows; `trl-mig sample` writes one) or rendered rows."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: list(DEFAULT_REWARD_FUNCS),
        metadata={"help": "Rewards: names in `trl_mig.rewards.REWARD_FUNCS` (format_reward, iou_reward, "
                  "iou_threshold_reward, image_index_reward, multi_box_iou_reward) or dotted paths to callables."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]


def mid_generation_warning(training_args: Any, checkpoint: str | None = None) -> str | None:
    """Why a checkpoint of this run would not resume exactly, or `None` when it would.

    TRL 1.16's `GRPOTrainer` generates once every `steps_per_generation * num_iterations` micro-steps and replays the
    buffered completions in between; a checkpoint saves neither that buffer nor the micro-step counter (`_step`, back
    to 0 on resume). Resumed from a checkpoint inside such a cycle, the run generates afresh for the cycle's prompts
    and every later generation comes that many steps late: other completions, a shifted schedule (the last prompts
    trained on fewer times). A checkpoint at a cycle boundary resumes exactly (tests/test_grpo_resume.py). Checks
    `checkpoint` (its `trainer_state.json`) when given, else whether `save_steps` can land inside a cycle.
    """
    cycle = (training_args.steps_per_generation or 1) * getattr(training_args, "num_iterations", 1)
    per_step = training_args.gradient_accumulation_steps
    if cycle <= 1:  # a generation every micro-step: every checkpoint is at a boundary
        return None
    if checkpoint is not None:
        state = Path(checkpoint) / "trainer_state.json"
        step = json.loads(state.read_text())["global_step"] if state.is_file() else 0  # transformers says what's wrong
        if step * per_step % cycle:
            return (
                f"resuming from {checkpoint} (step {step}), inside a generation cycle of {cycle} micro-steps "
                "(steps_per_generation x num_iterations): TRL 1.16 does not checkpoint the buffered completions, so "
                "this run regenerates them and continues on a shifted schedule, not as an uninterrupted run would"
            )
        return None
    save_steps = training_args.save_steps
    if training_args.save_strategy == "steps" and save_steps >= 1 and int(save_steps) * per_step % cycle:
        return (
            f"save_steps={int(save_steps)} puts checkpoints inside generation cycles of {cycle} micro-steps "
            "(steps_per_generation x num_iterations): a resume from one cannot continue exactly (TRL 1.16 does not "
            f"checkpoint the buffered completions); use a multiple of {cycle // math.gcd(cycle, per_step)}"
        )
    return None


def dataclasses() -> tuple[type, ...]:
    from ..trainers.grpo_config import MIGGRPOConfig

    return (GRPOScriptArguments, MIGGRPOConfig)


def main(script_args: GRPOScriptArguments, training_args: Any) -> dict[str, Any]:
    from ..models import load_processor
    from ..sampling.sampler import resolve_reward_funcs
    from ..trainers import MIGGRPOTrainer
    from .common import (
        add_crash_callback,
        load_full_checkpoints_with_key_conversion,
        load_splits,
        print_table,
        resume_checkpoint,
        trainer_summary,
        write_run_record,
    )

    train, test = load_splits(
        script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split,
        script_args.dataset_test_split, training_args.eval_strategy != "no",
    )  # fmt: skip
    if len(train) == 0:
        raise ValueError(
            f"{script_args.dataset_name} ({script_args.dataset_train_split}) has no rows: the rejection sampler kept no "
            "prompt in its pass-rate band; widen the band or sample more prompts"
        )
    training_args.model_init_kwargs = script_args.model_init_kwargs(training_args)
    trainer = MIGGRPOTrainer(
        script_args.model_name_or_path,
        reward_funcs=resolve_reward_funcs(script_args.reward_funcs),
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=load_processor(
            script_args.model_name_or_path,
            script_args.min_pixels,
            script_args.max_pixels,
            padding_side="left",
            truncation_side="left",
        ),  # as TRL loads it for GRPO: left padding for generation
    )
    add_crash_callback(trainer)
    load_full_checkpoints_with_key_conversion(trainer)
    # `--resume_from_checkpoint true`: from the newest complete checkpoint in output_dir (same data order)
    checkpoint = resume_checkpoint(training_args)
    warning = mid_generation_warning(training_args, checkpoint) if checkpoint else None
    if warning or (warning := mid_generation_warning(training_args)):
        logger.warning(warning)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        trainer.create_model_card(dataset_name=script_args.dataset_name)
    summary = trainer_summary(trainer, output)
    summary["rows"] = len(train)
    if trainer.is_world_process_zero():
        write_run_record(training_args.output_dir, COMMAND, summary)
        print_table("trl-mig grpo", summary)
    return summary
