"""Benchmark `trl_mig.rewards.iou_reward` on 10,000 mixed completions against a re-open-the-images baseline.

Why: a reward runs once per completion per step inside the training process, so its throughput on one core bounds
how much of a step it eats; the target is > 50,000 completions/s. The baseline does what a popular grounding-RL
repository does: for every completion, re-open each image file with PIL (`Image.open(path).size`) to learn its size,
then score. trl-mig instead reads the `image_sizes` column the builders write. Both score with the same `iou_reward`
(frame `qwen2_5_vl`: absolute pixels of the smart-resized image), and the two reward lists must be identical.

The mix (fixed seed): valid `<think>...</think><answer>{"image": k, "bbox_2d": [...]}</answer>` answers near the
gold box, answers naming the wrong image, multi-box answers, and malformed ones (garbage text, truncated JSON, missing
answer tags, an unclosed thought, NaN coordinates); 2-5 images per row drawn from 64 real JPEG/PNG files of varied
sizes, written to a temporary directory; some rows carry several gold boxes.

Run alone: `python benchmarks/bench_iou_reward.py [--n 10000] [--profile]`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import SEED, best_of, format_table, machine_info, pin_to_one_core
from PIL import Image

from trl_mig.geometry import from_canonical
from trl_mig.rewards import iou_reward


#: The throughput the issue asks of `iou_reward` on one core.
TARGET_PER_S = 50_000
#: Distinct image files the rows draw from.
N_IMAGES = 64

#: Completion kind -> share of the mix.
MIX = {
    "valid": 0.45,
    "wrong_image": 0.08,
    "multi_box": 0.15,
    "garbage": 0.06,
    "truncated_json": 0.06,
    "no_answer_tags": 0.06,
    "unclosed_think": 0.05,
    "nan": 0.05,
    "no_image_named": 0.04,
}

_WORDS = (
    "the object left right top bottom corner image shows a red car person dog near behind between first second "
    "third fourth fifth background foreground looks similar compare both scenes matches description query target"
).split()


@dataclass
class Batch:
    """The columns TRL would pass to a reward, plus the image paths the baseline re-opens."""

    completions: list[str] = field(default_factory=list)
    solution: list[list[tuple[float, float, float, float]]] = field(default_factory=list)
    target_image: list[list[int]] = field(default_factory=list)
    image_sizes: list[list[tuple[int, int]]] = field(default_factory=list)
    image_paths: list[list[str]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def write_images(folder: Path, rnd: random.Random, n: int = N_IMAGES) -> list[tuple[str, tuple[int, int]]]:
    """`n` real image files of distinct sizes (JPEG and PNG, alternating), returned as `(path, (width, height))`.

    Sizes span upscaled (below `min_pixels`) to downscaled (above `max_pixels`) images, so the `qwen2_5_vl`
    conversion exercises every `smart_resize` branch. Flat colours keep the files small and quick to write; PIL
    reads only the header to get `.size`, so content does not change the baseline's cost.
    """
    images: list[tuple[str, tuple[int, int]]] = []
    seen: set[tuple[int, int]] = set()
    while len(images) < n:
        size = (rnd.randint(40, 1800), rnd.randint(40, 1400))
        if size in seen:
            continue
        seen.add(size)
        suffix = ".jpg" if len(images) % 2 == 0 else ".png"
        path = folder / f"img_{len(images):02d}{suffix}"
        color = tuple(rnd.randrange(256) for _ in range(3))
        Image.new("RGB", size, color).save(path)
        images.append((str(path), size))
    return images


def _thought(rnd: random.Random) -> str:
    return " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(15, 60)))


def _jitter(box: Sequence[float], rnd: random.Random, scale: float) -> tuple[float, ...]:
    return tuple(v + rnd.gauss(0.0, scale) for v in box)


def _answer_box(gold: Sequence[float], size: tuple[int, int], rnd: random.Random) -> list[int]:
    """The gold box as a Qwen2.5-VL model would write it (resized pixels), with a little localisation noise."""
    return list(from_canonical(_jitter(gold, rnd, 0.02), "qwen2_5_vl", image_size=size))


def _gold_box(rnd: random.Random) -> tuple[float, float, float, float]:
    x1, y1 = rnd.uniform(0.0, 0.75), rnd.uniform(0.0, 0.75)
    return (x1, y1, min(x1 + rnd.uniform(0.05, 0.4), 1.0), min(y1 + rnd.uniform(0.05, 0.4), 1.0))


def _completion(
    kind: str, gold: Sequence[float], target: int, sizes: list[tuple[int, int]], rnd: random.Random
) -> str:
    think = f"<think>{_thought(rnd)}</think>"
    box = _answer_box(gold, sizes[target], rnd)
    obj = f'{{"image": {target + 1}, "bbox_2d": {box}}}'
    if kind == "valid":
        return f"{think}<answer>{obj}</answer>"
    if kind == "wrong_image":
        other = (target + rnd.randrange(1, len(sizes))) % len(sizes)
        return f'{think}<answer>{{"image": {other + 1}, "bbox_2d": {box}}}</answer>'
    if kind == "multi_box":
        others = [rnd.randrange(len(sizes)) for _ in range(rnd.randint(1, 3))]
        extra = [f'{{"image": {i + 1}, "bbox_2d": {_answer_box(_gold_box(rnd), sizes[i], rnd)}}}' for i in others]
        parts = [obj, *extra] if rnd.random() < 0.5 else [*extra, obj]
        return f"{think}<answer>[{', '.join(parts)}]</answer>"
    if kind == "garbage":
        return "".join(rnd.choice("abcdefghij {}[]<>/,.:0123456789\n") for _ in range(rnd.randint(20, 400)))
    if kind == "truncated_json":
        full = f"{think}<answer>{obj}</answer>"
        return full[: rnd.randint(len(think) + 10, len(full) - 14)]
    if kind == "no_answer_tags":
        return f"{_thought(rnd)} {obj}" if rnd.random() < 0.5 else f"{think} {obj}"
    if kind == "unclosed_think":
        return f"<think>{_thought(rnd)} maybe {box}"
    if kind == "nan":
        return f'{think}<answer>{{"image": {target + 1}, "bbox_2d": [NaN, {box[1]}, {box[2]}, {box[3]}]}}</answer>'
    if kind == "no_image_named":
        return f'{think}<answer>{{"bbox_2d": {box}}}</answer>'
    raise ValueError(f"unknown completion kind {kind!r}")


def make_batch(n: int, images: list[tuple[str, tuple[int, int]]], seed: int = SEED) -> Batch:
    """`n` rows of the mix, each with 2-5 images drawn from `images`; ~10% of rows carry 2-3 gold boxes."""
    rnd = random.Random(seed)
    kinds, weights = zip(*MIX.items())
    batch = Batch()
    for kind in rnd.choices(kinds, weights=weights, k=n):
        chosen = rnd.sample(images, rnd.randint(2, 5))
        sizes = [size for _, size in chosen]
        n_gold = rnd.randint(2, 3) if rnd.random() < 0.1 else 1
        targets = [rnd.randrange(len(sizes)) for _ in range(n_gold)]
        gold = [_gold_box(rnd) for _ in range(n_gold)]
        batch.completions.append(_completion(kind, gold[0], targets[0], sizes, rnd))
        batch.solution.append(gold)
        batch.target_image.append(targets)
        batch.image_sizes.append(sizes)
        batch.image_paths.append([path for path, _ in chosen])
        batch.kinds.append(kind)
    return batch


def score_with_column(batch: Batch) -> list[float | None]:
    """trl-mig: sizes come from the `image_sizes` column, no file is touched."""
    return iou_reward(
        batch.completions, solution=batch.solution, target_image=batch.target_image, image_sizes=batch.image_sizes
    )


def score_reopening_images(batch: Batch) -> list[float | None]:
    """Baseline: re-open every image of every completion to read its size, then score with the same reward.

    `with` closes each file (the original leaves it to the garbage collector, which only adds cost and warnings).
    """
    sizes = []
    for paths in batch.image_paths:
        row = []
        for path in paths:
            with Image.open(path) as img:
                row.append(img.size)
        sizes.append(row)
    return iou_reward(batch.completions, solution=batch.solution, target_image=batch.target_image, image_sizes=sizes)


def split(batch: Batch) -> list[tuple[str, Batch]]:
    """The batch cut by completion kind, to see which kinds cost what.

    Valid answers are the steady state late in training; malformed ones dominate early.
    """
    parts = []
    for kind in MIX:
        rows = [i for i, k in enumerate(batch.kinds) if k == kind]
        if rows:
            columns = [[getattr(batch, name)[i] for i in rows] for name in Batch.__dataclass_fields__]
            parts.append((kind, Batch(*columns)))
    return parts


def profile(batch: Batch, top: int = 25) -> str:
    """cProfile of one `iou_reward` call on the batch, top functions by own time (what to optimise first)."""
    profiler = cProfile.Profile()
    profiler.enable()
    score_with_column(batch)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    return stream.getvalue()


def run(n: int = 10_000, repeats: int = 5, baseline_repeats: int = 3, seed: int = SEED) -> dict[str, Any]:
    """Build the batch and the image files, time both paths, check they agree, return the figures."""
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="trl_mig_bench_") as folder:
        images = write_images(Path(folder), rnd)
        batch = make_batch(n, images, seed)
        # These two calls are also the warm-up (regexes compiled, `smart_resize` cache filled, files in page cache).
        ours = score_with_column(batch)
        if score_reopening_images(batch) != ours:
            raise AssertionError("the baseline and trl-mig disagree on the same completions")
        ours_s = best_of(lambda: score_with_column(batch), repeats=repeats, warmup=0)
        baseline_s = best_of(lambda: score_reopening_images(batch), repeats=baseline_repeats, warmup=0)
        by_kind_s = {kind: best_of(lambda sub=sub: score_with_column(sub), repeats=3) for kind, sub in split(batch)}
    scored = [r for r in ours if r is not None]
    by_kind = {kind: 0.0 for kind in MIX}
    for kind, reward in zip(batch.kinds, ours):
        by_kind[kind] += reward or 0.0
    counts = Counter(batch.kinds)
    return {
        "n": n,
        "completions_per_s": n / ours_s,
        "baseline_completions_per_s": n / baseline_s,
        "ratio": baseline_s / ours_s,
        "seconds": ours_s,
        "baseline_seconds": baseline_s,
        "target_completions_per_s": TARGET_PER_S,
        "meets_target": n / ours_s > TARGET_PER_S,
        "image_files": len(images),
        "images_per_row_mean": sum(map(len, batch.image_paths)) / n,
        "completion_chars_mean": sum(map(len, batch.completions)) / n,
        "mix": dict(sorted(counts.items())),
        "mean_reward": sum(scored) / len(scored),
        "mean_reward_by_kind": {kind: by_kind[kind] / counts[kind] for kind in MIX if counts[kind]},
        "us_per_completion_by_kind": {kind: seconds / counts[kind] * 1e6 for kind, seconds in by_kind_s.items()},
        "repeats": repeats,
        "baseline_repeats": baseline_repeats,
    }


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows for the shared table: benchmark, case, figure, ratio."""
    n = result["n"]
    return [
        ["iou_reward", f"trl-mig, `image_sizes` column, {n:,} completions", f"{result['completions_per_s']:,.0f} /s",
         f"{result['ratio']:.1f}x"],
        ["iou_reward", f"baseline, PIL re-opens each image, {n:,} completions",
         f"{result['baseline_completions_per_s']:,.0f} /s", "1.0x"],
    ]  # fmt: skip


