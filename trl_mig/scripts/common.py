"""What the stage commands share: dataset loading by name, the run record, and the end-of-run summary."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any


RUN_RECORD = "trl_mig_run.json"


@dataclass
class TrainingScriptArguments:
    """What a training command (`sft`, `grpo`) loads besides its trainer config: model, data, pixel budget, dtype.

    Subclasses re-declare `model_name_or_path` / `dataset_name` to say what they expect and add their own fields.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Model: Hub id or local folder."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "Schema set (a builder's output folder or Hub id), or rendered rows."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Split to evaluate on (used when `eval_strategy` is not `no`)."}
    )
    min_pixels: int | None = field(
        default=None,
        metadata={"help": "Smallest image area in pixels (the processor's `min_pixels`); unset: its own."},
    )
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Largest image area in pixels (the processor's `max_pixels`); unset: the processor's own."},
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, bfloat16, float16, float32."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention implementation, e.g. `sdpa` or `flash_attention_2`."}
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError("--model_name_or_path is required (in the recipe or on the command line)")
        if not self.dataset_name:
            raise ValueError("--dataset_name is required: the set to train on")

    def model_init_kwargs(self, training_args: Any) -> dict[str, Any]:
        """The config's `model_init_kwargs` with this `dtype` / `attn_implementation` (explicit ones win)."""
        kwargs = dict(training_args.model_init_kwargs or {})
        kwargs.setdefault("dtype", self.dtype)
        if self.attn_implementation:
            kwargs.setdefault("attn_implementation", self.attn_implementation)
        return kwargs


_PACKAGES = ("trl-mig", "torch", "transformers", "trl", "peft", "datasets", "accelerate")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def load_splits(name: str, config: str | None, train_split: str, test_split: str | None, need_test: bool):
    """The train split of a schema set (builder folder or Hub id) and, when asked for and present, its test split."""
    from ..datasets_builders.reader import load_schema_dataset

    dataset = load_schema_dataset(name, config)
    if train_split not in dataset:
        raise ValueError(f"dataset {name!r} has no split {train_split!r}; it has {sorted(dataset)}")
    test = dataset[test_split] if need_test and test_split and test_split in dataset else None
    return dataset[train_split], test


def write_run_record(output_dir: str | os.PathLike, command: str, record: Mapping[str, Any]) -> Path:
    """`output_dir/trl_mig_run.json`: what ran, on how many processes, with which versions (main process only)."""
    path = Path(output_dir) / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "argv": sys.argv[1:], **record, "versions": versions()}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def trainer_summary(trainer: Any, train_output: Any) -> dict[str, Any]:
    """The numbers a training command ends with: steps, runtime, last logged losses/rewards, processes."""
    metrics = dict(getattr(train_output, "metrics", {}) or {})
    last: dict[str, Any] = {}
    for entry in trainer.state.log_history:
        last.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
    summary = {
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "train_runtime": metrics.get("train_runtime"),
        "train_loss": metrics.get("train_loss"),
    }
    for key in ("reward", "grounding/acc@0.5", "grounding/format_rate", "loss"):
        if key in last:
            summary[f"last {key}"] = last[key]
    return summary


def print_table(title: str, summary: Mapping[str, Any]) -> None:
    from ..reporting import print_summary

    print_summary(title, [{"key": k, "value": v} for k, v in summary.items()], ["key", "value"])
