"""The one coordinate layer: frames, conversions, `smart_resize`, IoU and matching (DESIGN.md section 2)."""

from .boxes import Box, box_iou, iou, is_valid_box, match_boxes, repair_box
from .frames import MODEL_TYPE_FRAMES, Frame, frame_for_model, from_canonical, to_canonical
from .resize import (
    DEFAULT_FACTOR,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    MAX_ASPECT_RATIO,
    QWEN2_5_VL_RELEASED_MAX_PIXELS,
    resized_size,
    smart_resize,
)


__all__ = [
    "DEFAULT_FACTOR",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_PIXELS",
    "MAX_ASPECT_RATIO",
    "MODEL_TYPE_FRAMES",
    "QWEN2_5_VL_RELEASED_MAX_PIXELS",
    "Box",
    "Frame",
    "box_iou",
    "frame_for_model",
    "from_canonical",
    "iou",
    "is_valid_box",
    "match_boxes",
    "repair_box",
    "resized_size",
    "smart_resize",
    "to_canonical",
]
