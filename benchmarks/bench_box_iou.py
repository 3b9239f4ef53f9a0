"""Benchmark `trl_mig.geometry.box_iou` (vectorised) against a per-pair pure-Python loop over `trl_mig.geometry.iou`.

Why: `box_iou` feeds `match_boxes` (multi-box rewards, the metric, the evaluator) and the claim in its issue was a
30x (float64) / 110x (tuned float32) speed-up over a Python loop. The loop calls the project's scalar `iou`, so the
comparison re-implements nothing and doubles as a parity check: the matrices must agree to 1e-5.

The loop costs ~3 us a pair, so by default it is timed on the first 300 rows (300,000 pairs) and scaled per pair to
the full 1,000 x 1,000; the output says so. Boxes are canonical (`[0, 1]`), valid, and rounded to values float32 holds
exactly, so the float64 and float32 inputs carry the same numbers and one loop result checks both.

Run alone: `python benchmarks/bench_box_iou.py [--n 1000] [--loop-rows 300] [--impl module:function]`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from _harness import SEED, best_of, format_table, machine_info, pin_to_one_core

from trl_mig.geometry import box_iou, iou


#: Agreement required between the vectorised matrix and the scalar loop (both dtypes).
TOLERANCE = 1e-5


def make_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` valid canonical `xyxy` boxes (sides 0.01-0.4, so many pairs overlap), exactly representable in float32."""
    corner = rng.uniform(0.0, 0.9, size=(n, 2))
    side = rng.uniform(0.01, 0.4, size=(n, 2))
    boxes = np.concatenate([corner, np.minimum(corner + side, 1.0)], axis=1)
    return boxes.astype(np.float32).astype(np.float64)


def loop_iou_matrix(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]]) -> list[list[float]]:
    """The IoU matrix one pair at a time, through the project's scalar `iou` (the baseline being beaten)."""
    return [[iou(box_a, box_b) for box_b in boxes_b] for box_a in boxes_a]


def resolve_impl(spec: str) -> Callable[..., np.ndarray]:
    """`module:function` -> the function; lets a candidate `box_iou` be timed without editing the package."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--impl needs `module:function`, got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def run(
    n: int = 1000,
    loop_rows: int = 300,
    repeats: int = 10,
    loop_repeats: int = 3,
    impl: Callable[..., np.ndarray] = box_iou,
    seed: int = SEED,
) -> dict[str, Any]:
    """Time the loop, float64 and float32 `impl` on the same `n x n` boxes; check agreement; return the figures."""
    rng = np.random.default_rng(seed)
    a64, b64 = make_boxes(rng, n), make_boxes(rng, n)
    a32, b32 = a64.astype(np.float32), b64.astype(np.float32)
    loop_rows = min(loop_rows, n)
    a_list = [tuple(row) for row in a64[:loop_rows].tolist()]
    b_list = [tuple(row) for row in b64.tolist()]

    loop_measured_s = best_of(lambda: loop_iou_matrix(a_list, b_list), repeats=loop_repeats, warmup=0)
    loop_s = loop_measured_s * n / loop_rows  # per-pair cost is flat, so scale the rows linearly
    float64_s = best_of(lambda: impl(a64, b64), repeats=repeats)
    float32_s = best_of(lambda: impl(a32, b32), repeats=repeats)

    reference = np.asarray(loop_iou_matrix(a_list, b_list))
    out64, out32 = impl(a64, b64), impl(a32, b32)
    if out64.shape != (n, n) or out32.shape != (n, n):
        raise AssertionError(f"expected ({n}, {n}) matrices, got {out64.shape} and {out32.shape}")
    if out32.dtype != np.float32:
        raise AssertionError(f"float32 inputs should give a float32 matrix, got {out32.dtype}")
    diff64 = float(np.abs(out64[:loop_rows] - reference).max())
    diff32 = float(np.abs(out32[:loop_rows].astype(np.float64) - reference).max())
    if not (diff64 < TOLERANCE and diff32 < TOLERANCE):
        raise AssertionError(f"box_iou disagrees with the scalar loop: max |diff| float64={diff64}, float32={diff32}")

    return {
        "n": n,
        "impl": f"{impl.__module__}.{impl.__qualname__}",
        "loop_s": loop_s,
        "loop_rows_timed": loop_rows,
        "loop_measured_s": loop_measured_s,
        "loop_scaled": loop_rows != n,
        "loop_us_per_pair": loop_measured_s / (loop_rows * n) * 1e6,
        "float64_s": float64_s,
        "float32_s": float32_s,
        "speedup_float64": loop_s / float64_s,
        "speedup_float32": loop_s / float32_s,
        "max_abs_diff_float64": diff64,
        "max_abs_diff_float32": diff32,
        "mean_iou": float(reference.mean()),
        "repeats": repeats,
        "loop_repeats": loop_repeats,
    }


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows for the shared table: benchmark, case, figure, speed-up."""
    n, rows = result["n"], result["loop_rows_timed"]
    loop_note = f" (timed on {rows}x{n}, scaled per pair)" if result["loop_scaled"] else ""
    return [
        ["box_iou", f"pure-Python loop over iou(), {n}x{n}{loop_note}", f"{result['loop_s']:.3f} s", "1.0x"],
        ["box_iou", f"box_iou float64, {n}x{n}", f"{result['float64_s'] * 1e3:.2f} ms",
         f"{result['speedup_float64']:.1f}x"],
        ["box_iou", f"box_iou float32, {n}x{n}", f"{result['float32_s'] * 1e3:.2f} ms",
         f"{result['speedup_float32']:.1f}x"],
    ]  # fmt: skip


def summary_line(result: dict[str, Any]) -> str:
    """The parity check and the per-pair loop cost, in one line under the table."""
    return (
        f"box_iou: {result['impl']} agrees with the loop on {result['loop_rows_timed']}x{result['n']} pairs "
        f"(max |diff| float64 {result['max_abs_diff_float64']:.1e}, float32 {result['max_abs_diff_float32']:.1e}); "
        f"loop {result['loop_us_per_pair']:.2f} us/pair; best of {result['repeats']} "
        f"(loop: best of {result['loop_repeats']})"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="boxes per side (an n x n IoU matrix)")
    parser.add_argument("--loop-rows", type=int, default=300, help="rows the pure-Python loop is timed on")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats of box_iou (best is kept)")
    parser.add_argument("--impl", default="trl_mig.geometry:box_iou", help="`module:function` to time")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    pinning = pin_to_one_core()
    result = run(n=args.n, loop_rows=args.loop_rows, repeats=args.repeats, impl=resolve_impl(args.impl))
    print(f"box_iou benchmark ({pinning})")
    print(format_table(["benchmark", "case", "time", "vs loop"], table_rows(result)))
    print(summary_line(result))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump({"box_iou": result, "machine": machine_info(pinning)}, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
