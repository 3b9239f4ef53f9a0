"""`RejectionSampler`: N samples per prompt from the merged SFT model, scored as RL scores them, written as it goes.

Work is cut into chunks of `chunk_size` consecutive prompts. A chunk is the unit of

- **work**: under `accelerate launch` each process takes every `world_size`-th pending chunk, so the processes share
  the prompts without overlap and without talking to each other until the end;
- **resumption**: a chunk's shard is renamed into place only when complete (`datasets_builders.rl.write_shard`); a
  rerun reads which chunks exist and samples only the others, so after a kill no prompt is lost and none duplicated;
- **seeding**: generation batch b of chunk k is sampled with seed `seed + 1000 * k + b`, so a chunk's samples depend on
  its prompts and the settings only, not on which process took it or whether the run was interrupted.

At the end the main process merges the shards once and writes the RL set (`datasets_builders.rl.build_rl_set`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..crash import crash_point
from ..datasets_builders.rl import OUTCOMES, EmptyRLSetError, build_rl_set, read_samples
from ..datasets_builders.shards import (
    check_plan,
    claim_output,
    done_chunks,
    release_output,
    remove_stale_temp_files,
    write_shard,
)
from ..geometry import Frame
from ..io_utils import atomic_write
from ..rewards import REWARD_FUNCS, IoUReward
from ..scoring import FrameSpec
from ..trainers.rollout_metrics import score_completions
from .config import RejectionSamplingConfig


logger = logging.getLogger(__name__)

__all__ = ["RejectionSampler", "resolve_reward_funcs", "score_samples"]

#: columns passed to the rewards besides the completions (TRL passes every column; these are the ones that matter)
_SKIP_COLUMNS = ("prompt", "completion")
RUN_FILE = "last_run.json"


def resolve_reward_funcs(names: Sequence[str | Callable]) -> list[Callable]:
    """Reward callables from names in `REWARD_FUNCS` or dotted paths (`my_pkg.rewards.my_reward`)."""
    funcs = []
    for name in names:
        if callable(name):
            funcs.append(name)
        elif name in REWARD_FUNCS:
            funcs.append(REWARD_FUNCS[name])
        elif "." in name:
            module, _, attr = name.rpartition(".")
            try:
                funcs.append(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"reward {name!r} cannot be imported: {exc}") from exc
        else:
            raise ValueError(f"unknown reward {name!r}; known: {', '.join(REWARD_FUNCS)}, or a dotted path")
    return funcs


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def score_samples(
    rows: Sequence[dict[str, Any]],
    completions: Sequence[Sequence[str]],
    reward_funcs: Sequence[Callable],
    spec: FrameSpec,
    *,
    require_think: bool = True,
) -> list[dict[str, Any]]:
    """One sample record per row: every reward per sample, right or wrong (`strict_acc@0.5`), pass rate, mean IoU.

    Rewards are called as TRL 1.16's GRPO calls them: `prompts`, `completions` (assistant messages), and every column
    of the row repeated per completion. A row without a gold box (`solution` null) gets `pass_rate=None`.

    Args:
        rows: rendered rows (`prompt`, schema columns, `frame`, `resized_sizes`).
        completions: per row, its decoded samples.
        reward_funcs: the RL rewards.
        spec: frame and pixel limits for rows without `frame` / `resized_sizes`.
    """
    flat_rows = [row for row, samples in zip(rows, completions, strict=True) for _ in samples]
    texts = [text for samples in completions for text in samples]
    messages = [[{"role": "assistant", "content": text}] for text in texts]
    columns = {
        k: [row.get(k) for row in flat_rows] for k in (flat_rows[0] if flat_rows else {}) if k not in _SKIP_COLUMNS
    }
    prompts = [row.get("prompt") for row in flat_rows]
    rewards = {}
    for func in reward_funcs:
        values = func(prompts=prompts, completions=messages, **columns)
        rewards[getattr(func, "__name__", type(func).__name__)] = [None if v is None else float(v) for v in values]
    ious = IoUReward()(completions=messages, **columns)  # IoU in the right image, 0 elsewhere: `mean_iou`
    scores = score_completions(
        messages,
        columns.get("solution"),
        columns.get("target_image"),
        columns.get("image_sizes"),
        columns.get("resized_sizes"),
        columns.get("frame"),
        spec=spec,
        require_think=require_think,
        images=columns.get("images"),
        ids=columns.get("id"),
    )
    records, start = [], 0
    for row, samples in zip(rows, completions):
        end = start + len(samples)
        labelled = row.get("solution") is not None
        strict = [bool(s.strict) for s in scores[start:end]]
        iou = [None if v is None else round(float(v), 6) for v in ious[start:end]]
        records.append({
            "id": str(row["id"]),
            "task": row.get("task"),
            "num_generations": len(samples),
            "pass_rate": (sum(strict) / len(strict) if strict else 0.0) if labelled else None,
            "mean_iou": _mean(iou) if labelled else None,
            "strict": strict,
            "iou": iou,
            "outcomes": [s.outcome for s in scores[start:end]],
            "rewards": {name: values[start:end] for name, values in rewards.items()},
            "completions": list(samples),
        })  # fmt: skip
        start = end
    return records


def _ids_digest(ids: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for rid in ids:
        digest.update(str(rid).encode())
        digest.update(b"\0")
    return digest.hexdigest()


class RejectionSampler:
    """Sample, score, shard, resume, merge (see the module docstring).

    Args:
        config (`RejectionSamplingConfig`): what to sample and keep.
        dataset (`datasets.Dataset`, *optional*): the schema split to sample; defaults to
            `load_dataset(config.dataset_name, config.dataset_config, split=config.dataset_split)`.
        processor (*optional*): the model's processor; loaded from `config.model_name_or_path` by default.
        on_chunk_done (`Callable[[int], None]`, *optional*): called with each chunk index once its shard is written
            (progress hooks; an exception raised there stops the run like a kill would).
        generator (*optional*): any object with `generate(prompts, images, n, seed) -> list[list[str]]` (e.g. a
            client of a served model); defaults to the backend `config.backend` names, loaded on this process's device.

    Example (not run here: it needs a model):
    ```python
    config = RejectionSamplingConfig(model_name_or_path="out/sft/merged", dataset_name="data/pool", output_dir="rl")
    result = RejectionSampler(config).run()   # resumes if `rl-samples/` holds shards of the same plan
    ```
    """

    def __init__(
        self,
        config: RejectionSamplingConfig,
        *,
        dataset: Any = None,
        processor: Any = None,
        on_chunk_done: Callable[[int], None] | None = None,
        generator: Any = None,
    ) -> None:
        if config.model_name_or_path is None:
            raise ValueError("RejectionSamplingConfig.model_name_or_path is required: the merged SFT model")
        if dataset is None and config.dataset_name is None:
            raise ValueError(
                "RejectionSamplingConfig.dataset_name is required: the schema set whose prompts to sample"
            )
        self.config = config
        self._dataset = dataset
        self._processor = processor
        self.on_chunk_done = on_chunk_done
        self._generator = generator

    # ------------------------------------------------------------------------------------------------------------
    # setup

    def _state(self):
        import torch
        from accelerate import PartialState

        # accelerate 1.15 on CPU: processes form a real gloo group only when the state is built with cpu=True;
        # `timeout` reaches init_process_group (as TrainingArguments.ddp_timeout does) and bounds every barrier
        cpu = self.config.use_cpu or not torch.cuda.is_available()
        return PartialState(cpu=cpu, timeout=timedelta(seconds=self.config.ddp_timeout))

    def _load_dataset(self):
        if self._dataset is not None:
            return self._dataset
        from ..datasets_builders.reader import load_schema_dataset

        cfg = self.config
        return load_schema_dataset(cfg.dataset_name, cfg.dataset_config, split=cfg.dataset_split)

    def _load_processor(self):
        if self._processor is not None:
            return self._processor
        from ..models import load_processor

        cfg = self.config
        return load_processor(cfg.model_name_or_path, cfg.min_pixels, cfg.max_pixels, padding_side="left")

    def _frame(self) -> Frame:
        if self.config.frame:
            return Frame.parse(self.config.frame)
        from transformers import AutoConfig

        from ..geometry import frame_for_model

        return frame_for_model(AutoConfig.from_pretrained(self.config.model_name_or_path))

    def _plan(self, dataset: Any, frame: Frame) -> dict[str, Any]:
        cfg = self.config
        return {
            "dataset": cfg.dataset_name or getattr(dataset, "info", None) and dataset.info.dataset_name or "dataset",
            "dataset_config": cfg.dataset_config,
            "split": cfg.dataset_split,
            "num_rows": len(dataset),
            "ids_sha256": _ids_digest(dataset["id"]),
            "model": cfg.model_name_or_path,
            "template": cfg.template,
            "frame": frame.value,
            "reward_funcs": [str(getattr(f, "__name__", f)) for f in cfg.reward_funcs],
            "generation": cfg.generation_settings(),
        }

    def _check_plan(self, plan: dict[str, Any]) -> None:
        """Write the plan, or check that the shards already in `samples_dir` were sampled under the same one."""
        check_plan(self.config.samples_dir, plan, restart_flag="--resample")

    # ------------------------------------------------------------------------------------------------------------
    # the run

    def run(self) -> dict[str, Any]:
        """Sample every pending chunk on this process, then (main process) write the RL set. Returns a summary."""
        from accelerate.utils import gather_object

        from ..templates import get_template, pixel_limits_from_processor, render_dataset

        cfg = self.config
        state = self._state()
        started = time.perf_counter()
        samples_dir = Path(cfg.samples_dir)
        with state.main_process_first():  # datasets caches the load and the render: one process writes them
            dataset = self._load_dataset()
            if cfg.max_prompts is not None:
                dataset = dataset.select(range(min(cfg.max_prompts, len(dataset))))
            processor = self._load_processor()
            frame = self._frame()
            rendered = render_dataset(dataset, cfg.template, frame, processor=processor, with_completion=False)
        plan = self._plan(dataset, frame)
        if state.is_main_process:
            if cfg.resample and samples_dir.exists():
                shutil.rmtree(samples_dir)
            remove_stale_temp_files(samples_dir)  # a kill between an atomic write and its rename leaves one
            self._check_plan(plan)
        state.wait_for_everyone()
        if not state.is_main_process:
            self._check_plan(plan)  # same plan on every process (same data, same settings)

        n_chunks = -(-len(rendered) // cfg.chunk_size)
        pending = sorted(set(range(n_chunks)) - done_chunks(samples_dir))
        mine = pending[state.process_index :: state.num_processes]
        limits = {"min_pixels": 3136, "max_pixels": 1003520, "factor": 28, **pixel_limits_from_processor(processor)}
        spec = FrameSpec(frame, limits["min_pixels"], limits["max_pixels"], limits["factor"])
        template = get_template(cfg.template)
        rewards = resolve_reward_funcs(cfg.reward_funcs)
        done_here: list[int] = []
        if mine:
            from .generation import make_generator

            generator = self._generator or make_generator(
                cfg,
                cfg.model_name_or_path,
                processor,
                state.device,
                distributed=state.num_processes > 1,
                max_images=max((len(sizes) for sizes in dataset["image_sizes"]), default=1),
            )
            with _progress(state.is_main_process, len(mine) * cfg.chunk_size, "sampling") as advance:
                for chunk in mine:
                    rows = rendered.select(
                        range(chunk * cfg.chunk_size, min((chunk + 1) * cfg.chunk_size, len(rendered)))
                    )
                    records = []
                    for b, start in enumerate(range(0, len(rows), cfg.batch_size)):
                        batch = list(rows.select(range(start, min(start + cfg.batch_size, len(rows)))))
                        completions = generator.generate(
                            [row["prompt"] for row in batch],
                            [row.get("images") for row in batch],
                            n=cfg.num_generations,
                            seed=cfg.seed + 1000 * chunk + b,
                        )
                        batch_records = score_samples(
                            batch, completions, rewards, spec, require_think=template.reasoning
                        )
                        for offset, record in enumerate(batch_records):
                            record.update(index=chunk * cfg.chunk_size + start + offset, chunk=chunk)
                        records.extend(batch_records)
                        advance(len(batch))
                    crash_point("sample.chunk_generated")
                    write_shard(samples_dir, chunk, records, label="sample")
                    done_here.append(chunk)
                    if self.on_chunk_done is not None:
                        self.on_chunk_done(chunk)
                    crash_point("sample.chunk_done")
        chunks_by_process = gather_object([done_here]) if state.num_processes > 1 else [done_here]
        state.wait_for_everyone()
        result: dict[str, Any] = {
            "world_size": state.num_processes,
            "chunks": n_chunks,
            "resumed_chunks": n_chunks - len(pending),
        }
        if state.is_main_process:
            result.update(self._finish(dataset, samples_dir, chunks_by_process, time.perf_counter() - started))
        return result

    def _finish(self, dataset: Any, samples_dir: Path, chunks_by_process: list, seconds: float) -> dict[str, Any]:
        """Merge the shards once and write the RL set and the run record (main process)."""
        cfg = self.config
        missing = sorted(set(range(-(-len(dataset) // cfg.chunk_size))) - done_chunks(samples_dir))
        if missing:
            raise RuntimeError(f"chunks {missing} have no shard after sampling; rerun to resume")
        samples = read_samples(samples_dir)
        if len(samples) != len(dataset):
            raise RuntimeError(f"{len(samples)} sampled prompts for {len(dataset)} rows in {samples_dir}")
        run = {
            "world_size": len(chunks_by_process),
            "chunks_by_process": {str(rank): chunks for rank, chunks in enumerate(chunks_by_process)},
            "seconds": round(seconds, 3),
            "prompts": len(samples),
        }
        # a run killed after writing the RL set but before its run record finds the set it wrote: the claim lets
        # the rerun replace it (same shards, same set) instead of refusing a non-empty output_dir
        overwrite = claim_output(samples_dir, cfg.output_dir, cfg.overwrite)
        crash_point("sample.before_build")
        try:
            built = build_rl_set(
                dataset, samples_dir, cfg.output_dir, cfg.band(), overwrite=overwrite, repo_id=cfg.repo_id,
                extra_stats={"processes": len(chunks_by_process)}, decontaminate_against=cfg.decontaminate_against,
            )  # fmt: skip
        except EmptyRLSetError as exc:
            _write_json(samples_dir / RUN_FILE, {**run, "kept": 0})
            release_output(samples_dir)
            _summary(exc.per_task)
            raise
        crash_point("sample.after_build")
        run["kept"] = built["rows"]["train"]
        _write_json(samples_dir / RUN_FILE, run)
        release_output(samples_dir)
        _summary(built["per_task"])
        return {**built, **run, "samples_dir": str(samples_dir)}


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _summary(per_task: dict[str, dict[str, int]]) -> None:
    try:
        from ..reporting import print_summary
    except ImportError:  # pragma: no cover
        return
    columns = ["task", "prompts", *OUTCOMES[:3]]
    rows = [{"task": t, "prompts": sum(c.values()), **{o: c.get(o, 0) for o in OUTCOMES}} for t, c in per_task.items()]
    print_summary("Rejection sampling", rows, columns)


class _progress:
    """A rich progress bar on the main process (a no-op elsewhere and when stderr is not a terminal's)."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.enabled, self.total, self.description = enabled, total, description
        self._progress = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled or os.environ.get("TRL_MIG_DISABLE_PROGRESS"):
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        )
        self._progress.start()
        task = self._progress.add_task(self.description, total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
