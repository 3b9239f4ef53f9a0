"""Evaluation speed: scoring 100,000 predictions (parsing included), and generation batched vs one prompt at a time.

Why: `trl-mig eval --predictions` and the end of every `trl-mig eval` score all answers from their text, and people
score many files (models x checkpoints x benchmarks); the target is under 1 s for 100,000 answers on one core,
parsing included. Generation dominates a model evaluation, so the loop batches prompts; the second figure is what
batching buys on the tiny model on this CPU (on a GPU the ratio is larger: one prompt at a time leaves it idle).

Scoring inputs (fixed seed), MIG-Bench-like rows with 3 images and a known target:
- `model-like`: 70% answers in the trained format (`<think>...</think><answer>{"image": k, "bbox_2d": [...]}</answer>`),
  10% Qwen2-VL box tokens with the image named in words, 10% Qwen2.5-VL's native JSON list in a code fence, 10% garbage
  (no box, an unfinished thought, truncated JSON, empty);
- `adversarial`: a quarter each of trained format, box tokens, boxes in free text, and garbage (most answers take the
  slow general parser).
Timed: `compute_grounding_metrics(...)` with ten tasks, frames `qwen2_vl` (0-1000 grid) and `qwen2_5_vl` (resized
pixels: sizes from the rows), best of 3 on one pinned core; `parse_answer` alone is reported beside it.

Generation: the tiny Qwen2.5-VL (`trl_mig.testing.tiny_checkpoint`) answers 32 generated schema rows greedily with
`max_new_tokens` 32, through `run_evaluation`, with `--batch-size 8` and `--batch-size 1`; rows per second of each, the
ratio, and whether both wrote the same answers (left padding can change greedy answers in rare ties; reported, not
asserted).

Run alone: `python benchmarks/bench_eval.py [--n 100000] [--rows 32]`.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import SEED, best_of, format_table, machine_info, pin_to_one_core


TASKS = ("common_object", "correspondence", "diff", "group_grounding", "multi_view", "object_tracking", "reasoning",
         "refer_grounding", "region", "view_diff")  # fmt: skip
SIZES = [(800, 600), (1000, 700), (640, 480)]
ORDINALS = ("first", "second", "third")


def _answer(rng: random.Random, mix: str, x: int, y: int, image: int) -> str:
    draw = rng.random()
    cut = (0.7, 0.8, 0.9) if mix == "model-like" else (0.25, 0.5, 0.75)
    if draw < cut[0]:
        return (f"<think>The red cup is on the left of image {image}.</think>"
                f'<answer>{{"image": {image}, "bbox_2d": [{x}, {y}, {x + 200}, {y + 150}]}}</answer>')  # fmt: skip
    if draw < cut[1]:
        return f"It is in the {ORDINALS[image - 1]} image. <|box_start|>({x},{y}),({x + 190},{y + 140})<|box_end|>"
    if draw < cut[2]:
        if mix == "model-like":
            return f'```json\n[{{"bbox_2d": [{x}, {y}, {x + 50}, {y + 60}], "label": "cup"}}]\n```'
        return f"Looking at image {image}, the cup spans [{x}, {y}, {x + 210}, {y + 160}] roughly."
    return rng.choice(["I cannot tell.", "<think>the cup might be at (1,2),(3,4)", '<answer>{"image": 2, "bbox_2d": [1',
                       ""])  # fmt: skip


def make_rows(n: int, mix: str) -> dict[str, list[Any]]:
    rng = random.Random(SEED)
    columns: dict[str, list[Any]] = {"outputs": [], "gold": [], "target": [], "sizes": [], "tasks": []}
    for i in range(n):
        x, y, image = rng.randint(0, 500), rng.randint(0, 400), rng.randint(1, 3)
        columns["outputs"].append(_answer(rng, mix, x, y, image))
        columns["gold"].append([[x / 1000, y / 1000, (x + 200) / 1000, (y + 150) / 1000]])
        columns["target"].append(image - 1)
        columns["sizes"].append(SIZES)
        columns["tasks"].append(TASKS[i % len(TASKS)])
    return columns


def bench_scoring(n: int) -> list[dict[str, Any]]:
    from trl_mig.metrics import compute_grounding_metrics
    from trl_mig.parsing import parse_answer

    results = []
    for mix in ("model-like", "adversarial"):
        rows = make_rows(n, mix)
        parse = best_of(lambda rows=rows: [parse_answer(o) for o in rows["outputs"]], repeats=3)
        for frame in ("qwen2_vl", "qwen2_5_vl"):
            seconds = best_of(lambda rows=rows, frame=frame: compute_grounding_metrics(
                rows["outputs"], rows["gold"], target_images=rows["target"], image_sizes=rows["sizes"],
                tasks=rows["tasks"], frame=frame), repeats=3)  # fmt: skip
            results.append({"mix": mix, "frame": frame, "n": n, "seconds": round(seconds, 3),
                            "parse_seconds": round(parse, 3), "rows_per_s": round(n / seconds)})  # fmt: skip
    return results


def bench_generation(rows: int, max_new_tokens: int = 32) -> dict[str, Any]:
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from trl_mig.evaluation.runner import hf_generate_fn, run_evaluation
    from trl_mig.evaluation.sources import SchemaSource
    from trl_mig.models.loading import load_processor
    from trl_mig.sampling.generation import HFGenerator
    from trl_mig.schema import features
    from trl_mig.templates import pixel_limits_from_processor
    from trl_mig.testing import tiny_checkpoint

    rng = random.Random(SEED)
    data = []
    for i in range(rows):
        sizes = [(rng.randint(48, 96), rng.randint(48, 96)) for _ in range(rng.randint(2, 3))]
        data.append({"id": str(i), "images": [Image.new("RGB", s, (i * 7 % 255, 90, 160)) for s in sizes],
                     "question": f"Find the object number {i}.", "solution": [[0.1, 0.2, 0.5, 0.6]],
                     "target_image": [rng.randrange(len(sizes))], "image_sizes": [list(s) for s in sizes],
                     "task": "bench", "source": "bench"})  # fmt: skip
    source = SchemaSource(Dataset.from_list(data, features=features()))
    checkpoint = tiny_checkpoint()
    processor = load_processor(str(checkpoint))
    model = AutoModelForImageTextToText.from_pretrained(str(checkpoint)).eval()
    generate = hf_generate_fn(HFGenerator(model, processor, max_new_tokens=max_new_tokens, temperature=0.0), False)
    limits = pixel_limits_from_processor(processor)
    out: dict[str, Any] = {"rows": rows, "max_new_tokens": max_new_tokens}
    answers = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_evaluation(source, generate, Path(tmp) / "warmup", frame="qwen2_5_vl", limits=limits, batch_size=4,
                       gallery=0, progress=False)  # fmt: skip
        for batch_size in (8, 1):
            start = time.perf_counter()
            run_evaluation(source, generate, Path(tmp) / f"b{batch_size}", frame="qwen2_5_vl", limits=limits,
                           batch_size=batch_size, gallery=0, progress=False)  # fmt: skip
            seconds = time.perf_counter() - start
            out[f"batch_{batch_size}_rows_per_s"] = round(rows / seconds, 2)
            lines = (Path(tmp) / f"b{batch_size}" / "predictions.jsonl").read_text().splitlines()
            answers[batch_size] = [json.loads(line)["output"] for line in lines]
    out["ratio"] = round(out["batch_8_rows_per_s"] / out["batch_1_rows_per_s"], 2)
    out["same_answers"] = sum(a == b for a, b in zip(answers[8], answers[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="predictions scored")
    parser.add_argument("--rows", type=int, default=32, help="rows generated by the tiny model")
    parser.add_argument("--output", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    pinning = pin_to_one_core()
    scoring = bench_scoring(args.n)
    generation = bench_generation(args.rows)
    print(format_table(
        ["mix", "frame", "predictions", "seconds", "of which parse_answer", "rows/s"],
        [[r["mix"], r["frame"], f"{r['n']:,}", f"{r['seconds']:.2f}", f"{r['parse_seconds']:.2f}",
          f"{r['rows_per_s']:,}"] for r in scoring],
    ))  # fmt: skip
    print()
    print(format_table(
        ["tiny model, greedy", "batch 8 rows/s", "batch 1 rows/s", "ratio", "same answers"],
        [[f"{generation['rows']} rows, {generation['max_new_tokens']} new tokens", generation["batch_8_rows_per_s"],
          generation["batch_1_rows_per_s"], f"{generation['ratio']}x",
          f"{generation['same_answers']}/{generation['rows']}"]],
    ))  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps({"scoring": scoring, "generation": generation,
                                                 "machine": machine_info(pinning)}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
