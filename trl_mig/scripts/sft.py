"""`trl-mig sft --config recipe.yaml`: LoRA cold start on a CoT set with `MIGSFTTrainer`, merged at the end.

Parsed by TRL's `TrlParser` from (`SFTScriptArguments`, `MIGSFTConfig`): every `SFTConfig` flag works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import TrainingScriptArguments


COMMAND = "sft"
HELP = "LoRA cold start on chain-of-thought rows (MIGSFTTrainer); writes the adapter and a merged model"


@dataclass
class SFTScriptArguments(TrainingScriptArguments):
    """What `trl-mig sft` trains on, besides the `MIGSFTConfig` training settings."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model: Hub id (e.g. Qwen/Qwen2.5-VL-7B-Instruct) or local folder."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "CoT set with `reasoning` (a builder's output folder or Hub id), or rendered rows."},
    )


def dataclasses() -> tuple[type, ...]:
    from ..trainers.sft_config import MIGSFTConfig

    return (SFTScriptArguments, MIGSFTConfig)


def main(script_args: SFTScriptArguments, training_args: Any) -> dict[str, Any]:
    from ..models import load_processor
    from ..trainers import MIGSFTTrainer
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
    training_args.model_init_kwargs = script_args.model_init_kwargs(training_args)
    processor = load_processor(script_args.model_name_or_path, script_args.min_pixels, script_args.max_pixels)
    trainer = MIGSFTTrainer(
        script_args.model_name_or_path, args=training_args, train_dataset=train, eval_dataset=test,
        processing_class=processor,
    )  # fmt: skip
    add_crash_callback(trainer)
    load_full_checkpoints_with_key_conversion(trainer)
    # `--resume_from_checkpoint true`: from the newest complete checkpoint in output_dir (same data order)
    output = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    summary = trainer_summary(trainer, output)
    summary["rows"] = len(train)
    if training_args.merge_at_end:
        summary["merged"] = training_args.merged_output_dir or f"{training_args.output_dir}/merged"
    if trainer.is_world_process_zero():
        write_run_record(training_args.output_dir, COMMAND, summary)
        print_table("trl-mig sft", summary)
    return summary
