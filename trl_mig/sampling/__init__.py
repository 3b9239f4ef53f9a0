"""Rejection sampling with the merged SFT model: N answers per prompt, scored with the RL rewards -> the RL set.

`trl-mig sample --config recipe.yaml` runs `RejectionSampler`; `trl_mig.datasets_builders.rl` turns its shards into
the RL set. The generation backends (`HFGenerator`, `VLLMGenerator`) also serve the evaluator. Importing this
package is cheap; the classes load torch, transformers and datasets when first used.
"""

from __future__ import annotations

from .._lazy import lazy_getattr


_LAZY = {
    "RejectionSamplingConfig": "trl_mig.sampling.config",
    "RejectionSampler": "trl_mig.sampling.sampler",
    "score_samples": "trl_mig.sampling.sampler",
    "HFGenerator": "trl_mig.sampling.generation",
    "VLLMGenerator": "trl_mig.sampling.generation",
    "make_generator": "trl_mig.sampling.generation",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
