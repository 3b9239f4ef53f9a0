"""MIG-Bench: where each record's target image is, per task (the rules of `data/mig_bench/README.md`).

The full builder (parquet + card) grows here; this module already owns the per-task target-image rule, which the
benchmark file never states as a field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from trl_mig.parsing import parse_image_reference


#: tasks whose target is always the same image (0-based): `region` asks for the source image, the pair tasks for
#: the second image ("second image", "image-2")
FIXED_TARGET = {"region": 0, "correspondence": 1, "view_diff": 1, "refer_grounding": 1, "reasoning": 1}
#: tasks whose question says "... in the Nth image" (N 1-based, written "1th", "2th"); the last such phrase counts
#: (object tracking questions also mention "the first image" for the reference box)
STATED_IN_QUESTION = ("common_object", "multi_view", "object_tracking")
_NTH_IMAGE_RE = re.compile(r"\bin the (\d+)\s*(?:st|nd|rd|th) image", re.IGNORECASE)
UNKNOWN_TARGET = -1


def default_annotations() -> Path:
    """The MIG-Bench annotation file shipped in the wheel (MIT, licence beside it)."""
    return Path(str(resources.files("trl_mig") / "data" / "mig_bench" / "MIG_data.json"))


def target_image_for(record: Mapping[str, Any], position: int | None = None) -> int:
    """0-based target image of a MIG-Bench record; `-1` for `diff` (the benchmark does not say).

    Raises `ValueError` naming the record when its task is unknown or the text that should name the image does not.

    Example:
    ```python
    >>> target_image_for({"task": "multi_view", "question": "... locate this object in the 2th image. "})
    1
    >>> target_image_for({"task": "group_grounding", "additional_info": "It is in the first image. ..."})
    0

    ```
    """
    task = record.get("task")
    label = f"MIG-Bench record {position}" if position is not None else "MIG-Bench record"
    if task in FIXED_TARGET:
        return FIXED_TARGET[task]
    if task == "diff":
        return UNKNOWN_TARGET
    if task in STATED_IN_QUESTION:
        found = _NTH_IMAGE_RE.findall(record.get("question", ""))
        if found:
            return int(found[-1]) - 1
        raise ValueError(f"{label} ({task}): the question names no 'Nth image': {record.get('question')!r}")
    if task == "group_grounding":
        info = str(record.get("additional_info", "")).split("<|box_start|>")[0]
        index = parse_image_reference(info)
        if index is not None and index >= 0:
            return index
        raise ValueError(f"{label} (group_grounding): `additional_info` names no image: {info!r}")
    raise ValueError(
        f"{label}: unknown task {task!r}; known: {sorted([*FIXED_TARGET, 'diff', *STATED_IN_QUESTION, 'group_grounding'])}"
    )
