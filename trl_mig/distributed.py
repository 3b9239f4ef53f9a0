"""Settings shared by the loops that form their own process group (`sample`, `synthesize-cot`, `eval`).

The SFT and GRPO trainers get theirs from `TrainingArguments`; these loops make a `PartialState` themselves, so the
one setting they share is declared once here and means what `TrainingArguments.ddp_timeout` means.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


#: torch's default process-group timeout for gloo, and transformers' `ddp_timeout` default
DEFAULT_DDP_TIMEOUT = 1800


def ddp_timeout_field() -> Any:
    """The `ddp_timeout` dataclass field (seconds; the `--ddp_timeout` flag), with its help text."""
    return field(
        default=DEFAULT_DDP_TIMEOUT,
        metadata={"help": "Seconds a process waits for the others (forming the group, at each barrier) before "
                  "failing, as `TrainingArguments.ddp_timeout`: bounds the wait on a hung peer or a dead host (a "
                  "peer killed on this host is seen at once). Keep it above the longest wait for a slower process."},
    )  # fmt: skip


def check_ddp_timeout(value: int) -> None:
    """Refuse a timeout that is not a positive number of seconds."""
    if value <= 0:
        raise ValueError(f"ddp_timeout must be > 0 seconds, got {value}")
