"""Tiny offline Qwen-VL models with random weights, for tests, the demo and quick experiments.

Everything is built locally: a byte-level BPE tokenizer trained on a fixed corpus, transformers' PIL image processor,
TRL's Qwen2.5-VL chat template, and a model from transformers' own config class. No Hub access, no torchvision.
A saved tiny checkpoint loads with `AutoProcessor` / `AutoModelForImageTextToText.from_pretrained` like a released
one, after `import trl_mig.models` (which registers the processor class it names). Weights depend only on the seed.

Build times are a few tens of milliseconds; what costs is importing torch and transformers, and writing to disk,
so [`tiny_checkpoint`] saves each (family, size, seed) once per process.

Example:
```python
>>> from trl_mig.testing import build_tiny_model, build_tiny_processor
>>> processor = build_tiny_processor("qwen2_5_vl")
>>> model = build_tiny_model("qwen2_5_vl", size="tiny", seed=0, processor=processor)
>>> model.config.model_type, processor.tokenizer.padding_side
('qwen2_5_vl', 'left')

```
"""

from __future__ import annotations

import atexit
import importlib.resources
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .models import MIGQwen2_5_VLProcessor, MIGQwen2VLProcessor, MIGQwen3VLProcessor
from .models.tiny import FAMILIES, PRESETS, TinyModelConfig, normalize_family, tiny_qwen_vl_config
from .models.tokenizer import QWEN_VL_SPECIAL_TOKENS, build_byte_level_tokenizer, default_corpus


if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, ProcessorMixin


#: image processor limits of tiny processors: 2x2 to 4x4 merged patches per image, so a test prompt stays short.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 112 * 112

_PROCESSOR_CLASSES = {
    "qwen2_5_vl": MIGQwen2_5_VLProcessor,
    "qwen2_vl": MIGQwen2VLProcessor,
    "qwen3_vl": MIGQwen3VLProcessor,
}
_MODEL_CLASS_NAMES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
}


