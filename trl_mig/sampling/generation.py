"""Generation backends shared by the sampler and the evaluator: N completions per conversational prompt with images.

Completions are decoded the way TRL 1.16's `GRPOTrainer` decodes them for its rewards (`_generate_and_score_completions`):
tokens after the first EOS are dropped, then `batch_decode(..., skip_special_tokens=True)`. Box markers such as
`<|box_start|>` never reach the rewards in RL, so they must not reach them here either: a pass rate measured on text
the RL rewards never see would select the wrong prompts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any


logger = logging.getLogger(__name__)

__all__ = ["HFGenerator", "VLLMGenerator", "make_generator", "truncate_at_eos"]


def truncate_at_eos(ids: Sequence[int], eos_ids: Sequence[int]) -> list[int]:
    """`ids` up to and including the first EOS (TRL's completion mask).

    Example:
    ```python
    >>> truncate_at_eos([5, 6, 2, 0, 0], eos_ids=[2])
    [5, 6, 2]

    ```
    """
    eos = set(eos_ids)
    for i, token in enumerate(ids):
        if token in eos:
            return list(ids[: i + 1])
    return list(ids)


def _filled(prompt: list[dict[str, Any]], images: Sequence[Any] | None) -> list[dict[str, Any]]:
    """The prompt with its `{"type": "image"}` placeholders filled, as TRL fills them before tokenising."""
    from trl.data_utils import prepare_multimodal_messages

    return (
        prepare_multimodal_messages(prompt, images=list(images or []))
        if images
        else prepare_multimodal_messages(prompt)
    )


class HFGenerator:
    """Batched `model.generate` on one device.

    Args:
        model: an image-text-to-text model (already on its device).
        processor: its processor; its tokenizer must pad on the left (set here if it does not).
        max_new_tokens, temperature, top_p, top_k: sampling settings; `temperature=0` decodes greedily.
    """

    name = "hf"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        max_new_tokens: int = 1024,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
    ) -> None:
        self.model, self.processor = model, processor
        tokenizer = getattr(processor, "tokenizer", processor)
        if getattr(tokenizer, "padding_side", "left") != "left":
            tokenizer.padding_side = "left"  # batched generation continues each prompt from its last token
        self.tokenizer = tokenizer
        self.max_new_tokens, self.temperature, self.top_p, self.top_k = max_new_tokens, temperature, top_p, top_k
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos = [tokenizer.eos_token_id, *eos]
        self.eos_token_ids = eos

    def _encode(self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Sequence[Any] | None]) -> Any:
        """Left-padded model inputs for a batch of conversational prompts with their images."""
        conversations = [_filled(p, imgs) for p, imgs in zip(prompts, images, strict=True)]
        return self.processor.apply_chat_template(
            conversation=conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},  # transformers 5.24: processor arguments go here, not in **kwargs
        ).to(self.model.device)

    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[0]

    def generate(
        self,
        prompts: Sequence[list[dict[str, Any]]],
        images: Sequence[Sequence[Any] | None],
        n: int = 1,
        seed: int | None = None,
    ) -> list[list[str]]:
        """`n` decoded completions for each prompt (conversational messages with image placeholders).

        `seed` reseeds torch's generator first, so that a batch's samples depend on its prompts and seed only.
        """
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        inputs = self._encode(prompts, images)
        sample = self.temperature > 0
        settings: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": sample}
        if sample:
            settings.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or 0)
        else:
            settings.update(temperature=None, top_p=None, top_k=None)  # silence the model's sampling defaults
        pad = self._pad_id()
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, num_return_sequences=n, pad_token_id=pad, eos_token_id=self.eos_token_ids, **settings
            )
        completion_ids = out[:, inputs["input_ids"].shape[1] :].tolist()
        texts = self.tokenizer.batch_decode(
            [truncate_at_eos(ids, self.eos_token_ids) for ids in completion_ids], skip_special_tokens=True
        )
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    def generate_with_confidence(
        self, prompts: Sequence[list[dict[str, Any]]], images: Sequence[Sequence[Any] | None]
    ) -> list[tuple[str, float]]:
        """One greedy completion per prompt with its confidence: `exp(mean token log-prob)` of the completion.

        The confidence ranks detections for MC-Bench's AP50 (DESIGN.md section 4: mean token log-prob of the answer;
        the exponential keeps the order and reads as a geometric-mean token probability in `(0, 1]`). Tokens after
        the first EOS (padding of finished rows) do not count; the EOS itself does, since stopping is part of the
        answer.
        """
        import torch

        inputs = self._encode(prompts, images)
        pad = self._pad_id()
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, temperature=None, top_p=None,
                top_k=None, pad_token_id=pad, eos_token_id=self.eos_token_ids, output_scores=True,
                return_dict_in_generate=True,
            )  # fmt: skip
            logprobs = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        completion_ids = out.sequences[:, inputs["input_ids"].shape[1] :].tolist()
        results = []
        for ids, row in zip(completion_ids, logprobs.float().cpu().tolist()):
            kept = truncate_at_eos(ids, self.eos_token_ids)
            values = [v for v in row[: len(kept)] if math.isfinite(v)]  # `kept` ends with the EOS, when there is one
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            results.append((text, math.exp(sum(values) / len(values)) if values else 0.0))
        return results


class VLLMGenerator:
    """vLLM offline engine (extra `vllm`; TRL 1.16 supports vLLM 0.22-0.31).

    Each process of an `accelerate launch` run holds its own engine on its own GPU (vLLM's `external_launcher`
    executor, as TRL's colocate mode does). vLLM decodes with `skip_special_tokens=True` by default, as TRL does.
    Not exercised on the CPU-only CI machine; the HF backend is.
    """

    name = "vllm"

    def __init__(
        self,
        model_name_or_path: str,
        processor: Any,
        *,
        max_new_tokens: int = 1024,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
        max_images: int = 10,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        distributed: bool = False,
    ) -> None:
        from ..import_utils import require

        require("vllm", "vLLM generation (backend=vllm)")
        from vllm import LLM

        self.processor = processor
        self.max_new_tokens, self.temperature, self.top_p, self.top_k = max_new_tokens, temperature, top_p, top_k
        kwargs: dict[str, Any] = {
            "model": model_name_or_path,
            "limit_mm_per_prompt": {"image": max_images},  # from the data: every row's images must fit one prompt
            "seed": seed,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        limits = _pixel_limits(processor)
        if limits:
            # vLLM resizes images with the limits saved in the model folder unless told otherwise; prompts state, and
            # answers are scored in, the resized sizes of *this* processor, so both must agree
            kwargs["mm_processor_kwargs"] = limits
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if distributed:
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(**kwargs)

    def generate(
        self,
        prompts: Sequence[list[dict[str, Any]]],
        images: Sequence[Sequence[Any] | None],
        n: int = 1,
        seed: int | None = None,
    ) -> list[list[str]]:
        from vllm import SamplingParams

        requests = []
        for prompt, imgs in zip(prompts, images, strict=True):
            text = self.processor.apply_chat_template(
                _filled(prompt, imgs), add_generation_prompt=True, tokenize=False
            )
            request: dict[str, Any] = {"prompt": text}
            if imgs:
                request["multi_modal_data"] = {"image": list(imgs)}
            requests.append(request)
        params = SamplingParams(
            n=n,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k if self.top_k else -1,
            max_tokens=self.max_new_tokens,
            seed=seed,
        )
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [[choice.text for choice in output.outputs] for output in outputs]


def _pixel_limits(processor: Any) -> dict[str, int]:
    """`min_pixels` / `max_pixels` of a Qwen-VL processor, for vLLM's `mm_processor_kwargs` (empty when unknown)."""
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    out = {"min_pixels": size.get("shortest_edge"), "max_pixels": size.get("longest_edge")}
    return {key: int(value) for key, value in out.items() if isinstance(value, int)}


def make_generator(
    config: Any,
    model_name_or_path: str,
    processor: Any,
    device: Any,
    *,
    distributed: bool = False,
    max_images: int = 10,
):
    """The backend `config.backend` names (`auto`: vLLM when installed and CUDA is available, else HF).

    `max_images` (the most images a row of the data has) becomes vLLM's `limit_mm_per_prompt`.

    Args:
        config: a `RejectionSamplingConfig` (or anything with its generation fields).
        device: where the HF backend puts the model.
    """
    import torch

    from ..import_utils import is_vllm_available

    backend = config.backend
    if backend == "auto":
        backend = "vllm" if is_vllm_available() and torch.cuda.is_available() and not config.use_cpu else "hf"
    sampling = {
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
    }
    if backend == "vllm":
        return VLLMGenerator(
            model_name_or_path,
            processor,
            seed=config.seed,
            dtype=config.dtype,
            gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            max_model_len=config.vllm_max_model_len,
            distributed=distributed,
            max_images=max_images,
            **sampling,
        )
    from transformers import AutoModelForImageTextToText

    import trl_mig.models  # noqa: F401  (registers trl-mig's processor classes, named by tiny checkpoints)

    kwargs: dict[str, Any] = {"dtype": config.dtype}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, **kwargs).to(device).eval()
    return HFGenerator(model, processor, **sampling)
