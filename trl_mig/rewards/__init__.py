"""Rule-based rewards for multi-image grounding, with TRL's reward signature.

Ready-to-use callables (pass them to `GRPOTrainer(reward_funcs=...)` or by dotted path,
`trl grpo --reward_funcs trl_mig.rewards.iou_reward`) and the classes to configure others. Importing this module
loads neither torch, transformers nor trl.

Defaults follow the closest published recipe (UniVG-R1): `format_reward` + `iou_reward` with equal weights.
"""

from .base import GroundingReward
from .format import FormatReward
from .grounding import ImageIndexReward, IoUReward, IoUThresholdReward, MultiBoxIoUReward


format_reward = FormatReward()
iou_reward = IoUReward()
iou_threshold_reward = IoUThresholdReward(0.5)
image_index_reward = ImageIndexReward()
multi_box_iou_reward = MultiBoxIoUReward()

#: name -> ready-made reward, for CLIs and recipes (`reward_funcs: [format_reward, iou_reward]`).
REWARD_FUNCS = {
    "format_reward": format_reward,
    "iou_reward": iou_reward,
    "iou_threshold_reward": iou_threshold_reward,
    "image_index_reward": image_index_reward,
    "multi_box_iou_reward": multi_box_iou_reward,
}

DEFAULT_REWARD_FUNCS = ("format_reward", "iou_reward")

__all__ = [
    "DEFAULT_REWARD_FUNCS",
    "REWARD_FUNCS",
    "FormatReward",
    "GroundingReward",
    "ImageIndexReward",
    "IoUReward",
    "IoUThresholdReward",
    "MultiBoxIoUReward",
    "format_reward",
    "image_index_reward",
    "iou_reward",
    "iou_threshold_reward",
    "multi_box_iou_reward",
]
