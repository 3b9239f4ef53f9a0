"""`trl-mig sample --config recipe.yaml`: rejection sampling with the merged SFT model -> the RL set.

Parsed by TRL's `TrlParser` from `RejectionSamplingConfig`. Under `accelerate launch` the processes share the prompts
(see `trl_mig.sampling.sampler`); a rerun resumes from the shards already written.
"""

from __future__ import annotations

import sys
from typing import Any


COMMAND = "sample"
HELP = "rejection sampling: N answers per prompt, scored; prompts in the pass-rate band form the RL set"


def dataclasses() -> tuple[type, ...]:
    from ..sampling.config import RejectionSamplingConfig

    return (RejectionSamplingConfig,)


def main(config: Any) -> dict[str, Any]:
    from ..datasets_builders.rl import EmptyRLSetError
    from ..sampling import RejectionSampler

    try:
        return RejectionSampler(config).run()
    except EmptyRLSetError as exc:  # a finished run whose band kept nothing: say what to do, not a traceback
        print(f"trl-mig sample: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
