"""Grounding rewards: IoU, thresholded IoU, image index and multi-box matching (DESIGN.md section 4).

All read the same columns (`solution`, `target_image`, `image_sizes`, optional `resized_sizes` and `frame`) and
score answers through `trl_mig.scoring`, the module the metric uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame
from ..scoring import score_multi, score_single
from .base import GroundingReward


class IoUReward(GroundingReward):
    """Continuous IoU of the first predicted box with the first gold box; 0 in the wrong image.

    Returns `None` for unlabeled rows (`solution` is `None`) and for "no target" rows (`solution == []`: use
    `MultiBoxIoUReward` for those). An answer naming no image, or image 0, when the target is known scores 0. See
    `GroundingReward` for the arguments.

    Example:
    ```python
    >>> reward = IoUReward(frame="qwen2_vl")
    >>> answers = ['{"image": 2, "bbox_2d": [100, 100, 500, 500]}', '{"image": 1, "bbox_2d": [100, 100, 500, 500]}']
    >>> reward(answers + ["nothing"], solution=[[[0.1, 0.1, 0.5, 0.5]]] * 2 + [None], target_image=[[1], [1], None])
    [1.0, 0.0, None]

    ```
    """

    base_name = "iou_reward"

    def __call__(
        self,
        completions: list[Any],
        solution: Sequence[Any] | None = None,
        target_image: Sequence[Any] | None = None,
        image_sizes: Sequence[Any] | None = None,
        resized_sizes: Sequence[Any] | None = None,
        frame: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """Args:
            completions (`list[str]` or `list[list[dict]]`): completions, as TRL passes them.
            solution (`list`): per row, canonical gold boxes (`None` = unlabeled, `[]` = no target).
            target_image (`list`, *optional*): per row, the 0-based image of each gold box (`-1` = unknown).
            image_sizes (`list`, *optional*): per row, original `(width, height)` of each image.
            resized_sizes (`list`, *optional*): per row, the processor's `(width, height)`; wins when present.
            frame (`list[str]`, *optional*): per row, the answer frame; overrides the instance's.
            **kwargs: other columns and TRL's extras (`prompts`, `trainer_state`, `log_metric`, ...), ignored.

        Returns:
            `list[float | None]`: one value in `[0, 1]` (or `None`) per completion.
        """
        rewards: list[float | None] = []
        for row in self.rows(completions, solution, target_image, image_sizes, resized_sizes, frame, kwargs):
            if not row.gold:
                rewards.append(None)
                continue
            outcome = score_single(
                row.completion, row.gold[0], row.targets[0], row.spec, row.image_sizes, row.resized_sizes
            )
            rewards.append(self.value(outcome.strict_iou))
        return rewards

    def value(self, strict_iou: float) -> float:
        """The reward paid for an image-aware IoU."""
        return strict_iou


class IoUThresholdReward(IoUReward):
    """1.0 when the IoU with the gold box reaches `threshold` in the right image, else 0.0.

    Args:
        threshold (`float`, *optional*, defaults to `0.5`): IoU needed, in `(0, 1]`.
        Other arguments as in `GroundingReward`.

    Example:
    ```python
    >>> IoUThresholdReward(0.7).__name__
    'iou_threshold_reward_0.7'

    ```
    """

    base_name = "iou_threshold_reward"

    def __init__(
        self,
        threshold: float = 0.5,
        frame: Frame | str = Frame.QWEN2_5_VL,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        factor: int = DEFAULT_FACTOR,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        super().__init__(frame, min_pixels, max_pixels, factor)

    def _name_suffix(self) -> str:
        return f"_{self.threshold:g}" + super()._name_suffix()

    def value(self, strict_iou: float) -> float:
        return 1.0 if strict_iou >= self.threshold else 0.0


class ImageIndexReward(GroundingReward):
    """1.0 when the answer names the image the (first) target is in, else 0.0.

    `None` when the row is unlabeled, has no target, or its target image is unknown (`-1`). The frame does not matter
    here; the argument exists so every grounding reward is configured alike.

    Example:
    ```python
    >>> ImageIndexReward()(["Image-2: [1, 2, 3, 4]", "[1, 2, 3, 4]", "x"], solution=[[[0, 0, 1, 1]]] * 3,
    ...                    target_image=[[1], [1], [-1]], image_sizes=[[(10, 10), (10, 10)]] * 3)
    [1.0, 0.0, None]

    ```
    """

    base_name = "image_index_reward"

    def __call__(
        self,
        completions: list[Any],
        solution: Sequence[Any] | None = None,
        target_image: Sequence[Any] | None = None,
        image_sizes: Sequence[Any] | None = None,
        resized_sizes: Sequence[Any] | None = None,
        frame: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """Same columns as `IoUReward.__call__`."""
        rewards: list[float | None] = []
        for row in self.rows(completions, solution, target_image, image_sizes, resized_sizes, frame, kwargs):
            if not row.gold or row.targets[0] < 0:
                rewards.append(None)
                continue
            outcome = score_single(row.completion, row.gold[0], row.targets[0], row.spec, row.image_sizes,
                                   row.resized_sizes)  # fmt: skip
            rewards.append(1.0 if outcome.right_image else 0.0)
        return rewards


class MultiBoxIoUReward(GroundingReward):
    """Several gold boxes across images: optimal one-to-one matching per image, summed IoU over max(#pred, #gold).

    A "no target" row (`solution == []`) pays 1.0 for the explicit `{"image": null, "bbox_2d": []}` answer and 0.0
    for any box; `None` only for unlabeled rows.

    Example:
    ```python
    >>> reward = MultiBoxIoUReward(frame="normalized")
    >>> reward(['[{"image": 1, "bbox_2d": [0, 0, 0.5, 0.5]}, {"image": 2, "bbox_2d": [0.5, 0.5, 1, 1]}]',
    ...         '{"image": null, "bbox_2d": []}'],
    ...        solution=[[[0.5, 0.5, 1, 1], [0, 0, 0.5, 0.5]], []], target_image=[[1, 0], []])
    [1.0, 1.0]

    ```
    """

    base_name = "multi_box_iou_reward"

    def __call__(
        self,
        completions: list[Any],
        solution: Sequence[Any] | None = None,
        target_image: Sequence[Any] | None = None,
        image_sizes: Sequence[Any] | None = None,
        resized_sizes: Sequence[Any] | None = None,
        frame: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """Same columns as `IoUReward.__call__`."""
        return [
            None
            if row.gold is None
            else score_multi(row.completion, row.gold, row.targets, row.spec, row.image_sizes, row.resized_sizes)
            for row in self.rows(completions, solution, target_image, image_sizes, resized_sizes, frame, kwargs)
        ]
