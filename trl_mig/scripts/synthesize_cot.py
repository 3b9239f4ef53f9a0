"""`trl-mig synthesize-cot --config recipe.yaml`: a teacher writes chain-of-thought; right traces form the CoT set.

Parsed by TRL's `TrlParser` from `SynthesisConfig`. A rerun with the same settings resumes from the shards written.
"""

from __future__ import annotations

import sys
from typing import Any


COMMAND = "synthesize-cot"
HELP = "cold-start CoT: a teacher (OpenAI-compatible endpoint or local model) answers, right traces are kept"


def dataclasses() -> tuple[type, ...]:
    from ..synthesis.config import SynthesisConfig

    return (SynthesisConfig,)


def main(config: Any) -> dict[str, Any]:
    from ..datasets_builders.cot import EmptyCoTSetError
    from ..synthesis.synthesizer import CoTSynthesizer
    from .common import print_table

    try:
        result = CoTSynthesizer(config).run()
    except EmptyCoTSetError as exc:
        print(f"trl-mig synthesize-cot: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    print_table("trl-mig synthesize-cot", {k: v for k, v in result.items() if k != "per_task"})
    return result
