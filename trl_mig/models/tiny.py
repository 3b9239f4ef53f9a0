"""Architecture of tiny Qwen-VL models: a dataclass of knobs, three presets, and the transformers configs they give.

The configs are transformers' own (`Qwen2_5_VLConfig`, `Qwen2VLConfig`, `Qwen3VLConfig`; `model_type` `qwen2_5_vl`,
`qwen2_vl`, `qwen3_vl`),
so a tiny model runs the real modelling code, and the trainer, sampler and evaluator read its coordinate frame from
`config.model_type` as they do for a released checkpoint. Only sizes shrink; what must stay consistent is derived
here: `mrope_section` sums to `head_dim / 2`, the vision merger outputs the text hidden size, and the special token
ids and `vocab_size` come from the tokenizer actually used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedConfig, PreTrainedTokenizerBase


#: model families with a tiny builder; `-` and `_` spellings are both accepted.
FAMILIES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of a tiny Qwen-VL model (text decoder + vision encoder), shared by both families.

    Presets: `TinyModelConfig.preset("tiny")` (about 0.2M parameters with the default tokenizer: fast enough for
    unit tests through the real trainers), `TinyModelConfig.preset("small")` (about 4.6M: enough capacity for short
    learning experiments on CPU) and `TinyModelConfig.preset("bench")` (about 1.2M: text width 128, the base model of
    the learning benchmark, `benchmarks/learning/NOTES.md`, and of `trl-mig demo`).

    Example:
    ```python
    >>> TinyModelConfig.preset("tiny").mrope_section
    [2, 3, 3]
    >>> TinyModelConfig(hidden_size=256, num_attention_heads=2).mrope_section
    [16, 24, 24]

    ```
    """

    hidden_size: int = field(default=64, metadata={"help": "Text hidden size; also the vision merger's output size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Text decoder layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Text attention heads; head_dim = hidden / heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "Text key/value heads (grouped-query attention)."})
    intermediate_size: int = field(default=128, metadata={"help": "Text MLP inner size."})
    vision_hidden_size: int = field(default=32, metadata={"help": "Vision encoder width (`embed_dim` in Qwen2-VL)."})
    vision_depth: int = field(default=2, metadata={"help": "Vision encoder blocks."})
    vision_num_heads: int = field(default=2, metadata={"help": "Vision attention heads."})
    vision_mlp_ratio: int = field(default=2, metadata={"help": "Vision MLP inner size / vision width."})
    max_position_embeddings: int = field(default=4096, metadata={"help": "Longest sequence the rotary cache covers."})
    rope_theta: float = field(default=1_000_000.0, metadata={"help": "Rotary base, as in the released models."})
    tie_word_embeddings: bool = field(
        default=True, metadata={"help": "Share input and output embeddings (the embedding dominates tiny models)."}
    )

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim % 8:
            raise ValueError(
                f"head_dim={self.head_dim} (hidden_size / num_attention_heads) must be a multiple of 8 so that the "
                "multimodal rotary sections (temporal, height, width) are all non-empty; change hidden_size or heads"
            )
        if self.vision_hidden_size % self.vision_num_heads or (self.vision_hidden_size // self.vision_num_heads) % 4:
            raise ValueError(
                f"vision_hidden_size={self.vision_hidden_size} / vision_num_heads={self.vision_num_heads} must be a "
                "multiple of 4 (the vision rotary embedding splits half of each head between height and width)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def mrope_section(self) -> list[int]:
        """Rotary dims for (temporal, height, width): sums to `head_dim / 2`, in the released 16:24:24 proportions."""
        half = self.head_dim // 2
        spatial = 3 * half // 8
        return [half - 2 * spatial, spatial, spatial]

    @property
    def qwen3_mrope_section(self) -> list[int]:
        """Qwen3-VL's split of the rotary dims (temporal, height, width; interleaved): the released 24:20:20."""
        half = self.head_dim // 2
        spatial = 5 * half // 16
        return [half - 2 * spatial, spatial, spatial]

    @classmethod
    def preset(cls, name: str) -> TinyModelConfig:
        """Return the preset called `name` (`"tiny"`, `"small"` or `"bench"`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown tiny model size {name!r}; choose one of {sorted(PRESETS)} or a TinyModelConfig")
        return PRESETS[name]


PRESETS: dict[str, TinyModelConfig] = {
    "tiny": TinyModelConfig(),
    "small": TinyModelConfig(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=768,
        vision_hidden_size=128,
        vision_depth=4,
        vision_num_heads=4,
    ),
    # the learning benchmark's base (`benchmarks/learning/bench_learning.py`, `tiny_config`): text width 128 trains
    # about 3x faster per sample than `small` on CPU (`benchmarks/learning/NOTES.md`, "Throughput")
    "bench": TinyModelConfig(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=384,
        vision_hidden_size=64,
        vision_depth=2,
        vision_num_heads=2,
        vision_mlp_ratio=4,
        rope_theta=1e6,
    ),
}


def normalize_family(family: str) -> str:
    """Accept both spellings (`qwen2-5-vl`, `qwen2_5_vl`) and check the family is one we build."""
    name = family.strip().lower().replace("-", "_")
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {list(FAMILIES)}")
    return name


def tiny_qwen_vl_config(
    family: str,
    tokenizer: PreTrainedTokenizerBase,
    config: TinyModelConfig,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> PreTrainedConfig:
    """Build transformers' `Qwen2_5_VLConfig`, `Qwen2VLConfig` or `Qwen3VLConfig` for `config`, with token ids from
    `tokenizer`.

    `patch_size`, `merge_size` and `temporal_patch_size` must match the image processor's (Qwen3-VL's is 16 px).
    """
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    family = normalize_family(family)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _REQUIRED_TOKENS}
    missing = [token for token, token_id in ids.items() if token_id is None or token_id == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"the tokenizer lacks the Qwen-VL special tokens {missing}; add them before building")
    text_config: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": config.rope_theta,
            "mrope_section": config.mrope_section,
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_common: dict[str, Any] = {
        "depth": config.vision_depth,
        "num_heads": config.vision_num_heads,
        "patch_size": patch_size,
        "spatial_merge_size": merge_size,
        "temporal_patch_size": temporal_patch_size,
    }
    if family == "qwen3_vl":
        # Qwen3-VL: explicit head_dim, interleaved multimodal rotary sections; the vision tower adds learned absolute
        # position embeddings (a 16 x 16 table, interpolated to each image's patch grid) and feeds "deepstack"
        # features of its first block into the first text layers, as the released models do with blocks 8/16/24.
        config_class = Qwen3VLConfig
        text_config["head_dim"] = config.head_dim
        text_config["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": config.rope_theta,
            "mrope_section": config.qwen3_mrope_section,
            "mrope_interleaved": True,
        }
        vision_config = {
            **vision_common,
            "hidden_size": config.vision_hidden_size,
            "intermediate_size": config.vision_mlp_ratio * config.vision_hidden_size,
            "out_hidden_size": config.hidden_size,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0],
        }
    elif family == "qwen2_5_vl":
        config_class = Qwen2_5_VLConfig
        vision_config = {
            **vision_common,
            "hidden_size": config.vision_hidden_size,
            "intermediate_size": config.vision_mlp_ratio * config.vision_hidden_size,
            "out_hidden_size": config.hidden_size,
            # full attention every 4th block, ending on the last one (the released 7, 15, 23, 31 pattern)
            "fullatt_block_indexes": list(range((config.vision_depth - 1) % 4, config.vision_depth, 4)),
            "window_size": 112,
        }
    else:
        config_class = Qwen2VLConfig
        vision_config = {
            **vision_common,
            "embed_dim": config.vision_hidden_size,
            "mlp_ratio": config.vision_mlp_ratio,
            "hidden_size": config.hidden_size,
        }
    return config_class(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=config.tie_word_embeddings,
    )


_REQUIRED_TOKENS = (
    "<|endoftext|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
