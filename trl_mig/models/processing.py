"""Image-only Qwen-VL processors: transformers' own processors without the video processor.

transformers' `Qwen2VLProcessor`, `Qwen2_5_VLProcessor` and `Qwen3VLProcessor` take a video processor, and loading one needs
torchvision, which the CPU installs of this project leave out (the index's build breaks beside the CPU torch). These
subclasses only drop that attribute: text and image processing, the `<|image_pad|>` expansion, the chat template and
saving are the parent's code, unchanged. Checkpoints saved with them name the class in `processor_config.json`;
`AutoProcessor` finds it once [`register_processors`] has run, which importing `trl_mig.models` does.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor, PreTrainedConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor


class _ImageOnlyProcessorMixin:
    """Declares the sub-processors as `image_processor` + `tokenizer` only.

    `ProcessorMixin.get_attributes` (transformers 5.24) reads the sub-processor names from the `__init__` signature:
    this `__init__` is what removes `video_processor` from saving, loading and validation.
    """

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs):
        # The Qwen parents pass (image_processor, tokenizer, video_processor) on to `ProcessorMixin.__init__`, which
        # pairs positional arguments with our two attributes only: the `None` video processor is dropped there.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def __call__(self, images: Any = None, text: Any = None, videos: Any = None, **kwargs):
        if videos is not None:
            raise ValueError(
                f"{type(self).__name__} has no video processor (it would need torchvision); pass images only, or "
                "load a checkpoint saved with transformers' own processor class."
            )
        return super().__call__(images=images, text=text, **kwargs)


class MIGQwen2_5_VLProcessor(_ImageOnlyProcessorMixin, Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` with an image processor and a tokenizer, no video processor (no torchvision needed).

    Args:
        image_processor (`Qwen2VLImageProcessorPil`): resizes with `smart_resize` and patches the images.
        tokenizer (`Qwen2Tokenizer`): must know `<|image_pad|>` and `<|video_pad|>`.
        chat_template (`str`, *optional*): Jinja chat template, saved as `chat_template.jinja`.
    """


class MIGQwen2VLProcessor(_ImageOnlyProcessorMixin, Qwen2VLProcessor):
    """`Qwen2VLProcessor` with an image processor and a tokenizer, no video processor (no torchvision needed).

    Args:
        image_processor (`Qwen2VLImageProcessorPil`): resizes with `smart_resize` and patches the images.
        tokenizer (`Qwen2Tokenizer`): must know `<|image_pad|>` and `<|video_pad|>`.
        chat_template (`str`, *optional*): Jinja chat template, saved as `chat_template.jinja`.
    """


class MIGQwen3VLProcessor(_ImageOnlyProcessorMixin, Qwen3VLProcessor):
    """`Qwen3VLProcessor` with an image processor and a tokenizer, no video processor (no torchvision needed).

    Args:
        image_processor (`Qwen2VLImageProcessorPil`): 16-px patches, as Qwen3-VL's; resizes with `smart_resize`.
        tokenizer (`Qwen2Tokenizer`): must know `<|image_pad|>` and `<|video_pad|>`.
        chat_template (`str`, *optional*): Jinja chat template, saved as `chat_template.jinja`.
    """


class _MIGQwen2_5_VLProcessorKey(PreTrainedConfig):
    """Registry key only: no model has this config, so no checkpoint ever resolves to the processor through it."""

    model_type = "trl_mig_qwen2_5_vl_processor"


class _MIGQwen2VLProcessorKey(PreTrainedConfig):
    """Registry key only: no model has this config, so no checkpoint ever resolves to the processor through it."""

    model_type = "trl_mig_qwen2_vl_processor"


class _MIGQwen3VLProcessorKey(PreTrainedConfig):
    """Registry key only: no model has this config, so no checkpoint ever resolves to the processor through it."""

    model_type = "trl_mig_qwen3_vl_processor"


#: processor class -> the private config class it is registered under with `AutoProcessor`.
PROCESSOR_REGISTRY_KEYS: dict[type, type[PreTrainedConfig]] = {
    MIGQwen2_5_VLProcessor: _MIGQwen2_5_VLProcessorKey,
    MIGQwen2VLProcessor: _MIGQwen2VLProcessorKey,
    MIGQwen3VLProcessor: _MIGQwen3VLProcessorKey,
}


def register_processors() -> None:
    """Make `AutoProcessor.from_pretrained` find our processor classes by the name saved in a checkpoint.

    `AutoProcessor` (transformers 5.24) turns the `processor_class` saved in `processor_config.json` into a class by
    searching its built-in names, then the classes registered with `AutoProcessor.register(config_class, cls)`.
    Registering under Qwen's own config classes would need `exist_ok=True` and would reroute every Qwen2-VL /
    Qwen2.5-VL checkpoint whose files name no processor class; a private key that no model config is adds our class
    to the name lookup and changes nothing else. Idempotent.
    """
    for processor_class, key in PROCESSOR_REGISTRY_KEYS.items():
        AutoProcessor.register(key, processor_class, exist_ok=True)
