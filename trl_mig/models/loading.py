"""Loading a processor with the pixel limits a recipe asks for (the commands and the sampler share it)."""

from __future__ import annotations

from typing import Any


def load_processor(name: str, min_pixels: int | None = None, max_pixels: int | None = None, **kwargs: Any) -> Any:
    """`AutoProcessor.from_pretrained(name)` with the image pixel limits set when given.

    Qwen-VL image processors (transformers 5.24) keep the limits in `size = {"shortest_edge": min_pixels,
    "longest_edge": max_pixels}`; they decide the image token count and, for `qwen2_5_vl`, the coordinates the prompts
    state and the answers use. The released Qwen2.5-VL-7B-Instruct processor allows 12,845,056 pixels per image;
    published recipes train with far fewer (UniVG-R1: 401,408 for SFT, 640,000 for GRPO).
    """
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(name, **kwargs)
    if min_pixels is None and max_pixels is None:
        return processor
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if image_processor is None or size is None or "longest_edge" not in size:
        raise ValueError(f"{name}: its processor has no Qwen-VL pixel limits to set (min_pixels/max_pixels)")
    size = dict(size)
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    if not 0 < size["shortest_edge"] <= size["longest_edge"]:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {size['shortest_edge']} and {size['longest_edge']}")
    image_processor.size = size
    return processor
