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


def _build(args: argparse.Namespace) -> int:
    """`trl-mig build NAME [--config recipe.yaml] [builder flags]`: the builder's own dataclass, parsed by TRL."""
    from trl import TrlParser

    from .datasets_builders import get_builder

    builder = get_builder(args.name)
    parser = TrlParser((builder.BuildArguments,), prog=f"trl-mig build {args.name}")
    (build_args,) = parser.parse_args_and_config(args.builder_args)
    result = builder.build(build_args)
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


def make_build_parser(subparsers: argparse._SubParsersAction) -> None:
    from .datasets_builders import BUILDERS

    parser = subparsers.add_parser(
        "build",
        help="turn a source into a schema dataset (parquet + card)",
        description=f"Builders: {', '.join(sorted(BUILDERS))} (either spelling). `trl-mig build NAME --help` lists "
        "a builder's flags.",
        add_help=False,
    )
    parser.add_argument("name", help="builder name, e.g. mig_bench or synthetic")
    parser.add_argument("builder_args", nargs=argparse.REMAINDER, help="the builder's flags")
    parser.set_defaults(handler=_build)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-mig", description="Multi-image grounding post-training on top of TRL (arXiv 2507.00748)."
    )
    parser.add_argument("--version", action="version", version=f"trl-mig {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for make in (make_build_parser, make_env_parser):
        make(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
