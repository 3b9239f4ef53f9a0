"""The `trl-mig` command. Subcommands register through `make_parser(subparsers)`; heavy imports happen in handlers.

Stages (`build`, `sft`, `sample`, `grpo`, `eval`, ...) join this registry as they land (DESIGN.md section 1).
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

from . import __version__


_ENV_PACKAGES = (
    "torch", "transformers", "trl", "peft", "datasets", "accelerate", "huggingface_hub", "evaluate",
    "numpy", "scipy", "pillow", "vllm",
)  # fmt: skip


def _env(args: argparse.Namespace) -> int:
    """Print versions for bug reports (what `trl env` does for TRL)."""
    print(f"trl-mig: {__version__}")
    print(f"python: {platform.python_version()} ({platform.platform()})")
    for name in _ENV_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name}: {version}")
    return 0


def make_env_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("env", help="print the versions of trl-mig and the libraries it runs on")
    parser.set_defaults(handler=_env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-mig", description="Multi-image grounding post-training on top of TRL (arXiv 2507.00748)."
    )
    parser.add_argument("--version", action="version", version=f"trl-mig {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for make in (make_env_parser,):
        make(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
