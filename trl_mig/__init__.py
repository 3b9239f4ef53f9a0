"""trl-mig: multi-image grounding post-training for multimodal LLMs, on top of TRL.

Implements https://huggingface.co/papers/2507.00748. This module stays lazy (PEP 562): `import trl_mig.rewards`
loads neither torch, transformers nor trl; heavy names are imported on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lazy import lazy_getattr


__version__ = "0.1.0.dev0"

# public name -> submodule that defines it; grows as trainers and models land
_LAZY: dict[str, str] = {
    "Frame": "trl_mig.geometry",
    "box_iou": "trl_mig.geometry",
    "frame_for_model": "trl_mig.geometry",
    "parse_answer": "trl_mig.parsing",
    "Prediction": "trl_mig.parsing",
    "format_reward": "trl_mig.rewards",
    "iou_reward": "trl_mig.rewards",
    "iou_threshold_reward": "trl_mig.rewards",
    "image_index_reward": "trl_mig.rewards",
    "multi_box_iou_reward": "trl_mig.rewards",
    "compute_grounding_metrics": "trl_mig.metrics",
    "FrameSpec": "trl_mig.scoring",
    "MIGGRPOConfig": "trl_mig.trainers",
    "MIGGRPOTrainer": "trl_mig.trainers",
    "MIGSFTConfig": "trl_mig.trainers",
    "MIGSFTTrainer": "trl_mig.trainers",
    "merge_adapter": "trl_mig.trainers",
    "ground": "trl_mig.inference",
    "GroundingResult": "trl_mig.inference",
    "get_template": "trl_mig.templates",
    "render_prompt": "trl_mig.templates",
    "render_completion": "trl_mig.templates",
    "render_answer": "trl_mig.templates",
    "render_dataset": "trl_mig.templates",
    "render_info": "trl_mig.templates",
    "RenderInfo": "trl_mig.templates",
    # importing trl_mig.models registers these processor classes with AutoProcessor
    "MIGQwen2_5_VLProcessor": "trl_mig.models",
    "MIGQwen2VLProcessor": "trl_mig.models",
    "MIGQwen3VLProcessor": "trl_mig.models",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .geometry import Frame, box_iou, frame_for_model
    from .inference import GroundingResult, ground
    from .metrics import compute_grounding_metrics
    from .parsing import Prediction, parse_answer
    from .rewards import format_reward, image_index_reward, iou_reward, iou_threshold_reward, multi_box_iou_reward
    from .scoring import FrameSpec
    from .templates import (
        RenderInfo,
        get_template,
        render_answer,
        render_completion,
        render_dataset,
        render_info,
        render_prompt,
    )


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
