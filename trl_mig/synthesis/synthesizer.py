"""`CoTSynthesizer`: a teacher answers each question up to k times; the first right trace is kept (stage 1).

Rows are cut into chunks of `chunk_size`; each chunk's records (every try, its outcome and IoU, the kept reasoning in
canonical form) go to one shard written atomically when the chunk is done (`datasets_builders.shards`). A crash, or
a teacher that stays unreachable after its retries, stops the job with the chunk unwritten; a rerun with the same
settings does the missing chunks only, so nothing is lost or asked twice into the set. The main work is waiting on
the teacher, so requests run in a thread pool of `max_in_flight` workers (one row's tries are sequential).

Model output never stops the job: an empty, truncated, box-less or nonsense reply is scored (`outcome`), logged with
the row id, and the next try is asked.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..crash import crash_point
from ..datasets_builders.shards import (
    check_plan,
    claim_output,
    done_chunks,
    release_output,
    remove_stale_temp_files,
    write_shard,
)
from ..parsing import parse_answer
from ..scoring import FrameSpec, score_single
from .config import SynthesisConfig
from .reasoning import canonical_reasoning, get_teacher_template, think_text


logger = logging.getLogger(__name__)

__all__ = ["CoTSynthesizer", "TransformersTeacher", "judge_reply"]

_SCHEMA_KEYS = ("id", "images", "question", "solution", "target_image", "image_sizes", "task", "source")


def judge_reply(
    text: str, row: Mapping[str, Any], spec: FrameSpec, threshold: float
) -> tuple[str, float, bool, str | None, int]:
    """Score one teacher reply for one row; never raises on the reply.

    Returns:
        `(outcome, iou, right, reasoning, converted_boxes)`: `outcome` is `right`, `no_reasoning`, `no_answer`,
        `unparsable`, `no_box`, `false_positive`, `wrong_image` or `low_iou`; `reasoning` is the canonical reasoning
        of a right reply, else `None`.
    """
    gold, targets, sizes = row.get("solution"), list(row.get("target_image") or []), row["image_sizes"]
    text = text if isinstance(text, str) else ""
    prediction = parse_answer(text)
    if prediction is None:
        return ("unparsable" if "<answer>" in text.lower() else "no_answer"), 0.0, False, None, 0
    if not gold:  # a "no target" question: only the explicit answer is right
        if not (prediction.no_target and not prediction.boxes):
            return "false_positive", 0.0, False, None, 0
        iou, image = 1.0, targets[0] if targets else 0
    else:
        if not prediction.boxes:
            return "no_box", 0.0, False, None, 0
        target = targets[0] if targets else -1
        outcome = score_single(prediction, gold[0], target, spec, sizes, None)
        if outcome.right_image is False:
            return "wrong_image", outcome.iou, False, None, 0
        if outcome.iou < threshold:
            return "low_iou", outcome.iou, False, None, 0
        iou = outcome.iou
        image = target if target >= 0 else (outcome.image if outcome.image is not None else 0)
    thought = think_text(text)
    if thought is None:
        return "no_reasoning", iou, False, None, 0
    reasoning, converted, _ = canonical_reasoning(thought, spec, sizes, None, default_image=max(image, 0))
    return "right", iou, True, reasoning, converted


class TransformersTeacher:
    """A local model as the teacher (`backend=transformers`): the sampler's HF backend, one sample per try."""

    def __init__(self, model_name_or_path: str, *, temperature: float = 0.7, max_tokens: int = 1024) -> None:
        from transformers import AutoModelForImageTextToText

        from ..models import load_processor
        from ..sampling.generation import HFGenerator

        processor = load_processor(model_name_or_path, padding_side="left")
        model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, dtype="auto").eval()
        self.name = model_name_or_path
        self._generator = HFGenerator(model, processor, max_new_tokens=max_tokens, temperature=temperature)

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.name}

    def ask(self, prompt: list[dict], images: list, *, row_id: str = "?", seed: int | None = None):
        from .teacher import TeacherReply

        start = time.perf_counter()
        (texts,) = self._generator.generate([prompt], [images], n=1, seed=seed)
        return TeacherReply(texts[0], None, time.perf_counter() - start, 1, None)


