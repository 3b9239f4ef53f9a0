"""`trl-mig eval`: a model (or a file of someone else's predictions) on MIG-Bench, MC-Bench or a built schema set.

One loop for every benchmark (`run_evaluation`): rows a batch at a time from an `EvalSource`, prompts rendered by the
training template for the model's frame, greedy answers from the sampler's generation backends (decoded as GRPO
decodes: cut at EOS, `skip_special_tokens=True`), each batch scored and appended to `predictions.jsonl` at once, so a
killed run resumes where it stopped (`resume` skips the ids already in the file; settings are pinned in
`eval_plan.json`). At the end every answer is scored again from its text, so a resumed run and an uninterrupted one
write the same `results.json`.

`score_predictions` scores external predictions (`{"id", "output"}` lines) the same way, with no model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from ..crash import crash_point, wants
from ..distributed import check_ddp_timeout, ddp_timeout_field
from ..geometry import DEFAULT_FACTOR, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame
from ..io_utils import atomic_write
from .results import draw_gallery, plot_task_accuracy, write_results
from .sources import EvalSource, MIGBenchSource, make_source


logger = logging.getLogger(__name__)

__all__ = ["EvalArguments", "evaluate_model", "read_predictions", "run_evaluation", "score_outputs",
           "score_predictions"]  # fmt: skip

_MID_LINE = wants("eval.mid_line")
PREDICTIONS_FILE = "predictions.jsonl"
PLAN_FILE = "eval_plan.json"
#: per-process answers under `accelerate launch` (merged into `predictions.jsonl` at the end)
PART_PREFIX = "predictions.part-"
#: a generation backend as the loop sees it: prompts + images -> (text, confidence or None) per prompt
GenerateFn = Callable[[list[list[dict[str, Any]]], list[list[Any]]], list[tuple[str, float | None]]]


@dataclass
class EvalArguments:
    """Arguments of `trl-mig eval` (flags accept `--image-root` and `--image_root` alike)."""

    model: str | None = field(
        default=None, metadata={"help": "Checkpoint folder or Hub id to evaluate (not with --predictions)."}
    )
    benchmark: Literal["mig-bench", "mc-bench", "schema"] = field(
        default="mig-bench",
        metadata={"help": "mig-bench (Acc@0.5 per task), mc-bench (AP50, image accuracy) or schema (a built set)."},
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder the benchmark's image paths are relative to (for MIG-Bench: the one holding "
                  "MIG-Bench/)."},
    )  # fmt: skip
    output_dir: str = field(default="eval", metadata={"help": "Where predictions, results and pictures go."})
    annotations: str | None = field(
        default=None,
        metadata={"help": "Benchmark annotation file; MIG-Bench defaults to the MIG_data.json shipped with trl-mig."},
    )
    data: str | None = field(
        default=None, metadata={"help": "A built schema set (`trl-mig build ...` folder or Hub id) to evaluate on."}
    )
    split: str | None = field(default=None, metadata={"help": "Split of --data (default: test, else the only one)."})
    predictions: str | None = field(
        default=None,
        metadata={"help": "Score this JSONL of external predictions ({\"id\", \"output\"} per line) instead of "
                  "running a model; needs --frame."},
    )  # fmt: skip
    frame: str | None = field(
        default=None,
        metadata={"help": "Coordinate frame of the answers (qwen2_vl, qwen2_5_vl, qwen3_vl, pixel, normalized; "
                  "coco_xywh for --predictions only); default: from the model's model_type."},
    )  # fmt: skip
    template: str = field(
        default="mig-think-v1",
        metadata={"help": "Prompt template (recorded in the results); with --predictions it sets what format_rate "
                  "checks."},
    )  # fmt: skip
    min_pixels: int | None = field(
        default=None, metadata={"help": "Processor min_pixels (default: the model processor's own)."}
    )
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Processor max_pixels (default: the processor's own). Must match training for qwen2_5_vl."},
    )
    limit: int | None = field(default=None, metadata={"help": "At most N rows per task (smoke runs)."})
    tasks: list[str] | None = field(default=None, metadata={"help": "Only these tasks (e.g. diff region)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generation call."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Longest answer."})
    backend: Literal["auto", "hf", "vllm"] = field(
        default="auto", metadata={"help": "auto: vLLM when installed and CUDA is there, else transformers."}
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype (auto, bfloat16, float32, ...)."})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. flash_attention_2, sdpa."})
    gallery: int = field(default=4, metadata={"help": "Best and worst answers drawn (each); 0 draws none."})
    overwrite: bool = field(
        default=False, metadata={"help": "Start over in a non-empty --output-dir made with other settings."}
    )
    use_cpu: bool = field(
        default=False,
        metadata={"help": "Run on CPU even with a GPU (under `accelerate launch` on CPU it makes the gloo group)."},
    )
    ddp_timeout: int = ddp_timeout_field()
    update_model_card: bool = field(
        default=False,
        metadata={"help": "Write the results into the local model's README.md (model-index + trl-mig section)."},
    )

    def __post_init__(self) -> None:
        if self.predictions is None and self.model is None:
            raise ValueError("pass --model (a checkpoint to run) or --predictions (a JSONL of answers to score)")
        if self.predictions is not None and self.model is not None:
            raise ValueError("--model and --predictions exclude each other: score a file or run a model, not both")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        check_ddp_timeout(self.ddp_timeout)


# ---------------------------------------------------------------------------------------------------------------------
# scoring


def _limits(min_pixels: int | None, max_pixels: int | None, factor: int | None = None) -> dict[str, int]:
    return {
        "min_pixels": DEFAULT_MIN_PIXELS if min_pixels is None else int(min_pixels),
        "max_pixels": DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels),
        "factor": DEFAULT_FACTOR if factor is None else int(factor),
    }


def score_outputs(
    source: EvalSource,
    outputs: Sequence[str],
    *,
    frame: Frame | str,
    limits: Mapping[str, int],
    require_think: bool = True,
    confidences: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """Metrics of one answer per row of `source` (in its order): overall, per task, flags; MC-Bench adds `ap50` and
    `image_acc` when the source carries COCO ids."""
    from ..metrics.core import compute_grounding_metrics

    frame = Frame.parse(frame)
    gold = source.gold()
    sizes = gold["image_sizes"]
    if frame.needs_image_size and any(s is None for s in sizes):
        raise ValueError(
            f"frame {frame.value!r} needs each image's size: pass --image-root (the folder the benchmark's image paths "
            "are relative to)"
        )
    metrics = compute_grounding_metrics(
        list(outputs), gold["solution"], target_images=gold["target_image"],
        image_sizes=sizes if frame.needs_image_size else None, tasks=gold["task"], frame=frame,
        require_think=require_think, ids=gold["id"], **limits,
    )  # fmt: skip
    if source.coco_ids is not None:
        from ..metrics.mc_bench import compute_mc_bench_metrics
        from ..scoring import FrameSpec

        rows = [dict(zip(gold, values)) for values in zip(*gold.values())]
        spec = FrameSpec(frame, limits["min_pixels"], limits["max_pixels"], limits["factor"])
        mc = compute_mc_bench_metrics(list(outputs), rows, source.coco_ids, spec=spec, confidences=confidences)
        metrics["overall"].update({k: v for k, v in mc["overall"].items() if k != "n"})
        for task, values in (mc.get("tasks") or {}).items():
            metrics.setdefault("tasks", {}).setdefault(task, {}).update({k: v for k, v in values.items() if k != "n"})
    metrics["flags"].update({k: v for k, v in source.flags.items()})
    return metrics


def _prediction_lines(
    rows: Sequence[Mapping[str, Any]], outputs: Sequence[str], confidences: Sequence[float | None], frame: Frame,
    limits: Mapping[str, int], require_think: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """`predictions.jsonl` lines (DESIGN.md section 4 layout, plus `task` and `confidence`) for scored rows."""
    from ..metrics.core import score_rows

    scores = score_rows(
        list(outputs), [r["solution"] for r in rows], [r["target_image"] for r in rows],
        [r["image_sizes"] for r in rows] if frame.needs_image_size else None, None, frame,
        limits["min_pixels"], limits["max_pixels"], limits["factor"], require_think,
    )  # fmt: skip
    lines = []
    for row, text, confidence, score in zip(rows, outputs, confidences, scores):
        line = {
            "id": str(row["id"]),
            "task": row.get("task"),
            "output": text,
            "pred_boxes": [[round(float(v), 6) for v in box] for box in score.pred_boxes],
            "pred_image": score.pred_image,
            "iou": round(float(score.iou), 6),
            "correct": bool(score.iou >= 0.5),
        }
        if confidence is not None:
            line["confidence"] = round(float(confidence), 6)
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# predictions.jsonl


def read_predictions(path: str | os.PathLike, repair: bool = True) -> dict[str, dict[str, Any]]:
    """The complete lines of a `predictions.jsonl` by id. A last line cut by a crash is dropped and, with `repair`,
    the file rewritten without it, so the next append starts on a clean line."""
    path = Path(path)
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    done: dict[str, dict[str, Any]] = {}
    good = 0
    for line in raw.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not line.endswith(b"\n"):
            break
        done[str(record["id"])] = record
        good += len(line)
    if good != len(raw) and repair:
        logger.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run", path,
                       len(raw) - good)  # fmt: skip
        atomic_write(path, lambda handle: handle.write(raw[:good]))
    return done


def _append(path: Path, lines: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    with path.open("a", encoding="utf-8") as handle:
        if _MID_LINE:  # test-only: a kill in the middle of the write, the last line cut (see trl_mig.crash)
            half = len(text) // 2
            handle.write(text[:half])
            handle.flush()
            os.fsync(handle.fileno())
            crash_point("eval.mid_line")
            text = text[half:]
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _check_plan(output_dir: Path, plan: Mapping[str, Any], overwrite: bool) -> None:
    """Pin the settings a `predictions.jsonl` was made with; resuming under other settings would mix two runs."""
    path = output_dir / PLAN_FILE
    answered = (output_dir / PREDICTIONS_FILE).is_file() or any(output_dir.glob(f"{PART_PREFIX}*.jsonl"))
    if path.is_file() and answered:
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        if changed and not overwrite:
            raise ValueError(
                f"{output_dir} holds predictions made with other settings ({', '.join(changed)} differ); use another "
                "--output-dir or pass --overwrite to start over"
            )
        if changed:  # start over: the answers of every process of the old run go
            for stale in [output_dir / PREDICTIONS_FILE, *output_dir.glob(f"{PART_PREFIX}*.jsonl")]:
                stale.unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


# ---------------------------------------------------------------------------------------------------------------------
# the loop


def run_evaluation(
    source: EvalSource,
    generate: GenerateFn,
    output_dir: str | os.PathLike,
    *,
    frame: Frame | str,
    template: str = "mig-think-v1",
    limits: Mapping[str, int] | None = None,
    batch_size: int = 8,
    meta: Mapping[str, Any] | None = None,
    gallery: int = 4,
    plan: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    state: Any = None,
) -> dict[str, Any]:
    """Answer every row of `source` not yet in `output_dir/predictions.jsonl`, then score all and write the results.

    Args:
        source: the rows (`trl_mig.evaluation.sources`).
        generate: prompts + images -> `(text, confidence or None)` per prompt (see `hf_generate_fn`).
        output_dir: `predictions.jsonl`, `results.json`, `results.md`, `task_accuracy.png`, `gallery/`.
        frame: the frame the model answers in; template: the prompt template (`mig-think-v1`, `mig-direct-v1`, ...).
        limits: the processor's `min_pixels`, `max_pixels`, `factor` (prompts state sizes and answers are scored
            with them).
        meta: recorded under `meta` in `results.json` (model, backend, ...).
        plan: settings pinned for resumption (`eval_plan.json`); defaults to frame, template, limits, benchmark.
        overwrite: start over when `output_dir` holds predictions of other settings.
        state: accelerate's `PartialState` under `accelerate launch`: each process answers every `num_processes`-th
            pending row into its own part file; the main process merges them into `predictions.jsonl` once (one line
            per id), scores and writes; every process returns the results.

    Returns:
        the `results.json` dict.
    """
    from ..templates import get_template, render_prompt

    frame = Frame.parse(frame)
    limits = _limits(None, None) | dict(limits or {})
    output_dir = Path(output_dir)
    require_think = get_template(template).reasoning
    plan = dict(plan or {}) | {"benchmark": source.name, "frame": frame.value, "template": template, **limits}
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    main = rank == 0
    if main:
        _check_plan(output_dir, plan, overwrite)
    _barrier(state)
    # every process writes its own file (appends from several processes to one file would interleave); the main
    # process merges them once at the end. Resuming reads them all, whatever the earlier world size was.
    path = output_dir / (PREDICTIONS_FILE if world == 1 else f"{PART_PREFIX}{rank}.jsonl")
    done = _read_all(output_dir, own=path)
    todo = [i for i, rid in enumerate(source.ids) if rid not in done]
    mine = todo[rank::world]
    logger.info("%d rows, %d already answered, %d to go (%d here)", len(source), len(source) - len(todo), len(todo),
                len(mine))  # fmt: skip
    from ..sampling.sampler import _progress

    started = time.perf_counter()
    with _progress(progress and main, len(mine), "eval") as advance:  # the sampler's rich bar
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size]
            rows = source.rows(batch)
            prompts = [
                render_prompt(row, template, frame, min_pixels=limits["min_pixels"], max_pixels=limits["max_pixels"],
                              factor=limits["factor"], multi_target=source.multi_target)
                for row in rows
            ]  # fmt: skip
            answers = generate(prompts, [row["images"] for row in rows])
            texts = [a[0] for a in answers]
            lines = _prediction_lines(rows, texts, [a[1] for a in answers], frame, limits, require_think)
            crash_point("eval.before_append")
            _append(path, lines)
            crash_point("eval.after_append")
            done.update((line["id"], line) for line in lines)
            advance(len(batch))
    seconds = time.perf_counter() - started
    _barrier(state)
    if not main:  # the main process merges, scores and writes; the others return what it wrote
        _barrier(state)
        return json.loads((output_dir / "results.json").read_text(encoding="utf-8"))
    crash_point("eval.before_merge")
    done = _merge(output_dir, source.ids)
    unknown = sorted(set(done) - set(source.ids))
    outputs = [done[rid]["output"] for rid in source.ids]
    confidences = [done[rid].get("confidence") for rid in source.ids]
    metrics = score_outputs(source, outputs, frame=frame, limits=limits, require_think=require_think,
                            confidences=confidences)  # fmt: skip
    if unknown:
        metrics["flags"]["ignored_ids"] = unknown
    results = _assemble(metrics, source, frame, template, limits, meta, generated=len(todo), seconds=seconds,
                        world_size=world)  # fmt: skip
    _finish(results, source, done, output_dir, gallery)
    _barrier(state)
    return results


def _barrier(state: Any) -> None:
    if state is not None and state.num_processes > 1:
        state.wait_for_everyone()


def _read_all(output_dir: Path, own: Path) -> dict[str, dict[str, Any]]:
    """Answers already in `predictions.jsonl` and every process's part file. Only `own` may be repaired (a cut last
    line dropped): another process may be appending to its own file."""
    done: dict[str, dict[str, Any]] = {}
    for path in [output_dir / PREDICTIONS_FILE, *sorted(output_dir.glob(f"{PART_PREFIX}*.jsonl"))]:
        done.update(read_predictions(path, repair=path == own))
    return done


def _merge(output_dir: Path, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Fold the part files into `predictions.jsonl` (source order; ids the source lacks after them), atomically,
    then remove the parts: one line per id, whatever processes and resumptions wrote it."""
    parts = sorted(output_dir.glob(f"{PART_PREFIX}*.jsonl"))
    done: dict[str, dict[str, Any]] = {}
    for path in [output_dir / PREDICTIONS_FILE, *parts]:
        done.update(read_predictions(path))
    order = {rid: k for k, rid in enumerate(ids)}
    ranked = sorted(done, key=lambda rid: (order.get(rid, len(order)), rid))
    text = "".join(json.dumps(done[rid], ensure_ascii=False) + "\n" for rid in ranked)
    atomic_write(output_dir / PREDICTIONS_FILE, lambda handle: handle.write(text.encode("utf-8")), label="eval.merge")
    # a kill here leaves the parts beside a complete predictions.jsonl: the rerun reads both (one record per id)
    # and merges again, so nothing is lost or duplicated
    crash_point("eval.merge_before_unlink")
    for path in parts:
        path.unlink(missing_ok=True)
    return done


