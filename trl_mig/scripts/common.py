"""What the stage commands share: dataset loading by name, the run record, and the end-of-run summary."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any


RUN_RECORD = "trl_mig_run.json"
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