class CoTSynthesizer:
    """Ask, judge, shard, resume, build (see the module docstring).

    Args:
        config (`SynthesisConfig`): what to ask and keep.
        dataset (`datasets.Dataset`, *optional*): the schema split; loaded from `config.dataset_name` by default.
        teacher (*optional*): anything with `ask(prompt, images, *, row_id, seed) -> TeacherReply` and `describe()`;
            built from the config by default (`OpenAITeacher` or `TransformersTeacher`).
        on_chunk_done (`Callable[[int], None]`, *optional*): called after each shard is written.
    """

    def __init__(
        self,
        config: SynthesisConfig,
        *,
        dataset: Any = None,
        teacher: Any = None,
        on_chunk_done: Callable[[int], None] | None = None,
    ) -> None:
        if dataset is None and not config.dataset_name:
            raise ValueError("SynthesisConfig.dataset_name is required: the schema set whose questions to answer")
        if teacher is None and not config.teacher_model:
            raise ValueError("SynthesisConfig.teacher_model is required: the endpoint's model name or a local model")
        self.config, self._dataset, self.on_chunk_done = config, dataset, on_chunk_done
        self.teacher = teacher if teacher is not None else self._make_teacher()
        self.template = get_teacher_template(config.teacher_template)
        self.spec = FrameSpec(config.teacher_frame)

    def _make_teacher(self) -> Any:
        cfg = self.config
        if cfg.backend == "transformers":
            return TransformersTeacher(cfg.teacher_model, temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        from .teacher import OpenAITeacher

        return OpenAITeacher(
            cfg.base_url, cfg.teacher_model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
            max_retries=cfg.max_retries, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
        )  # fmt: skip

    def _load(self) -> Any:
        if self._dataset is not None:
            dataset = self._dataset
        else:
            from ..datasets_builders.reader import load_schema_dataset

            cfg = self.config
            dataset = load_schema_dataset(cfg.dataset_name, cfg.dataset_config, split=cfg.dataset_split)
        if self.config.max_rows is not None:
            dataset = dataset.select(range(min(self.config.max_rows, len(dataset))))
        return dataset

    def plan(self, dataset: Any) -> dict[str, Any]:
        from ..sampling.sampler import _ids_digest

        cfg = self.config
        return {
            "dataset": cfg.dataset_name or "dataset",
            "dataset_config": cfg.dataset_config,
            "split": cfg.dataset_split,
            "num_rows": len(dataset),
            "ids_sha256": _ids_digest(dataset["id"]),
            "teacher": {k: v for k, v in self.teacher.describe().items() if k not in ("timeout", "max_retries")},
            "template": {"name": self.template.name, "version": self.template.version, "base": self.template.base},
            **cfg.settings(),
        }

    # ------------------------------------------------------------------------------------------------------------

    def solve(self, row: Mapping[str, Any], index: int) -> dict[str, Any]:
        """Ask up to `num_tries` times; stop at the first right reply. Teacher errors propagate (the chunk stops)."""
        cfg = self.config
        prompt = self.template.prompt(row, self.spec)
        images = list(row["images"])
        tries, kept = [], None
        for t in range(cfg.num_tries):
            reply = self.teacher.ask(prompt, images, row_id=str(row["id"]), seed=cfg.seed + 1000 * index + t)
            outcome, iou, right, reasoning, converted = judge_reply(reply.text, row, self.spec, cfg.iou_threshold)
            tries.append({"text": reply.text, "outcome": outcome, "iou": round(float(iou), 6),
                          "finish_reason": reply.finish_reason})  # fmt: skip
            if right:
                kept = {"reasoning": reasoning, "converted_boxes": converted, "tries_needed": t + 1}
                break
            logger.info("row %s try %d rejected: %s (IoU %.3f)", row["id"], t + 1, outcome, iou)
        record = {
            "id": str(row["id"]),
            "index": index,
            "task": row.get("task"),
            "tries": tries,
            "kept": kept is not None,
        }
        record.update(kept or {"reasoning": None, "converted_boxes": 0, "tries_needed": None})
        return record

    def run(self) -> dict[str, Any]:
        """Answer every pending chunk, then write the CoT set. Returns what the `cot` builder wrote."""
        from ..datasets_builders.cot import build_cot_set

        cfg = self.config
        started = time.perf_counter()
        state = _distributed_state(cfg.ddp_timeout)
        rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
        dataset = self._load()
        shards = Path(cfg.shards_dir)
        if rank == 0:
            if cfg.restart and shards.exists():
                shutil.rmtree(shards)
            remove_stale_temp_files(shards)  # a kill between an atomic write and its rename leaves one
            check_plan(shards, self.plan(dataset), restart_flag="--restart")
        _barrier(state)
        n_chunks = -(-len(dataset) // cfg.chunk_size)
        pending = sorted(set(range(n_chunks)) - done_chunks(shards))
        mine = pending[rank::world]  # under `accelerate launch`: every world_size-th pending chunk, shards merged once
        from ..sampling.sampler import _progress

        with ThreadPoolExecutor(cfg.max_in_flight) as pool, _progress(rank == 0, len(mine) * cfg.chunk_size,
                                                                       "teacher") as advance:  # fmt: skip
            for chunk in mine:
                lo, hi = chunk * cfg.chunk_size, min((chunk + 1) * cfg.chunk_size, len(dataset))
                rows = dataset.select(range(lo, hi))
                futures = [pool.submit(self.solve, row, lo + i) for i, row in enumerate(rows)]
                records = []
                try:
                    for future in futures:
                        records.append(future.result())
                        advance(1)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
                crash_point("synthesize.chunk_answered")
                write_shard(shards, chunk, records, label="synthesize")
                if self.on_chunk_done is not None:
                    self.on_chunk_done(chunk)
                crash_point("synthesize.chunk_done")
        _barrier(state)
        if rank != 0:  # the main process builds the set from every process's shards
            _barrier(state)
            return {"process": rank, "chunks": mine, "world_size": world}
        # a run killed after writing the set finds it on its rerun: the claim lets it replace what it wrote itself
        overwrite = claim_output(shards, cfg.output_dir, cfg.overwrite)
        crash_point("synthesize.before_build")
        result = build_cot_set(
            dataset, shards, cfg.output_dir, overwrite=overwrite, repo_id=cfg.repo_id,
            source_name=cfg.dataset_name, decontaminate_against=cfg.decontaminate_against,
        )  # fmt: skip
        crash_point("synthesize.after_build")
        release_output(shards)
        result.update(resumed_chunks=n_chunks - len(pending), chunks=n_chunks, world_size=world,
                      seconds=round(time.perf_counter() - started, 2))  # fmt: skip
        _barrier(state)
        return result


def _distributed_state(ddp_timeout: float = 1800) -> Any:
    """accelerate's state when launched with several processes (`accelerate launch`), else `None`: a plain run of an
    API teacher needs neither torch nor accelerate. On CPU the state is built with `cpu=True`, which makes the group
    gloo (see examples/accelerate_configs/cpu_2proc.yaml). `ddp_timeout` (seconds) bounds every barrier's wait."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=ddp_timeout))


def _barrier(state: Any) -> None:
    if state is not None:
        state.wait_for_everyone()
