"""TRL trainer subclasses for multi-image grounding: `MIGSFTTrainer` (cold start) and `MIGGRPOTrainer` (rule-based RL).

Importing this package imports torch, transformers and trl; `import trl_mig` alone does not (PEP 562 in
`trl_mig/__init__.py`).
"""

from __future__ import annotations

from .._lazy import lazy_getattr


_LAZY = {
    "MIGGRPOConfig": "trl_mig.trainers.grpo_config",
    "MIGGRPOTrainer": "trl_mig.trainers.grpo",
    "MIGSFTConfig": "trl_mig.trainers.sft_config",
    "MIGSFTTrainer": "trl_mig.trainers.sft",
    "merge_adapter": "trl_mig.trainers.merge",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
