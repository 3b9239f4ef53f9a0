"""`trl-mig merge --adapter DIR --output_dir DIR`: merge a LoRA checkpoint into its base, standalone (no PEFT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


COMMAND = "merge"
HELP = "merge a LoRA adapter into its base model (model + processor + chat template + card)"


@dataclass
class MergeArguments:
    """Arguments of `trl-mig merge`."""

    adapter: str | None = field(
        default=None, metadata={"help": "Adapter folder (adapter_config.json + weights), e.g. a `trl-mig sft` output."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the merged checkpoint is written."})
    base_model: str | None = field(
        default=None, metadata={"help": "Base to merge into; defaults to the one the adapter's config records."}
    )
    dtype: str = field(default="auto", metadata={"help": "dtype the base is loaded (and the merge saved) in."})

    def __post_init__(self) -> None:
        if not self.adapter or not self.output_dir:
            raise ValueError("--adapter and --output_dir are required")


def dataclasses() -> tuple[type, ...]:
    return (MergeArguments,)


def main(args: MergeArguments) -> dict[str, Any]:
    from ..trainers import merge_adapter
    from .common import print_table

    path = merge_adapter(args.adapter, args.output_dir, base_model=args.base_model, dtype=args.dtype)
    summary = {"adapter": args.adapter, "merged": str(path)}
    print_table("trl-mig merge", summary)
    return summary
