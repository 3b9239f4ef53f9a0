"""The `trl-mig` command. Subcommands register through `make_parser(subparsers)`; heavy imports happen in handlers.

`build NAME` runs a dataset builder; `sft`, `merge`, `sample`, `grpo` and `demo` are the stage commands of
`trl_mig.scripts` (TRL's parser over trl-mig's dataclasses, `--config recipe.yaml`); later stages join the registry.
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

    from .datasets_builders import BUILDERS, get_builder

    if args.name in (None, "-h", "--help"):  # `trl-mig build --help`: the builder list, not an argparse error
        print("usage: trl-mig build NAME [--config recipe.yaml] [builder flags]\n")
        print(f"builders: {', '.join(sorted(BUILDERS))}; `trl-mig build NAME --help` lists a builder's flags")
        asked = args.name is not None or any(a in ("-h", "--help") for a in args.builder_args)
        return 0 if asked else 2
    builder = get_builder(args.name)
    parser = TrlParser((builder.BuildArguments,), prog=f"trl-mig build {args.name}")
    (build_args,) = parser.parse_args_and_config(args.builder_args)
    result = builder.build(build_args)
    for key, value in result.items():  # stdout, one `key: value` per line: what scripts read back
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
    parser.add_argument("name", nargs="?", help="builder name, e.g. mig_bench or synthetic")
    parser.add_argument("builder_args", nargs=argparse.REMAINDER, help="the builder's flags")
    parser.set_defaults(handler=_build)


def _stage(args: argparse.Namespace) -> int:
    """`trl-mig STAGE [--config recipe.yaml] [flags]`: the stage's dataclasses, parsed by TRL's `TrlParser`."""
    import importlib

    from trl import TrlParser

    from .scripts import COMMANDS

    module = importlib.import_module(COMMANDS[args.command])
    parser = TrlParser(module.dataclasses(), prog=f"trl-mig {args.command}")
    stage_args = list(args.stage_args)
    positional = getattr(module, "POSITIONAL", None)  # e.g. `trl-mig push PATH`: the first bare word is `--path`
    if positional and stage_args and not stage_args[0].startswith("-"):
        stage_args[:1] = [f"--{positional}", stage_args[0]]
    parsed = parser.parse_args_and_config(stage_args)
    module.main(*parsed)
    return 0


def make_stage_parsers(subparsers: argparse._SubParsersAction) -> None:
    """One subcommand per stage module (`trl_mig.scripts.COMMANDS`); `trl-mig STAGE --help` lists its flags."""
    import importlib

    from .scripts import COMMANDS

    for command, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)  # light: dataclasses import trl only when asked for
        parser = subparsers.add_parser(
            command, help=module.HELP, description=f"{module.HELP}. `trl-mig {command} --help` lists the flags; "
            "`--config recipe.yaml` sets any of them.", add_help=False,
        )  # fmt: skip
        parser.add_argument("stage_args", nargs=argparse.REMAINDER, help="the stage's flags (and --config)")
        parser.set_defaults(handler=_stage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-mig", description="Multi-image grounding post-training on top of TRL (arXiv 2507.00748)."
    )
    parser.add_argument("--version", action="version", version=f"trl-mig {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for make in (make_build_parser, make_stage_parsers, make_env_parser):
        make(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # argparse's REMAINDER does not take a leading `--flag` (`trl-mig sft --config r.yaml`): stage flags that the
    # subparser does not know come back as extras and go to the stage's own parser
    args, extras = parser.parse_known_args(argv)
    if extras:
        if hasattr(args, "stage_args"):
            args.stage_args = [*extras, *args.stage_args]
        elif hasattr(args, "builder_args"):  # `trl-mig build --help`, `trl-mig build NAME --flag ...`
            args.builder_args = [*extras, *args.builder_args]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
