"""A small byte-level BPE tokenizer with Qwen's special tokens, trained locally (no Hub, no download).

Tiny models need a tokenizer whose vocabulary is small (the embedding matrix dominates a tiny model's size) and
whose behaviour matches the real one where it matters: byte-level, so any text round-trips; Qwen2's
pre-tokenisation regex, so digits are split one per token as in real coordinates; the same special tokens, so the
chat template, the `<|image_pad|>` expansion and TRL's `skip_special_tokens=True` decoding behave as with a real
checkpoint. The BPE merges are learned with the `tokenizers` library on a fixed corpus that covers the prompt and
answer vocabulary, so the result is the same in every process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # pragma: no cover
    from transformers import Qwen2Tokenizer


#: Qwen2-VL / Qwen2.5-VL special tokens, in the order of the released vocabularies (ids 151643..151656 there).
QWEN_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# transformers 5.24 `Qwen2Tokenizer` pre-tokenisation (Qwen2's tiktoken pattern): letters grouped, digits one by one.
_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_WORDS = (
    "You are a helpful assistant. Find the object in the images and answer with its bounding box. "
    "Which image shows the person, the car, the dog, the cat, the cup, the chair, the table, the bottle, the bird? "
    "Look at the first image, the second image, the third image, the fourth image and the last picture. "
    "Locate the object that is different, the same, left, right, top, bottom, above, below, near, between, behind. "
    "Output the thinking process in <think> </think> and the final answer in <answer> </answer> tags. "
    "The answer is a JSON object with the keys image and bbox_2d, coordinates x1, y1, x2, y2 in the frame. "
    "First think step by step, then answer. There is no target in these images. Picture 1: Picture 2: "
    "red green blue yellow white black small large object region reference common difference group count "
)


def default_corpus() -> list[str]:
    """Return the fixed training corpus: prompt words, answer syntax and numbers in every box notation we parse.

    Deterministic by construction (no random source), so the learned merges are the same everywhere.
    """
    lines = [_WORDS] * 4
    for i in range(200):
        image = i % 4 + 1
        x1, y1 = (37 * i) % 900, (53 * i) % 900
        x2, y2 = x1 + 17 + i % 83, y1 + 29 + i % 71
        box = f"[{x1}, {y1}, {x2}, {y2}]"
        lines += [
            f'<think>The object is in image {image}, near ({x1}, {y1}).</think><answer>{{"image": {image}, '
            f'"bbox_2d": {box}}}</answer>',
            f'{{"image": null, "bbox_2d": []}} ({x1},{y1}),({x2},{y2}) <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>',
            f'<box image="{image - 1}">[0.{x1:03d},0.{y1:03d},0.{x2 % 1000:03d},0.{y2 % 1000:03d}]</box> {box}',
        ]
    return lines


def build_byte_level_tokenizer(
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
    special_tokens: Sequence[str] = QWEN_VL_SPECIAL_TOKENS,
    padding_side: str = "left",
    model_max_length: int = 32768,
) -> Qwen2Tokenizer:
    """Train a byte-level BPE on `corpus` and wrap it in transformers' own `Qwen2Tokenizer`.

    The special tokens get the ids right after the learned vocabulary, in Qwen's order. As in the released
    Qwen2.5-VL tokenizer, `eos_token` is `<|im_end|>`, `pad_token` is `<|endoftext|>` and there is no unk or bos
    token. `padding_side` is set at construction so that `save_pretrained` writes it: GRPO needs left padding and
    TRL only forces it when it loads the processor itself.

    Args:
        corpus (`Iterable[str]`, *optional*): training text; defaults to [`default_corpus`].
        vocab_size (`int`, *optional*, defaults to `1024`):
            Upper bound on the learned byte-level vocabulary (256 bytes + merges), special tokens not included.
            Training stops earlier when the corpus has no more pair seen twice.
        special_tokens (`Sequence[str]`, *optional*): defaults to [`QWEN_VL_SPECIAL_TOKENS`].
        padding_side (`str`, *optional*, defaults to `"left"`): saved with the tokenizer.
        model_max_length (`int`, *optional*, defaults to `32768`): saved with the tokenizer.

    Returns:
        `Qwen2Tokenizer`: a tokenizer of `vocab_size + len(special_tokens)` entries at most.
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    backend = Tokenizer(BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    # special tokens are stripped from the training text: they must stay whole, never merged with their neighbours
    texts = default_corpus() if corpus is None else corpus
    backend.train_from_iterator(_strip_tokens(texts, special_tokens), trainer)
    model = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for token in special_tokens:
        vocab[token] = len(vocab)
    # tokenizers 0.23 wants merges as tuples (the JSON has lists)
    merges = [tuple(pair) for pair in model["merges"]]
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(special_tokens),
        padding_side=padding_side,
        model_max_length=model_max_length,
    )


def _strip_tokens(texts: Iterable[str], tokens: Sequence[str]) -> Iterable[str]:
    for text in texts:
        for token in tokens:
            text = text.replace(token, " ")
        yield text
