"""Scale-out figures: GRPO and the sampler with 1 vs 2 processes, and builder peak memory at 1x, 10x and 100x rows.

Why: users run the stages under `accelerate launch` on many GPUs and build sets of hundreds of thousands of rows. Two
CPU processes on this 2-core machine are the smallest real process group (gloo); the ratio shows the work is shared
(each process does half) rather than duplicated, which a wrong launch does silently. Builder memory must stay flat as
rows grow: a builder that held its rows would need 100x the memory at 100x the rows.

- GRPO: `trl-mig grpo` with `examples/recipes/tiny/grpo.yaml` on a tiny random Qwen2.5-VL and a generated synthetic
  set, `--max_steps 8`, one process, then `accelerate launch --config_file examples/accelerate_configs/cpu_2proc.yaml`.
  Each process has its own batch, so a step of 2 processes trains twice the completions: seconds per step and
  completions per second are both reported (from `trl_mig_run.json`: `train_runtime`, `global_step`, `world_size`).
- Sampler: `trl-mig sample` with `examples/recipes/tiny/sample.yaml` on 128 prompts, 2 samples of up to 32 new
  tokens each, chunks of 8; prompts per
  second over the sampler's own time (`last_run.json` `seconds`: model load, sampling, merge), 1 vs 2 processes; the
  command's wall time (interpreter and `accelerate launch` start included) is recorded beside it.
- Builders: each build in a fresh process (`bench_builders.py --one`), peak RSS over a bare process importing the same
  libraries: `mgrounding` on generated files of 2,000, 20,000 and 200,000 records; `synthetic` at 50, 500 and 5,000
  rows.

Options: `--model-size` (`tiny` 0.2M or `small` 4.5M), `--prompts`, `--max-new-tokens` (sampler and GRPO) and
`--grpo-batch` (GRPO completions per process and step) scale the process figures; the defaults are the tiny recipes'
(the numbers above), at which fixed per-step and per-process costs hide the speed-up. `make bench-scaling` runs the
`small` settings. A compute ceiling (a 512x512 matmul loop, one thread, in 1 and then 2 processes) is measured first:
the stage ratios are read against it.

Run alone: `python benchmarks/bench_scaling.py [--skip-builders] [--output FILE]` (about 10 minutes here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_builders
from _harness import SEED, format_table


ROOT = Path(__file__).resolve().parents[1]
#: prompts the sampler answers (and rows GRPO draws from): enough that sampling, not start-up, is what is timed
PROMPTS = 128
RECIPES = ROOT / "examples" / "recipes" / "tiny"
CPU_2PROC = ROOT / "examples" / "accelerate_configs" / "cpu_2proc.yaml"
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TRL_MIG_DISABLE_PROGRESS": "1"}  # fmt: skip


def _run(processes: int, *args: str) -> float:
    launch = [sys.executable, "-m", "trl_mig.cli"]
    if processes > 1:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC), "-m",
                  "trl_mig.cli"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([*launch, *args], cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} with {processes} process(es) failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def bench_processes(
    work: Path, prompts: int = PROMPTS, size: str = "tiny", new_tokens: int = 32, grpo_batch: int = 2
) -> dict[str, Any]:
    from trl_mig.datasets_builders import synthetic
    from trl_mig.testing import save_tiny_model

    model = save_tiny_model(work / f"base-{size}", "qwen2_5_vl", size=size, seed=SEED)
    data = work / f"data-{prompts}"
    if not data.exists():
        synthetic.build(synthetic.BuildArguments(output_dir=str(data), num_train=prompts, num_test=0, seed=SEED))
    out: dict[str, Any] = {"settings": {"prompts": prompts, "model_size": size, "max_new_tokens": new_tokens,
                                        "grpo_completions_per_process_step": grpo_batch}}  # fmt: skip
    out.update({"grpo": {}, "sample": {}})
    for processes in (1, 2):
        grpo_dir = work / f"grpo-{processes}"
        _run(processes, "grpo", "--config", str(RECIPES / "grpo.yaml"), "--model_name_or_path", str(model),
             "--dataset_name", str(data), "--output_dir", str(grpo_dir), "--max_steps", "8",
             "--max_completion_length", str(new_tokens), "--per_device_train_batch_size", str(grpo_batch))  # fmt: skip
        record = json.loads((grpo_dir / "trl_mig_run.json").read_text())
        steps, runtime, world = record["global_step"], record["train_runtime"], record["world_size"]
        completions = steps * grpo_batch * world  # per_device_train_batch_size completions per process and step
        out["grpo"][processes] = {"world_size": world, "steps": steps, "seconds_per_step": round(runtime / steps, 3),
                                  "completions_per_s": round(completions / runtime, 2)}  # fmt: skip
        seconds = _run(processes, "sample", "--config", str(RECIPES / "sample.yaml"), "--model_name_or_path",
                       str(model), "--dataset_name", str(data), "--output_dir", str(work / f"rl-{processes}"),
                       "--samples_dir", str(work / f"samples-{processes}"), "--max_new_tokens", str(new_tokens),
                       "--chunk_size", "8")  # fmt: skip
        last = json.loads((work / f"samples-{processes}" / "last_run.json").read_text())
        inside = float(last["seconds"])  # the sampler's own time (load, sample, merge), not the interpreter start
        out["sample"][processes] = {"world_size": last.get("world_size"), "prompts": prompts,
                                    "seconds": round(inside, 1), "command_seconds": round(seconds, 1),
                                    "prompts_per_s": round(prompts / inside, 2)}  # fmt: skip
    for stage, key in (("grpo", "completions_per_s"), ("sample", "prompts_per_s")):
        out[stage]["ratio_2_to_1"] = round(out[stage][2][key] / out[stage][1][key], 2)
    return out


_CEILING = """
import sys, time, torch
torch.set_num_threads(1)
a, n, start = torch.randn(512, 512), 0, time.perf_counter()
while time.perf_counter() - start < float(sys.argv[1]):
    a @ a
    n += 1
