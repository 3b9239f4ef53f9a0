"""What an evaluation leaves behind: `results.json`, `results.md`, a per-task bar plot, a gallery, `model-index`.

`results.json` follows DESIGN.md section 4: `{"overall": {key: value}, "tasks": {task: {"n": n, key: value}},
"mig_bench_avg_acc@0.5": x, "flags": {...}, "meta": {...}}` with the project-wide metric keys (fractions in `[0, 1]`).
`model_index` turns it into `huggingface_hub.EvalResult` entries, which `ModelCard` renders as the card's `model-index`
(what the Hub shows as evaluation results); `trl_mig.trainers.cards.add_eval_results` writes them into a card.
Every file is written atomically, so an interrupted run never leaves a half-written `results.json`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io_utils import atomic_write


__all__ = [
    "BENCHMARK_DATASETS",
    "draw_gallery",
    "model_index",
    "plot_task_accuracy",
    "results_markdown",
    "write_results",
]

#: benchmark -> (dataset type, display name) recorded in `model-index`: the Hub id where the benchmark has one
#: (MIG-Bench's annotations and images are on the Hub); MC-Bench is distributed from its project page
BENCHMARK_DATASETS = {
    "mig-bench": ("Michael4933/MIG-Bench", "MIG-Bench"),
    "mc-bench": ("mc-bench", "MC-Bench"),
}
#: columns of the per-task table, in order
TABLE_KEYS = ("acc@0.5", "acc@0.3", "acc@0.7", "strict_acc@0.5", "miou", "parse_fail_rate", "wrong_image_rate")
#: the metric a benchmark is ranked by (bar plot, headline, model-index)
HEADLINE = {"mig-bench": "mig_bench_avg_acc@0.5", "mc-bench": "ap50"}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def headline(results: Mapping[str, Any]) -> tuple[str, float | None]:
    """The benchmark's headline key and value: MIG-Bench's mean of per-task Acc@0.5, MC-Bench's AP50, else Acc@0.5."""
    benchmark = (results.get("meta") or {}).get("benchmark")
    key = HEADLINE.get(benchmark, "acc@0.5")
    if key == "mig_bench_avg_acc@0.5":
        return key, results.get(key)
    return key, (results.get("overall") or {}).get(key)


