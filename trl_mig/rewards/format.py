"""The format reward: the think/answer structure is there and the answer can be read."""

from __future__ import annotations

import re
from typing import Any

from ..parsing import completion_text, parse_answer


_THINK_ANSWER_RE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_ANSWER_ONLY_RE = re.compile(r"\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


class FormatReward:
    """1.0 when a completion is `<think>...</think><answer>...</answer>` and the answer parses, else 0.0.

    Each tag must appear exactly once, in that order, with nothing but whitespace around the two blocks, a non-empty
    thought, and an answer that `trl_mig.parsing.parse_answer` reads (a box, or the explicit "no target" answer).
    Applies to every row, labelled or not.

    Args:
        require_think (`bool`, *optional*, defaults to `True`):
            With `False` (the `mig-direct-v1` template), the completion is a single `<answer>...</answer>` block.

    Example:
    ```python
    >>> format_reward = FormatReward()
    >>> format_reward(["<think>cat left</think><answer>[1, 2, 30, 40]</answer>", "[1, 2, 30, 40]"])
    [1.0, 0.0]

    ```
    """

    def __init__(self, require_think: bool = True) -> None:
        self.require_think = require_think
        self.__name__ = "format_reward" if require_think else "format_reward_answer_only"

    def __repr__(self) -> str:
        return f"FormatReward(require_think={self.require_think})"

    def _match(self, text: str) -> re.Match | None:
        """The layout match when the tags and their layout are right (the answer not yet read), else `None`."""
        # tag counts first: the lazy layout regexes backtrack quadratically over repeated tags ("</think> <answer>"
        # x 10k took 20 s), and are linear once each tag is known to occur at most once
        counts = [text.count(tag) for tag in _TAGS]
        if self.require_think:
            if counts != [1, 1, 1, 1]:
                return None
            match = _THINK_ANSWER_RE.fullmatch(text)
            ok = match is not None and match.group(1).strip() != ""
        else:
            if counts != [0, 0, 1, 1]:
                return None
            match = _ANSWER_ONLY_RE.fullmatch(text)
            ok = match is not None
        return match if ok else None

    def layout_ok(self, text: str) -> bool:
        """Whether the tags and their layout are right, without reading the answer.

        With the layout right, the answer block is exactly what `parse_answer(text)` reads (`answer_region`), so
        `score(text) == (layout_ok(text) and parse_answer(text) is not None)`: the metrics use this to parse each
        answer once.
        """
        return self._match(text) is not None

    def score(self, completion: Any) -> float:
        """1.0 or 0.0 for one completion (string or messages)."""
        match = self._match(completion_text(completion))
        return 1.0 if match is not None and parse_answer(match.group(match.lastindex)) is not None else 0.0

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float]:
        """Args:
            completions (`list[str]` or `list[list[dict]]`): completions, as TRL passes them.
            **kwargs: the other columns TRL passes (`prompts`, `solution`, `trainer_state`, ...), ignored: accepting
                them is what lets TRL call every reward the same way.

        Returns:
            `list[float]`: one 1.0/0.0 per completion.
        """
        return [self.score(c) for c in completions]
