"""Dataset builders: any source -> schema rows (DESIGN.md section 3) as parquet + dataset card.

Lives at the top of the repository and ships in the wheel as `trl_mig.datasets_builders`, so `trl-mig build` works
for pip users. Builders import `trl_mig.geometry`, `trl_mig.parsing` and `trl_mig.schema` (never the other way round).

Each builder is a module exposing `BuildArguments` (a dataclass whose fields carry `metadata={"help": ...}`) and
`build(args) -> dict` (what it wrote); `BUILDERS` maps the names `trl-mig build NAME` accepts to those modules.
"""

from __future__ import annotations

import importlib
from types import ModuleType


BUILDERS: dict[str, str] = {
    "mig_bench": "trl_mig.datasets_builders.mig_bench",
    "synthetic": "trl_mig.datasets_builders.synthetic",
    "rl": "trl_mig.datasets_builders.rl",
    "cot": "trl_mig.datasets_builders.cot",
    "mc_bench": "trl_mig.datasets_builders.mc_bench",
    "mgrounding": "trl_mig.datasets_builders.mgrounding",
}


def get_builder(name: str) -> ModuleType:
    """The builder module for `name` (either spelling: `mig-bench` / `mig_bench`)."""
    key = name.strip().lower().replace("-", "_")
    if key not in BUILDERS:
        raise ValueError(f"unknown builder {name!r}; available: {', '.join(sorted(BUILDERS))}")
    return importlib.import_module(BUILDERS[key])