def results_markdown(results: Mapping[str, Any], images: Sequence[str] = ()) -> str:
    """`results.md`: headline, per-task table, flags, settings, then the pictures (paths relative to the file)."""
    meta = results.get("meta") or {}
    key, value = headline(results)
    extra = [k for k in ("ap50", "image_acc") if k in (results.get("overall") or {})]
    keys = (*extra, *TABLE_KEYS)
    lines = [
        f"# {meta.get('benchmark', 'evaluation')}: {meta.get('model', 'predictions')}",
        "",
        f"**{key}: {_cell(value)}** over {meta.get('n', '?')} rows "
        f"(template `{meta.get('template')}`, frame `{meta.get('frame')}`).",
        "",
        "| task | n | " + " | ".join(keys) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for task, values in sorted((results.get("tasks") or {}).items()):
        lines.append(f"| {task} | {values.get('n')} | " + " | ".join(_cell(values.get(k)) for k in keys) + " |")
    overall = results.get("overall") or {}
    lines.append(f"| **all** | {meta.get('n', '')} | " + " | ".join(_cell(overall.get(k)) for k in keys) + " |")
    flags = {k: v for k, v in (results.get("flags") or {}).items() if v}
    if flags:
        lines += ["", "## Flags", ""]
        for name, value in flags.items():
            shown = value if not isinstance(value, list) or len(value) <= 20 else [*value[:20], f"... ({len(value)})"]
            lines.append(f"- `{name}`: {shown}")
    lines += ["", "## Settings", "", "| setting | value |", "| --- | --- |"]
    for name, value in meta.items():
        if name != "versions":
            lines.append(f"| {name} | {str(value).replace('|', '/')} |")
    versions = meta.get("versions") or {}
    if versions:
        lines.append("| versions | " + ", ".join(f"{k} {v}" for k, v in versions.items()) + " |")
    if images:
        lines += ["", "## Pictures", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in images]
    return "\n".join(lines) + "\n"


def plot_task_accuracy(results: Mapping[str, Any], path: str | os.PathLike, key: str = "acc@0.5") -> Path | None:
    """A bar per task (`key`, default Acc@0.5) with the headline as a line; `None` when there is no task."""
    tasks = results.get("tasks") or {}
    if not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = sorted(tasks)
    values = [tasks[t].get(key) or 0.0 for t in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.6), dpi=120)
    bars = ax.bar(range(len(names)), values, color="#4C72B0")
    for bar, name in zip(bars, names):
        ax.annotate(f"n={tasks[name].get('n')}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
    head_key, head = headline(results)
    if head is not None and head_key in ("mig_bench_avg_acc@0.5", key):
        ax.axhline(head, color="#C44E52", linestyle="--", linewidth=1, label=f"{head_key} {head:.3f}")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(key)
    meta = results.get("meta") or {}
    ax.set_title(f"{meta.get('benchmark', '')} {key} per task ({Path(str(meta.get('model', ''))).name})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    plt.close(fig)
    return path


def _pred_marks(prediction: Mapping[str, Any], row: Mapping[str, Any], n_images: int) -> list[tuple[Any, int]]:
    """Predicted boxes with the image to draw them in: the one named, else the target, else the first."""
    named = prediction.get("pred_image")
    targets = [t for t in (row.get("target_image") or []) if t is not None and t >= 0]
    where = named if named is not None and 0 <= named < n_images else targets[0] if targets else 0
    return [(box, where) for box in prediction.get("pred_boxes") or []]


def draw_gallery(
    source: Any, predictions: Mapping[str, Mapping[str, Any]], output_dir: str | os.PathLike, per_side: int = 4
) -> list[Path]:
    """The `per_side` best and worst answers (by IoU; ties: first in order) with gold (green) and predicted (red)
    boxes drawn on the original images, saved as `best-XX-<id>.png` / `worst-XX-<id>.png`."""
    from ..parsing import completion_text
    from ..trainers.rollout_panels import CAPTION_CHARS, gold_marks
    from ..visualize import grounding_panel

    if per_side <= 0:
        return []
    scored = [(i, predictions[rid]) for i, rid in enumerate(source.ids) if rid in predictions]
    if not scored:
        return []
    order = sorted(scored, key=lambda item: (-float(item[1].get("iou") or 0.0), item[0]))
    best = order[:per_side]
    worst = [item for item in reversed(order) if item not in best][:per_side]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, chosen in (("best", best), ("worst", worst)):
        rows = source.rows([i for i, _ in chosen])
        for k, ((_, prediction), row) in enumerate(zip(chosen, rows)):
            images = row["images"]
            title = f"{label} | {row['id']} ({row.get('task')}) | IoU {float(prediction.get('iou') or 0):.3f}"
            caption = f"{title}\n{completion_text(prediction.get('output', ''))[:CAPTION_CHARS]}"
            panel = grounding_panel(images, gold_marks(row, len(images)), _pred_marks(prediction, row, len(images)),
                                    caption=caption)  # fmt: skip
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}-{k:02d}-{row['id']}")[:80] + ".png"
            atomic_write(output_dir / name, lambda handle, panel=panel: panel.save(handle, format="PNG"))
            paths.append(output_dir / name)
    return paths


def write_results(results: Mapping[str, Any], output_dir: str | os.PathLike, images: Sequence[Path] = ()) -> Path:
    """`results.json` and `results.md` (pictures linked relative to `output_dir`); returns the JSON path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"
    path = atomic_write(output_dir / "results.json", lambda handle: handle.write(text.encode("utf-8")))
    links = [os.path.relpath(p, output_dir) for p in images]
    markdown = results_markdown(results, links)
    atomic_write(output_dir / "results.md", lambda handle: handle.write(markdown.encode("utf-8")))
    return path


def model_index(results: Mapping[str, Any], *, keys: Sequence[str] = ("acc@0.5",)) -> list[Any]:
    """`huggingface_hub.EvalResult` entries for a card's `model-index`: the headline, then `keys` per task.

    Values stay fractions in `[0, 1]`, as in `results.json`. The dataset is the benchmark's Hub id
    (`BENCHMARK_DATASETS`) or, for a schema set, the set it was run on.

    Example:
    ```python
    >>> results = {"overall": {"acc@0.5": 0.5}, "tasks": {"diff": {"n": 2, "acc@0.5": 0.5}},
    ...            "mig_bench_avg_acc@0.5": 0.5, "meta": {"benchmark": "mig-bench"}}
    >>> [(r.metric_name, r.metric_value) for r in model_index(results)]
    [('mig_bench_avg_acc@0.5', 0.5), ('diff acc@0.5', 0.5)]

    ```
    """
    from huggingface_hub import EvalResult

    meta = results.get("meta") or {}
    benchmark = meta.get("benchmark", "schema")
    dataset_type, dataset_name = BENCHMARK_DATASETS.get(benchmark, (str(meta.get("data", benchmark)), benchmark))
    common = {
        "task_type": "image-text-to-text",
        "task_name": "Multi-image grounding",
        "dataset_type": dataset_type,
        "dataset_name": dataset_name,
        "dataset_split": meta.get("split") or "test",
    }
    entries = []
    head_key, head = headline(results)
    if head is not None:
        entries.append(EvalResult(metric_type=head_key, metric_name=head_key, metric_value=round(float(head), 6),
                                  **common))  # fmt: skip
    for task, values in sorted((results.get("tasks") or {}).items()):
        for key in keys:
            if values.get(key) is not None:
                entries.append(EvalResult(metric_type=key, metric_name=f"{task} {key}",
                                          metric_value=round(float(values[key]), 6), **common))  # fmt: skip
    return entries
