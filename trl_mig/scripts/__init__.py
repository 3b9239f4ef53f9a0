"""The `trl-mig` stage commands, one module each (as TRL's `trl/scripts/`): script-argument dataclasses, parsed by
TRL's `TrlParser` together with the trainer's config (flags and `--config recipe.yaml`), and a `main`.

Each module exposes `COMMAND`, `HELP`, `dataclasses()` (the dataclass types its parser reads) and `main(*parsed)`.
Heavy imports happen inside `main` so that `trl-mig --help` stays fast.
"""

from __future__ import annotations


#: command -> module, in the order `trl-mig --help` lists them
COMMANDS = {
    "synthesize-cot": "trl_mig.scripts.synthesize_cot",
    "sft": "trl_mig.scripts.sft",
    "merge": "trl_mig.scripts.merge",
    "sample": "trl_mig.scripts.sample",
    "grpo": "trl_mig.scripts.grpo",
    "demo": "trl_mig.scripts.demo",
    "doctor": "trl_mig.scripts.doctor",
    "eval": "trl_mig.scripts.eval",
    "push": "trl_mig.scripts.push",
}
