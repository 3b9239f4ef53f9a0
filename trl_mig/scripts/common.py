"""What the stage commands share: dataset loading by name, the run record, and the end-of-run summary."""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ..io_utils import atomic_write


logger = logging.getLogger(__name__)

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


#: command-line flags whose value is a credential (`--hub_token`, `--api_key`, ...), never written to a run record;
#: not `--max_new_tokens` or `--pad_token`, which the doctor reads back or which are plain settings
_SECRET_FLAG = re.compile(r"^(?:(?:hub|hf|push_to_hub|auth|access)_)?token$|api_?key|secret|password", re.IGNORECASE)
REDACTED = "<redacted>"


def redact_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with the values of credential flags (`--hub_token X`, `--hub_token=X`) replaced by `<redacted>`."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if arg.startswith("-") and _SECRET_FLAG.search(name.lstrip("-")):
            if eq:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def write_run_record(output_dir: str | os.PathLike, command: str, record: Mapping[str, Any]) -> Path:
    """`output_dir/trl_mig_run.json`: what ran, on how many processes, with which versions (main process only).

    The command line is recorded with credential values (`--hub_token`, ...) redacted (`redact_argv`).
    """
    path = Path(output_dir) / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "argv": redact_argv(sys.argv[1:]), **record, "versions": versions()}
    text = json.dumps(payload, indent=2, default=str)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))  # a kill leaves the old record or the new
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


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` that was saved in full, or `None`.

    Why not `transformers.trainer_utils.get_last_checkpoint`: it takes the highest `checkpoint-N` folder, including
    one that a kill cut in the middle of its save (weights written, optimizer or RNG states not), from which resuming
    fails or, worse, resumes inexactly. `Trainer._save_checkpoint` writes `trainer_state.json` last: a folder that has
    it is complete.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for path in folder.iterdir():
        name = path.name
        if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.split("-", 1)[1].isdigit() and path.is_dir():
            if (path / "trainer_state.json").is_file():
                steps.append((int(name.split("-", 1)[1]), path))
    return str(max(steps)[1]) if steps else None


def resume_checkpoint(training_args: Any) -> str | None:
    """What `trainer.train(resume_from_checkpoint=...)` gets from `--resume_from_checkpoint`.

    `true` resumes from the newest complete checkpoint in `output_dir` (`last_complete_checkpoint`), or starts from
    scratch when there is none yet (so one command line serves the first run and every restart after a crash);
    `false` or unset starts from scratch; anything else is a checkpoint folder. Resuming restores the weights, the
    optimizer, scheduler and RNG states, and skips the batches already consumed: the run continues with the same data
    order as an uninterrupted one.
    """
    value = getattr(training_args, "resume_from_checkpoint", None)
    if value is None or value is False or str(value).strip().lower() in ("", "false", "no", "0", "none"):
        return None
    if value is True or str(value).strip().lower() in ("true", "yes", "1", "last"):
        last = last_complete_checkpoint(training_args.output_dir)
        if last is None:
            logger.warning("no complete checkpoint in %s yet: starting from scratch", training_args.output_dir)
        else:
            logger.warning("resuming from %s", last)
        return last
    if not Path(value).is_dir():
        raise ValueError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    return str(value)


def load_full_checkpoints_with_key_conversion(trainer: Any) -> None:
    """Make `trainer.train(resume_from_checkpoint=...)` restore full-model weights (not only adapters).

    Why: transformers 5.24's `Trainer._load_from_checkpoint` reads `model.safetensors` with
    `load_state_dict(strict=False)` and none of the key conversion `from_pretrained` applies, while `save_pretrained`
    writes Qwen2-VL / Qwen2.5-VL weights under their released names (`visual.*`, `model.layers.*`) rather than the
    module names (`model.visual.*`, `model.language_model.*`). The keys miss each other, transformers only logs them,
    and a resumed full fine-tune (GRPO, or SFT with `use_lora=false`) silently goes on from the *base* weights with the
    restored optimizer state. Here such a checkpoint is loaded with `from_pretrained` (which converts the names) and
    copied into the model strictly; adapter checkpoints and FSDP / DeepSpeed / SageMaker loads are left to transformers.
    """
    original = trainer._load_from_checkpoint

    def _load_from_checkpoint(resume_from_checkpoint: str, model: Any = None) -> None:
        target = trainer.model if model is None else model
        folder = Path(resume_from_checkpoint)
        full = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
        adapter = (folder / "adapter_model.safetensors").is_file() or (folder / "adapter_model.bin").is_file()
        if target is not trainer.model or not full or adapter or not hasattr(target, "load_state_dict"):
            return original(resume_from_checkpoint, model)
        dtype = next(target.parameters()).dtype
        loaded = type(target).from_pretrained(str(folder), dtype=dtype)
        target.load_state_dict(loaded.state_dict(), strict=True)
        del loaded

    trainer._load_from_checkpoint = _load_from_checkpoint


def add_crash_callback(trainer: Any) -> None:
    """Test-only (`trl_mig.crash`): when `TRL_MIG_CRASH_AT` names `train_step` (`train_step:K`: the K-th optimizer
    step this process runs), a callback reaches that crash point at the end of every step. Installs nothing otherwise.
    """
    from ..crash import crash_point, wants

    if not wants("train_step"):
        return
    from transformers import TrainerCallback

    class _CrashPoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            crash_point("train_step")

    trainer.add_callback(_CrashPoints())


def print_table(title: str, summary: Mapping[str, Any]) -> None:
    from ..reporting import print_summary

    print_summary(title, [{"key": k, "value": v} for k, v in summary.items()], ["key", "value"])
