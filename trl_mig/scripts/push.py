"""`trl-mig push PATH --repo_id ORG/NAME`: a built dataset or a checkpoint, with its card, to the Hub.

A folder with `config.json` is a checkpoint (`trl_mig.hub.push_model`); one with `data/*.parquet` a dataset
(`trl_mig.hub.push_dataset`: card first, then data). The token comes from huggingface_hub's usual places
(`HF_TOKEN`, `hf auth login`) and never appears in output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


COMMAND = "push"
POSITIONAL = "path"
HELP = "publish a built dataset or a checkpoint (with its card) to the Hugging Face Hub"


@dataclass
class PushArguments:
    """Arguments of `trl-mig push`."""

    path: str | None = field(default=None, metadata={"help": "The dataset folder or checkpoint folder to push."})
    repo_id: str | None = field(default=None, metadata={"help": "Target repository, `org/name`."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    config_name: str | None = field(
        default=None, metadata={"help": "Datasets: push as this config (subset) of the repo, beside the others."}
    )
    include_benchmark_images: bool = field(
        default=False, metadata={"help": "Datasets: allow pushing a benchmark set's images (refused by default)."}
    )

    def __post_init__(self) -> None:
        if not self.path or not self.repo_id:
            raise ValueError("--path and --repo_id are required")


def dataclasses() -> tuple[type, ...]:
    return (PushArguments,)


def main(args: PushArguments) -> dict[str, Any]:
    from .. import hub
    from .common import print_table

    folder = Path(args.path)
    if (folder / "config.json").is_file():
        url = hub.push_model(folder, args.repo_id, private=args.private)
        kind = "model"
    else:
        url = hub.push_dataset(folder, args.repo_id, private=args.private, config_name=args.config_name,
                               include_benchmark_images=args.include_benchmark_images)  # fmt: skip
        kind = "dataset"
    summary = {"kind": kind, "repo_id": args.repo_id, "url": url}
    print_table("trl-mig push", summary)
    return summary