def _assemble(
    metrics: dict[str, Any], source: EvalSource, frame: Frame, template: str | None, limits: Mapping[str, int],
    meta: Mapping[str, Any] | None, **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    from ..scripts.common import versions

    results = {k: metrics[k] for k in ("overall", "tasks", "mig_bench_avg_acc@0.5", "flags") if k in metrics}
    results["meta"] = {
        "benchmark": source.name,
        **source.description,
        "n": len(source),
        "template": template,
        "frame": frame.value,
        "pixel_limits": dict(limits),
        **dict(meta or {}),
        **extra,
        "versions": versions(),
    }
    return results


def _finish(
    results: dict[str, Any], source: EvalSource, predictions: Mapping[str, Any], output_dir: Path, gallery: int
) -> None:
    images: list[Path] = []
    plot = plot_task_accuracy(results, output_dir / "task_accuracy.png")
    if plot is not None:
        images.append(plot)
    if gallery:
        try:
            images += draw_gallery(source, predictions, output_dir / "gallery", per_side=gallery)
        except ValueError as exc:  # e.g. external predictions scored without --image-root: nothing to draw on
            logger.warning("no gallery: %s", exc)
    write_results(results, output_dir, images)


# ---------------------------------------------------------------------------------------------------------------------
# external predictions


def _read_external(path: Path) -> list[tuple[int, Any, str]]:
    """`(line number, id, output)` per line; a line that is not `{"id": ..., "output": "..."}` is an error naming it."""
    out = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "id" not in record or "output" not in record:
                raise ValueError(f'{path}:{number}: expected {{"id": ..., "output": "<raw model text>"}}')
            output = record["output"]
            out.append((number, record["id"], output if isinstance(output, str) else json.dumps(output)))
    return out


def score_predictions(
    predictions: str | os.PathLike,
    *,
    frame: Frame | str,
    benchmark: str = "mig-bench",
    annotations: str | None = None,
    data: str | None = None,
    split: str | None = None,
    image_root: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    tasks: Sequence[str] | None = None,
    output_dir: str | os.PathLike | None = None,
    gallery: int = 4,
    template: str | None = "mig-think-v1",
) -> dict[str, Any]:
    """Score a JSONL of external answers (`{"id": ..., "output": "<raw model text>"}` per line) box-only, as the
    benchmark's authors do: Acc@0.5 per task against the (repaired) gold, whatever image the answer names.

    MIG-Bench ids are record positions in the official file (`7` or `"7"`). Ids the benchmark lacks are an error;
    rows with no prediction count as wrong and are listed in `flags.missing_ids`; an id given twice is an error.
    Frames that need image sizes (`qwen2_5_vl`, `pixel`, `coco_xywh`) need `image_root`; `qwen2_5_vl` also needs the
    pixel limits the model ran with (its coordinates are in the resized image).

    `template` only decides what `format_rate` checks (`<think>` + `<answer>` for `mig-think-v1`, the answer block
    alone for `mig-direct-v1`; `None`: the answer block alone); the boxes are read the same way whatever it is.

    Returns the `results.json` dict (also written, with `results.md`, the plot and scored `predictions.jsonl`, to
    `output_dir` when given).
    """
    frame = Frame.parse(frame)
    if frame.needs_image_size and image_root is None and data is None:
        raise ValueError(f"frame {frame.value!r} is in pixels: pass --image-root so image sizes can be read")
    if frame is Frame.QWEN2_5_VL and (min_pixels is None or max_pixels is None):
        raise ValueError(
            "frame 'qwen2_5_vl' is in pixels of the resized image: pass the --min-pixels and --max-pixels the model "
            "ran with (Qwen2.5-VL-7B-Instruct's processor: 3136 and 12845056)"
        )
    path = Path(predictions)
    source = make_source(benchmark, annotations=annotations, image_root=image_root, data=data, split=split,
                         tasks=tasks)  # fmt: skip
    records = _read_external(path)
    index = {rid: i for i, rid in enumerate(source.ids)}
    outputs: list[str | None] = [None] * len(source)
    unknown, other_tasks, duplicates = [], 0, []
    for number, rid, output in records:
        key = _normalise_id(source, rid)
        if key is None:
            unknown.append(f"{rid!r} (line {number})")
            continue
        if key not in index:
            other_tasks += 1  # a real id of a task left out by --tasks
            continue
        if outputs[index[key]] is not None:
            duplicates.append(f"{rid!r} (line {number})")
        outputs[index[key]] = output
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} id(s) are not {source.name} ids: {', '.join(unknown[:10])}"
                         + (" ..." if len(unknown) > 10 else ""))  # fmt: skip
    if duplicates:
        raise ValueError(f"{path}: id(s) given twice: {', '.join(duplicates[:10])}")
    missing = [source.ids[i] for i, o in enumerate(outputs) if o is None]
    texts = [o if o is not None else "" for o in outputs]
    limits = _limits(min_pixels, max_pixels)
    require_think = False
    if template is not None:
        from ..templates import get_template

        require_think = get_template(template).reasoning
    metrics = score_outputs(source, texts, frame=frame, limits=limits, require_think=require_think)
    metrics["flags"]["missing_ids"] = missing
    results = _assemble(metrics, source, frame, template, limits, {"predictions": str(path)}, scored_as=(
        "box-only IoU >= 0.5 with the first predicted box, against the repaired gold; missing ids count as wrong"),
        lines_read=len(records), lines_of_other_tasks=other_tasks)  # fmt: skip
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        rows = [dict(zip(source.gold(), values)) for values in zip(*source.gold().values())]
        lines = _prediction_lines(rows, texts, [None] * len(rows), frame, limits, require_think)
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        atomic_write(output_dir / PREDICTIONS_FILE, lambda handle: handle.write(text.encode("utf-8")))
        can_draw = image_root is not None or data is not None
        _finish(results, source, {line["id"]: line for line in lines}, output_dir, gallery if can_draw else 0)
    return results


