"""The benchmark's "pretrained" base model: a tiny Qwen3-VL taught single-image grounding before the pipeline starts.

A real base MLLM arrives knowing how to ground one object in one image and how to write an answer in the expected
format; multi-image grounding with reasoning is what the paper's pipeline adds. A random tiny model knows neither,
so `make bench-learning` first gives it the single-image skill, once, and caches the result.

Why a plain PyTorch loop rather than `MIGSFTTrainer`: this stage stands in for the vendor's pre-training, not for a
step of the method, and it is the longest step of the benchmark. The loop uses the same rendered prompts and
completions as the trainers (`trl_mig.templates.render_prompt` / `render_completion`, the processor's chat
template), so the model sees exactly the text the pipeline will show it, and it runs about twice the samples per
minute of the trainer on this CPU (`NOTES.md`).

The curriculum (measured with `probe.py`, `NOTES.md` "Probe", "The simple world" and "bench-learning"): a tiny
model trained from random weights on scenes with distractors never leaves the constant-box baseline, while one
object on a flat background is learnt in minutes, but only when the image opens the sequence and the answer is
short: with the chat template and the JSON answer the same rows had not started after 20k samples. So phase 0
warms the box read-out up in that plain format and phase 1 moves it to the real template on the same one-object
world. Phase 2 teaches the choice between two objects from direct answers only, at half the learning rate (reasoning
rows mixed in from the start halved the read-out instead). Phase 3, at a quarter of the rate, mixes in multi-image
direct answers (what a real MLLM has seen) and reasoning rows (`mig-think-brief-v1`), so the base knows the answer
format the pipeline evaluates without having seen a multi-image chain of thought.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


logger = logging.getLogger(__name__)


@dataclass
class PretrainPhase:
    """One phase of the base model's pre-training."""

    name: str
    steps: int = field(metadata={"help": "optimizer steps"})
    datasets: dict[str, float] = field(metadata={"help": "cached row set -> sampling weight"})
    templates: dict[str, float] = field(metadata={"help": "prompt template -> sampling weight"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (linear warm-up, cosine decay)"})
    plain: bool = field(default=False, metadata={"help": "plain rows: no chat template, the image first, then the "
                                                         "question; the answer `x1 y1 x2 y2` on a 0-100 grid"})  # fmt: skip


class Encoder:
    """Rows -> a padded training batch: prompt tokens masked, completion tokens (and `<|im_end|>`) as labels."""

    def __init__(self, processor: Any, frame: str):
        from trl_mig.templates import render_completion, render_prompt

        self.processor, self.frame = processor, frame
        self.render_prompt, self.render_completion = render_prompt, render_completion
        tokenizer = processor.tokenizer
        self.tokenizer = tokenizer
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    def plain(self, row: dict[str, Any]) -> tuple[str, str]:
        """The warm-up format: the image at the very start, then the question; four integers on a 0-100 grid."""
        image = "<|vision_start|><|image_pad|><|vision_end|>"
        return f"{image}{row['question']}\n", " ".join(str(round(v * 100)) for v in row["solution"][0])

    def __call__(
        self, rows: Sequence[dict[str, Any]], templates: Sequence[str], plain: bool = False
    ) -> dict[str, torch.Tensor]:
        prompts, targets, images = [], [], []
        for row, template in zip(rows, templates):
            if plain:
                prompt, text = self.plain(row)
            else:
                messages = self.render_prompt(row, template, self.frame)
                prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                text = self.render_completion(row, template, self.frame)[0]["content"][0]["text"]
            prompts.append(prompt)
            targets.append(self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.end])
            images.extend(image.convert("RGB") for image in row["images"])
        self.processor.tokenizer.padding_side = "left"
        enc = self.processor(images=images, text=prompts, return_tensors="pt", padding=True)
        (batch, length), extra = enc["input_ids"].shape, max(len(t) for t in targets)
        ids = torch.full((batch, length + extra), self.pad)
        labels = torch.full_like(ids, -100)
        mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
        ids[:, :length], mask[:, :length] = enc["input_ids"], enc["attention_mask"]
        types[:, :length] = enc["mm_token_type_ids"]
        for i, target in enumerate(targets):  # prompts are left-padded, so every completion starts at `length`
            ids[i, length : length + len(target)] = labels[i, length : length + len(target)] = torch.tensor(target)
            mask[i, length : length + len(target)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "mm_token_type_ids": types,
                "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}  # fmt: skip


def _lr(phase: PretrainPhase, step: int, warmup: int = 30, flat: float = 0.6) -> float:
    """Linear warm-up, the peak for `flat` of the phase, then cosine down to a tenth: the read-out "clicks" late
    (after 5-10k samples in `probe.py`), so decaying from the start starves it."""
    if step < warmup:
        return phase.learning_rate * (step + 1) / warmup
    progress = max(0.0, (step - flat * phase.steps) / max(1.0, (1 - flat) * phase.steps))
    return phase.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pretrain(
    model: Any,
    processor: Any,
    datasets: dict[str, Any],
    phases: Sequence[PretrainPhase],
    *,
    frame: str,
    batch_size: int,
    seed: int,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Train `model` in place through `phases`; returns one log line per 25 steps.

    With `workdir`, the log goes to `workdir/pretrain_log.jsonl` and the whole state (weights, optimizer, sampling
    RNG, log) to `workdir/phase-<i>.pt` after each phase; a later call with the same `workdir` resumes after the last
    finished phase and ends where an uninterrupted run would have.
    """
    rng = random.Random(seed)
    encode = Encoder(processor, frame)
    optimizer = torch.optim.AdamW(model.parameters(), lr=phases[0].learning_rate, weight_decay=0.0)
    log: list[dict[str, Any]] = []
    seen, first = 0, 0
    if workdir is not None:
        done = sorted(workdir.glob("phase-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        if done:
            state = torch.load(done[-1], weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng.setstate(state["rng"])
            log, seen, first = state["log"], state["seen"], int(done[-1].stem.split("-")[1]) + 1
            logger.info("pretrain: resuming after phase %d (%d samples seen)", first - 1, seen)
    model.train()
    for index, phase in enumerate(phases):
        if index < first:
            continue
        names, weights = zip(*phase.datasets.items())
        template_names, template_weights = zip(*phase.templates.items())
        started, losses = time.perf_counter(), []
        for step in range(phase.steps):
            for group in optimizer.param_groups:
                group["lr"] = _lr(phase, step)
            rows, templates = [], []
            for _ in range(batch_size):
                rows_of = datasets[rng.choices(names, weights)[0]]
                rows.append(rows_of[rng.randrange(len(rows_of))])
                templates.append(rng.choices(template_names, template_weights)[0])
            loss = model(**encode(rows, templates, phase.plain)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            seen += batch_size
            if (step + 1) % 25 == 0 or step + 1 == phase.steps:
                line = {"phase": phase.name, "step": step + 1, "seen": seen, "lr": round(_lr(phase, step), 6),
                        "loss": round(sum(losses[-25:]) / len(losses[-25:]), 4),
                        "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
                log.append(line)
                logger.info("pretrain %s", line)
                if workdir is not None:
                    with open(workdir / "pretrain_log.jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps(line) + "\n")
        if workdir is not None:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.getstate(),
                     "log": log, "seen": seen}  # fmt: skip
            torch.save(state, workdir / f"phase-{index}.pt.tmp")
            (workdir / f"phase-{index}.pt.tmp").rename(workdir / f"phase-{index}.pt")
    model.eval()
    return log


def phases_to_json(phases: Sequence[PretrainPhase]) -> list[dict[str, Any]]:
    return [asdict(p) for p in phases]