def qwen_vl_chat_template() -> str:
    """Return TRL's copy of the Qwen2.5-VL chat template (Qwen2-VL ships the same bytes).

    Byte-identical to the released template, so TRL recognises it and swaps in its training variant (with
    `{% generation %}` markers) for `assistant_only_loss`. It renders every `{"type": "image"}` part of a message
    as one `<|vision_start|><|image_pad|><|vision_end|>` block, in order.
    """
    return (importlib.resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")


def build_tiny_processor(
    family: str = "qwen2_5_vl",
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
    vocab_size: int = 1024,
) -> ProcessorMixin:
    """Build a processor for a tiny model: PIL image processor + local byte-level tokenizer + chat template.

    Args:
        family (`str`, *optional*, defaults to `"qwen2_5_vl"`): `qwen2_5_vl`, `qwen2_vl` or `qwen3_vl` (either
            spelling). Qwen3-VL's image processor has 16-px patches and normalises to [-1, 1], as released; the
            others 14-px patches and CLIP statistics. All three use TRL's Qwen2.5-VL chat template.
        min_pixels (`int`, *optional*, defaults to `3136`): smallest resized image area (56 x 56).
        max_pixels (`int`, *optional*, defaults to `12544`): largest resized image area (112 x 112).
        vocab_size (`int`, *optional*, defaults to `1024`): upper bound on the learned BPE vocabulary.

    Returns:
        [`MIGQwen2_5_VLProcessor`], [`MIGQwen2VLProcessor`] or [`MIGQwen3VLProcessor`], with a left-padding
        tokenizer.
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    family = normalize_family(family)
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}")
    # `size` is the 5.24 spelling; `min_pixels`/`max_pixels` keyword arguments are deprecated there
    qwen3 = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]} if family == "qwen3_vl" else {}
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=16 if family == "qwen3_vl" else 14,
        merge_size=2,
        temporal_patch_size=2,
        **qwen3,
    )
    template = qwen_vl_chat_template()
    tokenizer = build_byte_level_tokenizer(vocab_size=vocab_size)
    tokenizer.chat_template = template  # released checkpoints carry it in both places; text-only callers read this one
    return _PROCESSOR_CLASSES[family](image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def build_tiny_model(
    family: str = "qwen2_5_vl",
    size: str | TinyModelConfig = "tiny",
    seed: int = 0,
    processor: ProcessorMixin | None = None,
) -> PreTrainedModel:
    """Build a randomly initialised tiny Qwen-VL model, in eval mode, in float32.

    The global torch random state is left as it was: the weights depend on `seed` only.

    Args:
        family (`str`, *optional*, defaults to `"qwen2_5_vl"`): `qwen2_5_vl`, `qwen2_vl` or `qwen3_vl` (either spelling).
        size (`str` or [`TinyModelConfig`], *optional*, defaults to `"tiny"`): a preset name (`"tiny"`, `"small"`,
            `"bench"`) or a config.
        seed (`int`, *optional*, defaults to `0`): seeds the weight initialisation.
        processor (`ProcessorMixin`, *optional*):
            The processor the model will be used with: token ids, vocabulary size and patch sizes come from it.
            Defaults to `build_tiny_processor(family)`; any Qwen-VL processor works (a real tokenizer makes a large
            embedding).

    Returns:
        `Qwen2_5_VLForConditionalGeneration` or `Qwen2VLForConditionalGeneration`.
    """
    import torch
    import transformers
    from transformers import GenerationConfig

    family = normalize_family(family)
    config = TinyModelConfig.preset(size) if isinstance(size, str) else size
    processor = build_tiny_processor(family) if processor is None else processor
    tokenizer, image_processor = processor.tokenizer, processor.image_processor
    model_config = tiny_qwen_vl_config(
        family,
        tokenizer,
        config,
        patch_size=image_processor.patch_size,
        merge_size=image_processor.merge_size,
        temporal_patch_size=image_processor.temporal_patch_size,
    )
    model_class = getattr(transformers, _MODEL_CLASS_NAMES[family])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(model_config)
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # as released: stop on <|im_end|> or <|endoftext|>, pad with <|endoftext|>; greedy unless the caller samples
    model.generation_config = GenerationConfig(
        bos_token_id=end_of_text,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), end_of_text],
        pad_token_id=end_of_text,
    )
    return model.eval()


def save_tiny_model(
    path: str | Path,
    family: str = "qwen2_5_vl",
    size: str | TinyModelConfig = "tiny",
    seed: int = 0,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
) -> Path:
    """Build a tiny model and its processor and `save_pretrained` both (weights, configs, tokenizer, template).

    The directory also gets a short `README.md` saying that `import trl_mig.models` must run before
    `AutoProcessor.from_pretrained(path)`.

    Returns:
        `Path`: `path`, ready for `from_pretrained` with `HF_HUB_OFFLINE=1`.
    """
    path = Path(path)
    processor = build_tiny_processor(family, min_pixels=min_pixels, max_pixels=max_pixels)
    model = build_tiny_model(family, size=size, seed=seed, processor=processor)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    size_name = size if isinstance(size, str) else "custom"
    n_params = sum(p.numel() for p in model.parameters())
    (path / "README.md").write_text(
        f"# Tiny random {normalize_family(family)} ({size_name}, seed {seed}, {n_params:,} parameters)\n\n"
        "Random weights, for tests and pipeline checks only. Built offline by `trl_mig.testing.save_tiny_model`.\n"
        "The processor class is trl-mig's: run `import trl_mig.models` before `AutoProcessor.from_pretrained`.\n",
        encoding="utf-8",
    )
    return path


_CHECKPOINTS: dict[tuple[str, str, int, str], Path] = {}
_SESSION_DIR: Path | None = None


def tiny_checkpoint(
    family: str = "qwen2_5_vl", size: str = "tiny", seed: int = 0, root: str | Path | None = None
) -> Path:
    """Return the directory of a saved tiny checkpoint, saving it the first time it is asked for in this process.

    Tests and the demo call this instead of building a model in every test: a path is safe to share (load a fresh
    model from it), a model object is not (training changes it).

    Args:
        family (`str`, *optional*, defaults to `"qwen2_5_vl"`): `qwen2_5_vl`, `qwen2_vl` or `qwen3_vl`.
        size (`str`, *optional*, defaults to `"tiny"`): a preset name.
        seed (`int`, *optional*, defaults to `0`): weight seed.
        root (`str` or `Path`, *optional*):
            Parent directory (for example pytest's `tmp_path_factory.mktemp(...)`). Defaults to a temporary
            directory removed when the process exits.
    """
    global _SESSION_DIR
    family = normalize_family(family)
    TinyModelConfig.preset(size)  # fail early on an unknown size
    if root is None:
        if _SESSION_DIR is None:
            _SESSION_DIR = Path(tempfile.mkdtemp(prefix="trl-mig-tiny-"))
            atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
        root = _SESSION_DIR
    key = (family, size, seed, str(Path(root).resolve()))
    if key not in _CHECKPOINTS or not (_CHECKPOINTS[key] / "config.json").is_file():
        _CHECKPOINTS[key] = save_tiny_model(Path(root) / f"{family}-{size}-seed{seed}", family, size=size, seed=seed)
    return _CHECKPOINTS[key]


__all__ = [
    "FAMILIES",
    "PRESETS",
    "QWEN_VL_SPECIAL_TOKENS",
    "TINY_MAX_PIXELS",
    "TINY_MIN_PIXELS",
    "TinyModelConfig",
    "build_byte_level_tokenizer",
    "build_tiny_model",
    "build_tiny_processor",
    "default_corpus",
    "qwen_vl_chat_template",
    "save_tiny_model",
    "tiny_checkpoint",
]