def _normalise_id(source: EvalSource, rid: Any) -> str | None:
    """The source's id for an external id, or `None` when it has none (MIG-Bench: `7`, `"7"`, `" 7 "` -> `"7"`)."""
    if isinstance(source, MIGBenchSource):
        try:
            return str(source.position(rid))
        except ValueError:
            return None
    key = str(rid)
    return key if key in source.all_ids else None


# ---------------------------------------------------------------------------------------------------------------------
# a model


def hf_generate_fn(generator: Any, confidence: bool) -> GenerateFn:
    """The loop's generate function over an `HFGenerator` / `VLLMGenerator` (confidences from HF only)."""
    if confidence and hasattr(generator, "generate_with_confidence"):
        return lambda prompts, images: generator.generate_with_confidence(prompts, images)
    return lambda prompts, images: [(texts[0], None) for texts in generator.generate(prompts, images, n=1)]


def evaluate_model(args: EvalArguments) -> dict[str, Any]:
    """`trl-mig eval`: run `args.model` on the benchmark (or score `args.predictions`) and write the results."""
    if args.predictions is not None:
        if args.frame is None:
            raise ValueError("--predictions needs --frame: the syntax of an answer does not tell its frame")
        return score_predictions(
            args.predictions, frame=args.frame, benchmark=args.benchmark, annotations=args.annotations,
            data=args.data, split=args.split, image_root=args.image_root, min_pixels=args.min_pixels,
            max_pixels=args.max_pixels, tasks=args.tasks, output_dir=args.output_dir, gallery=args.gallery,
            template=args.template,
        )  # fmt: skip
    import torch
    from accelerate import PartialState
    from transformers import AutoConfig

    import trl_mig.models  # noqa: F401  (registers trl-mig's processor classes, named by tiny checkpoints)

    from ..models.loading import load_processor
    from ..sampling.generation import HFGenerator, VLLMGenerator
    from ..templates import pixel_limits_from_processor, resolve_frame

    # timeout: as TrainingArguments.ddp_timeout reaches accelerate (transformers 5.24), to init_process_group
    state = PartialState(
        cpu=args.use_cpu or not torch.cuda.is_available(), timeout=timedelta(seconds=args.ddp_timeout)
    )
    source = make_source(args.benchmark, annotations=args.annotations, image_root=args.image_root, data=args.data,
                         split=args.split, tasks=args.tasks, limit=args.limit)  # fmt: skip
    processor = load_processor(args.model, args.min_pixels, args.max_pixels)
    limits = _limits(None, None) | pixel_limits_from_processor(processor)
    frame = resolve_frame(args.frame or AutoConfig.from_pretrained(args.model))
    backend = args.backend
    if backend == "auto":
        from ..import_utils import is_vllm_available

        backend = "vllm" if is_vllm_available() and torch.cuda.is_available() and not args.use_cpu else "hf"
    if backend == "vllm":
        generator: Any = VLLMGenerator(args.model, processor, max_new_tokens=args.max_new_tokens, temperature=0.0,
                                       dtype=args.dtype, max_images=_max_images(source),
                                       distributed=state.num_processes > 1)  # fmt: skip
    else:
        from transformers import AutoModelForImageTextToText

        kwargs: dict[str, Any] = {"dtype": args.dtype}
        if args.attn_implementation:
            kwargs["attn_implementation"] = args.attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(args.model, **kwargs).to(state.device).eval()
        generator = HFGenerator(model, processor, max_new_tokens=args.max_new_tokens, temperature=0.0)
    confidence = source.name == "mc-bench" or source.coco_ids is not None
    meta = {"model": args.model, "backend": backend, "max_new_tokens": args.max_new_tokens,
            "confidence": "exp(mean token log-prob)" if confidence and backend == "hf" else "1 (not measured)"}  # fmt: skip
    plan = {"model": args.model, "max_new_tokens": args.max_new_tokens, "backend": backend,
            "tasks": sorted(args.tasks or []), "limit": args.limit}  # fmt: skip
    results = run_evaluation(
        source, hf_generate_fn(generator, confidence), args.output_dir, frame=frame, template=args.template,
        limits=limits, batch_size=args.batch_size, meta=meta, gallery=args.gallery, plan=plan,
        overwrite=args.overwrite, state=state,
    )  # fmt: skip
    if args.update_model_card and state.is_main_process:
        _update_card(args.model, results)
    return results


def _max_images(source: EvalSource) -> int:
    """The most images any row has: vLLM's `limit_mm_per_prompt` (its default allows one image per prompt)."""
    try:
        sizes = source.gold()["image_sizes"]
        counts = [len(s) for s in sizes if s is not None]
    except ValueError:  # sizes need the images (MIG-Bench without --image-root): fall back on the records
        counts = []
    if not counts and hasattr(source, "records"):
        counts = [len(source.records[p]["images"]) for p in source.positions]
    return max(counts, default=1)


def _update_card(model: str, results: Mapping[str, Any]) -> None:
    from ..trainers.cards import add_eval_results

    readme = Path(model) / "README.md"
    if not Path(model).is_dir():
        raise ValueError(f"--update-model-card needs a local checkpoint folder; {model} is not one")
    add_eval_results(readme, results, model_name=Path(model).name)
    logger.info("wrote the results into %s", readme)


def arguments_dict(args: EvalArguments) -> dict[str, Any]:  # pragma: no cover - for notebooks
    return asdict(args)
