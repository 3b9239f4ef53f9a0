"""`learning.json` (issue 10's layout) and `learning.md` (table + RL reward curves) from the per-seed runs."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


STAGES = ("base", "sft", "sft_rl")
_KEYS = ("acc@0.5", "strict_acc@0.5", "miou", "format_rate", "parse_fail_rate", "wrong_image_rate")


def _overall(results: Mapping[str, Any]) -> dict[str, Any]:
    return results.get("overall", {})


def summarise(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Seed mean of each metric, the per-seed acc@0.5, its spread (sample standard deviation; 0 for one seed) and
    the per-task acc@0.5 averaged over seeds."""
    overall = [_overall(r) for r in per_seed]
    accs = [float(o.get("acc@0.5") or 0.0) for o in overall]
    out: dict[str, Any] = {
        "acc@0.5": round(statistics.fmean(accs), 4),
        "per_seed": [round(a, 4) for a in accs],
        "spread": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
    }
    for key in _KEYS[1:]:
        values = [o.get(key) for o in overall if o.get(key) is not None]
        if values:
            out[key] = round(statistics.fmean(values), 4)
    tasks: dict[str, list[float]] = {}
    for r in per_seed:
        for task, metrics in (r.get("tasks") or {}).items():
            if metrics.get("acc@0.5") is not None:
                tasks.setdefault(task, []).append(metrics["acc@0.5"])
    out["per_task_acc@0.5"] = {t: round(statistics.fmean(v), 4) for t, v in sorted(tasks.items())}
    return out


def constant_box_baseline(test_dir: Path, grid: int = 10) -> dict[str, Any]:
    """The best acc@0.5 one fixed answer (an image number and a box) gets on the held-out split: what "grounds a
    little" must beat. Grid search over boxes on a 1/`grid` lattice and every image number."""
    from trl_mig.datasets_builders.reader import load_schema_dataset
    from trl_mig.geometry import box_iou

    rows = load_schema_dataset(str(test_dir), split="test").select_columns(["solution", "target_image"])
    images = np.array([r["target_image"][0] for r in rows])
    gold = np.array([r["solution"][0] for r in rows], dtype=float)
    edges = np.linspace(0, 1, grid + 1)
    boxes = np.array([(x0, y0, x1, y1) for x0 in edges for x1 in edges if x1 > x0
                      for y0 in edges for y1 in edges if y1 > y0])  # fmt: skip
    hits = np.asarray(box_iou(boxes, gold)) >= 0.5  # boxes x rows
    best = {"acc@0.5": 0.0}
    for image in np.unique(images):
        counts = hits[:, images == image].sum(axis=1)
        k = int(counts.argmax())
        if counts[k] / len(gold) > best["acc@0.5"]:
            best = {"acc@0.5": round(float(counts[k]) / len(gold), 4), "image": int(image) + 1,
                    "box": [round(float(v), 2) for v in boxes[k]]}  # fmt: skip
    return best


def plot_reward_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, curve in curves.items():
        steps = [e.get("step", i) for i, e in enumerate(curve)]
        rewards = [e["reward"] for e in curve]
        if len(rewards) >= 5:  # a 5-point moving average: GRPO's per-step reward is noisy at 2 prompts per step
            kernel = np.ones(5) / 5
            rewards = list(np.convolve(rewards, kernel, mode="valid"))
            steps = steps[2 : 2 + len(rewards)]
        ax.plot(steps, rewards, label=label)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward (format + IoU), 5-step average")
    ax.set_title("RL reward during GRPO")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(name: str, s: Mapping[str, Any]) -> str:
    per_seed = ", ".join(f"{a:.3f}" for a in s["per_seed"])
    return (f"| {name} | **{s['acc@0.5']:.3f}** ± {s['spread']:.3f} | {per_seed} | {s.get('miou', 0):.3f} | "
            f"{s.get('format_rate', 0):.3f} | {s.get('wrong_image_rate', 0):.3f} |")  # fmt: skip