print(n / (time.perf_counter() - start))
"""


def compute_ceiling(seconds: float = 8.0) -> dict[str, Any]:
    """What this machine gives two independent single-thread processes: a 512x512 matmul loop, alone and twice at
    once. The 2-process ratios of the stages are read against it (a shared or throttled VM gives less than 2x)."""

    def run(copies: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", _CEILING, str(seconds)], stdout=subprocess.PIPE, text=True)
                 for _ in range(copies)]  # fmt: skip
        return [float(p.communicate()[0]) for p in procs]

    one, two = run(1), run(2)
    return {"one_process_per_s": round(one[0], 1), "two_processes_per_s": [round(v, 1) for v in two],
            "ratio_2_to_1": round(sum(two) / one[0], 2)}  # fmt: skip


def bench_memory(work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"mgrounding": {}, "synthetic": {}}
    base = argparse.Namespace(mig_limit=None, embed=True, synthetic_rows=50, mgrounding_records=0)
    baseline = bench_builders._child("baseline", work, base)["peak_rss_mib"]
    results["baseline_peak_rss_mib"] = baseline
    for records in (2_000, 20_000, 200_000):
        folder = work / f"mg-{records}"
        bench_builders.make_mgrounding(folder / "mgrounding", records)
        run = bench_builders._child("mgrounding", folder, base)
        results["mgrounding"][records] = {"rows": run["rows"], "rows_per_second": run["rows_per_second"],
                                          "over_baseline_mib": round(run["peak_rss_mib"] - baseline, 1)}  # fmt: skip
    for rows in (50, 500, 5_000):
        folder = work / f"synthetic-{rows}"
        folder.mkdir()
        run = bench_builders._child("synthetic", folder, argparse.Namespace(**{**vars(base), "synthetic_rows": rows}))
        results["synthetic"][rows] = {"rows": run["rows"], "rows_per_second": run["rows_per_second"],
                                      "over_baseline_mib": round(run["peak_rss_mib"] - baseline, 1)}  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-builders", action="store_true", help="only the 1 vs 2 process figures")
    parser.add_argument("--skip-processes", action="store_true", help="only the builder memory figures")
    parser.add_argument("--output", default=None, help="also write the figures as JSON here")
    parser.add_argument("--prompts", type=int, default=PROMPTS, help="prompts sampled (and rows GRPO draws from)")
    parser.add_argument("--model-size", default="tiny", help="tiny model preset: `tiny` (0.2M) or `small` (4.5M)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="sampler and GRPO completion length")
    parser.add_argument("--grpo-batch", type=int, default=2, help="GRPO completions per process and step (even)")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        if not args.skip_processes:
            report["compute_ceiling"] = ceiling = compute_ceiling()
            print(f"compute ceiling (matmul, 1 thread per process): {ceiling['ratio_2_to_1']}x")
            report["processes"] = procs = bench_processes(
                Path(tmp), args.prompts, args.model_size, args.max_new_tokens, args.grpo_batch
            )
            print(format_table(
                ["stage", "1 process", "2 processes", "ratio (2/1)"],
                [["grpo, completions/s (s/step)",
                  f"{procs['grpo'][1]['completions_per_s']} ({procs['grpo'][1]['seconds_per_step']})",
                  f"{procs['grpo'][2]['completions_per_s']} ({procs['grpo'][2]['seconds_per_step']})",
                  f"{procs['grpo']['ratio_2_to_1']}x"],
                 ["sample, prompts/s", procs["sample"][1]["prompts_per_s"], procs["sample"][2]["prompts_per_s"],
                  f"{procs['sample']['ratio_2_to_1']}x"]],
            ))  # fmt: skip
        if not args.skip_builders:
            report["builders"] = memory = bench_memory(Path(tmp))
            rows = [[name, f"{n:,}", f"{r['rows']:,}", r["rows_per_second"], r["over_baseline_mib"]]
                    for name in ("mgrounding", "synthetic") for n, r in memory[name].items()]  # fmt: skip
            print(format_table(["builder", "input", "rows", "rows/s", "peak MiB over baseline"], rows))
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
