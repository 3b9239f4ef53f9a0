"""`trl-mig demo [--output_dir DIR]`: the whole pipeline offline on the embedded tiny default (see `trl_mig.demo`)."""

from __future__ import annotations

from typing import Any


COMMAND = "demo"
HELP = "run the whole method offline on a tiny model and procedural data (report, plot, cards, pictures)"


def dataclasses() -> tuple[type, ...]:
    from ..demo_config import DemoArguments

    return (DemoArguments,)


def main(args: Any) -> dict[str, Any]:
    from ..demo import run_demo

    return run_demo(args)