def write_markdown(report: Mapping[str, Any], path: Path, plot_name: str) -> None:
    lines = [
        "# bench-learning: base → SFT → rejection sampling → GRPO, in miniature",
        "",
        f"Held-out: {report['settings']['num_test']} multi-image questions ({report['settings']['tasks']}; 2 to "
        f"{report['settings']['max_images']} images), greedy, template `{report['settings']['template']}`. "
        f"Seeds: {report['settings']['seeds']}. Compute: {report['wall_time_s'] / 60:.1f} min in all, each stage "
        f"timed when it ran: the base's pre-training "
        f"{report['settings']['base_model']['seconds'] / 60:.1f} min (once, cached), per seed "
        + ", ".join(f"{s}: {t / 60:.1f} min" for s, t in report["per_seed_wall_time_s"].items())
        + " (the ablation seed includes its two extra GRPO runs).",
        "",
        "| stage | acc@0.5 (mean ± spread) | per seed | mIoU | format rate | wrong image |",
        "|---|---|---|---|---|---|",
        *[_row(stage, report[stage]) for stage in STAGES],
        "",
        f"Constant-box baseline (the best single fixed answer): acc@0.5 {report['baselines']['constant_box']['acc@0.5']:.3f}.",
        "",
        "The base on its pre-training task (held-out single-image rows, acc@0.5): "
        + ", ".join(f"{k} {v['acc@0.5']:.3f}" for k, v in report["base"]["single_image"].items())
        + ".",
        "",
        "Per task (acc@0.5, seed mean):",
        "",
        "| stage | " + " | ".join(report["sft_rl"]["per_task_acc@0.5"]) + " |",
        "|---|" + "---|" * len(report["sft_rl"]["per_task_acc@0.5"]),
    ]
    for stage in STAGES:
        tasks = report[stage]["per_task_acc@0.5"]
        lines.append(
            f"| {stage} | " + " | ".join(f"{tasks.get(t, 0):.3f}" for t in report["sft_rl"]["per_task_acc@0.5"]) + " |"
        )
    if report.get("ablations"):
        lines += ["", f"Ablations (seed {report['settings']['ablation_seed']}, same GRPO steps):", "",
                  "| RL run | rows | acc@0.5 | format rate |", "|---|---|---|---|"]  # fmt: skip
        for name, a in report["ablations"].items():
            lines.append(f"| {name} | {a.get('rows', '')} | {a['acc@0.5']:.3f} | {a.get('format_rate', 0):.3f} |")
    lines += ["", f"![RL reward curves]({plot_name})", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_report(settings: Mapping[str, Any], seeds: Mapping[int, Mapping[str, Any]], base: Path,
                 base_check: Mapping[str, Any], test_dir: Path, output_dir: Path, wall_time_s: float) -> dict[str, Any]:  # fmt: skip
    """Aggregate the seeds into `learning.json` + `learning.md` + `learning_reward.png` under `output_dir`.

    `base_check` is what the base scores on held-out single-image rows (its pre-training task), kept under
    `base.single_image`; `test_dir` holds the held-out split, for the constant-box baseline."""
    output_dir.mkdir(parents=True, exist_ok=True)
    runs = [seeds[s] for s in sorted(seeds)]
    report: dict[str, Any] = {stage: summarise([r["results"][stage] for r in runs]) for stage in STAGES}
    report["base"]["single_image"] = dict(base_check)
    report["gain_sft_rl_over_sft"] = round(report["sft_rl"]["acc@0.5"] - report["sft"]["acc@0.5"], 4)
    ablations: dict[str, Any] = {}
    for seed, run in seeds.items():
        for name, a in (run.get("ablations") or {}).items():
            ablations[name] = {**summarise([a["results"]]), "rows": a["rows"], "seed": seed}
        if run.get("ablations"):
            ablations["rl_rejection_sampled (main run)"] = {**summarise([run["results"]["sft_rl"]]),
                                                            "rows": run["rl_rows"], "seed": seed}  # fmt: skip
    report["ablations"] = ablations
    report["baselines"] = {"constant_box": constant_box_baseline(Path(test_dir))}
    base_meta = json.loads((base / "pretrain.json").read_text(encoding="utf-8"))
    report["settings"] = {**settings, "base_model": {"path": str(base.name), **base_meta},
                          "per_seed": {str(s): {"timings": r["timings"], "rl_rows": r["rl_rows"],
                                                "sampling": r["sampling"]} for s, r in seeds.items()}}  # fmt: skip
    report["wall_time_s"] = round(wall_time_s, 1)
    report["per_seed_wall_time_s"] = {str(s): r["wall_time_s"] for s, r in seeds.items()}
    curves = {f"seed {s}": r["reward_curve"] for s, r in seeds.items()}
    for seed, run in seeds.items():
        for name, a in (run.get("ablations") or {}).items():
            curves[f"{name} (seed {seed})"] = a["reward_curve"]
    report["reward_curves"] = curves
    plot = output_dir / "learning_reward.png"
    plot_reward_curves(curves, plot)
    (output_dir / "learning.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    write_markdown(report, output_dir / "learning.md", plot.name)
    return report
