"""Run every trl-mig benchmark, print one table and write the figures as JSON (`make bench` calls this).

Why one runner: the figures the README and the issue quote come from one process, pinned to one core, with the same
seed and timing rules (`_harness.py`), so two result files from two machines or two commits can be compared field by
field. Each benchmark module also runs alone (`python benchmarks/bench_box_iou.py`).

Usage: `python benchmarks/run_all.py --output benchmarks/results.json` (about 2.5 minutes on a 2-core machine,
most of it the GRPO step benchmark, which trains three tiny trainers side by side).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench_box_iou
import bench_grpo_step
import bench_iou_reward
from _harness import SEED, format_table, machine_info, pin_to_one_core


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default=str(Path(__file__).with_name("results.json")), help="where to write the JSON figures"
    )
    args = parser.parse_args(argv)

    pinning = pin_to_one_core()
    started = time.perf_counter()
    box = bench_box_iou.run()
    reward = bench_iou_reward.run()
    grpo = bench_grpo_step.run()
    elapsed = time.perf_counter() - started

    results = {
        "box_iou": box,
        "iou_reward": reward,
        "grpo_step": grpo,
        "machine": machine_info(pinning),
        "seed": SEED,
        "elapsed_s": elapsed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    machine = results["machine"]
    print(
        f"trl-mig benchmarks: {pinning}; Python {machine['python']}, numpy {machine['numpy']}, "
        f"Pillow {machine['pillow']}, {machine['cpu_count']} CPUs; seed {SEED}"
    )
    print(
        format_table(
            ["benchmark", "case", "figure", "speed-up"],
            bench_box_iou.table_rows(box) + bench_iou_reward.table_rows(reward) + bench_grpo_step.table_rows(grpo),
        )
    )
    print(bench_box_iou.summary_line(box))
    print(bench_iou_reward.summary_line(reward))
    print(bench_grpo_step.summary_line(grpo))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output} in {elapsed:.1f} s of benchmarking")
    return results


if __name__ == "__main__":
    main()
