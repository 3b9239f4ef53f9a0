"""trl-mig's model-side classes; importing this module registers its processors with `AutoProcessor`.

This is the one module to import before loading a checkpoint saved with a trl-mig processor class (the tiny models
of [`trl_mig.testing`]): a `trl grpo` run, a `transformers serve` server or a script does `import trl_mig.models`
first. Real Qwen-VL checkpoints name transformers' own classes and load the same with or without it.
`trl_mig/__init__.py` only imports this module lazily, so `import trl_mig.rewards` stays free of torch and
transformers.
"""

from .loading import load_processor
from .processing import (
    PROCESSOR_REGISTRY_KEYS,
    MIGQwen2_5_VLProcessor,
    MIGQwen2VLProcessor,
    MIGQwen3VLProcessor,
    register_processors,
)


register_processors()

__all__ = [
    "PROCESSOR_REGISTRY_KEYS",
    "MIGQwen2VLProcessor",
    "MIGQwen3VLProcessor",
    "MIGQwen2_5_VLProcessor",
    "load_processor",
    "register_processors",
]