def summary_line(result: dict[str, Any]) -> str:
    """Target check and what the batch held, in one line under the table."""
    verdict = "meets" if result["meets_target"] else "MISSES"
    return (
        f"iou_reward: {verdict} the {result['target_completions_per_s']:,}/s target; same rewards from both paths; "
        f"{result['image_files']} image files, {result['images_per_row_mean']:.2f} images/row, "
        f"{result['completion_chars_mean']:.0f} chars/completion, mean reward {result['mean_reward']:.3f}; "
        f"best of {result['repeats']} (baseline: best of {result['baseline_repeats']})"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="completions per reward call")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is kept)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one iou_reward call")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    pinning = pin_to_one_core()
    result = run(n=args.n, repeats=args.repeats)
    print(f"iou_reward benchmark ({pinning})")
    print(format_table(["benchmark", "case", "throughput", "vs baseline"], table_rows(result)))
    print(summary_line(result))
    print(
        "us/completion by kind:",
        ", ".join(f"{kind} {us:.1f}" for kind, us in result["us_per_completion_by_kind"].items()),
    )
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="trl_mig_bench_") as folder:
            batch = make_batch(args.n, write_images(Path(folder), random.Random(SEED)))
            score_with_column(batch)  # warm the caches, as the timed runs were
            print(profile(batch))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump({"iou_reward": result, "machine": machine_info(pinning)}, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
