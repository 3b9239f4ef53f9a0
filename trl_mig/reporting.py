"""Turn a pipeline report (the `report.json` dict that `trl-mig demo` writes) into files people look at.

The report is a plain, JSON-serialisable dict so that a partial run (a stage missing, a metric `None`) still leaves
something readable; every function here renders what is there and a dash for what is not, never raising on a gap.

Layout of the report::

    {"stages": {"base": {"metrics": {...}, "rows_in": int, "rows_out": int, "seconds": float}, "sft": ..., ...},
     "pipeline": [{"step": "data", "rows_in": int, "rows_out": int, "seconds": float, "output": "path"}, ...],
     "reward_curve": [...],  # TRL's `trainer.state.log_history`, GRPO logging entries only
     "meta": {"template": str, "frame": str, "seed": int, "total_seconds": float, ...}}

matplotlib and rich are imported inside the functions that draw or print, so importing this module stays cheap for
the CLI. Every file is written atomically (a temporary file in the same folder, then `os.replace`), so an interrupted
run never leaves a truncated `report.json` that a later `json.load` would choke on.

Example:
```python
>>> stages = {"base": {"metrics": {"acc@0.5": 0.25, "miou": None}, "rows_in": 8, "rows_out": 8, "seconds": 12.34}}
>>> print(stage_table_markdown(stages, columns=("acc@0.5", "miou")))
| stage | acc@0.5 | miou | rows_in | rows_out | seconds |
| --- | ---: | ---: | ---: | ---: | ---: |
| base | 0.250 | – | 8 | 8 | 12.3 |

```
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .io_utils import atomic_write


__all__ = [
    "METRIC_COLUMNS",
    "pipeline_table_markdown",
    "plot_reward_curve",
    "print_summary",
    "stage_table_markdown",
    "write_report",
]

logger = logging.getLogger(__name__)

METRIC_COLUMNS: tuple[str, ...] = (
    "acc@0.5",
    "strict_acc@0.5",
    "acc@0.3",
    "acc@0.7",
    "miou",
    "format_rate",
    "parse_fail_rate",
    "wrong_image_rate",
)
MISSING = "–"  # en dash: reads as "no value" in a table, unlike "0" or an empty cell
_COMPONENT_KEY = re.compile(r"^rewards/(?P<name>.+)/mean$")
_DPI = 120


def _format_value(value: Any, digits: int = 3) -> str:
    """A table cell: `digits` decimals for reals, integers as they are, the dash for `None`."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def _cell(value: Any, digits: int = 3) -> str:
    """A markdown cell: pipes escaped and newlines flattened, so a stage name cannot break the table."""
    return _format_value(value, digits).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Sequence[int] = (0,)) -> str:
    """A GitHub table; number columns are right-aligned so decimals line up, `text_columns` stay left-aligned."""
    align = ["---" if i in text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(cells) + " |" for cells in (header, align, *rows)]
    return "\n".join(lines)


def _finite(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (log entries may hold `None` or NaN), else `None`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    """`json.dumps` fallback: numpy scalars (metrics computed with numpy) and paths are common in a report."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"report value of type {type(value).__name__} is not JSON serialisable: {value!r}")


def plot_reward_curve(
    log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "GRPO rewards"
) -> Path | None:
    """Plot the GRPO reward per step: the mean total reward (± its std as a band) and each reward function's mean.

    The figure is drawn on a `Figure` with its own Agg canvas rather than through pyplot, so a user's interactive
    backend and pyplot's figure registry are left alone (and nothing leaks when called in a loop).

    Args:
        log_history (`Sequence[Mapping[str, Any]]`): TRL's `trainer.state.log_history` or its GRPO entries; entries
            without `reward` (evaluation, end-of-training summary) are ignored, as are `None` or NaN values.
        path (`str` or `os.PathLike`): where the PNG is written; parent folders are created.
        title (`str`, *optional*, defaults to `"GRPO rewards"`): the figure title.

    Returns:
        `Path` or `None`: the written file, or `None` (and nothing written) when no entry has a `reward`.
    """
    entries = [entry for entry in log_history if _finite(entry.get("reward")) is not None]
    if not entries:
        return None

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [entry.get("step", index) for index, entry in enumerate(entries)]
    figure = Figure(figsize=(7.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()

    rewards = [float(entry["reward"]) for entry in entries]
    (total_line,) = axes.plot(steps, rewards, marker="o", markersize=3, linewidth=2, label="reward (total)")
    band = [
        (step, reward, std)
        for step, reward, entry in zip(steps, rewards, entries)
        if (std := _finite(entry.get("reward_std"))) is not None
    ]
    if band:
        band_steps, band_mean, band_std = zip(*band)
        low = [mean - std for mean, std in zip(band_mean, band_std)]
        high = [mean + std for mean, std in zip(band_mean, band_std)]
        axes.fill_between(band_steps, low, high, color=total_line.get_color(), alpha=0.2, label="reward ± std")

    components = dict.fromkeys(key for entry in entries for key in entry if _COMPONENT_KEY.match(key))
    for key in components:
        points = [
            (step, value) for step, entry in zip(steps, entries) if (value := _finite(entry.get(key))) is not None
        ]
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, marker=".", linewidth=1.2, label=_COMPONENT_KEY.match(key)["name"])

    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel("reward")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return atomic_write(Path(path), lambda handle: figure.savefig(handle, format="png", dpi=_DPI))


def stage_table_markdown(stages: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = METRIC_COLUMNS) -> str:
    """A GitHub markdown table with one row per evaluated stage, in the mapping's order.

    Args:
        stages (`Mapping[str, Mapping[str, Any]]`): `report["stages"]`; each stage holds `metrics`, `rows_in`,
            `rows_out` and `seconds`, any of which may be missing or `None` (shown as a dash).
        columns (`Sequence[str]`, *optional*, defaults to `METRIC_COLUMNS`): the metrics to show, 3 decimals each.

    Returns:
        `str`: the table, without a trailing newline.
    """
    header = ["stage", *columns, "rows_in", "rows_out", "seconds"]
    rows = []
    for name, stage in stages.items():
        metrics = stage.get("metrics") or {}
        rows.append(
            [
                _cell(name),
                *(_cell(metrics.get(column)) for column in columns),
                _cell(stage.get("rows_in")),
                _cell(stage.get("rows_out")),
                _cell(stage.get("seconds"), digits=1),
            ]
        )
    return _markdown_table([_cell(column) for column in header], rows)


def pipeline_table_markdown(pipeline: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub markdown table of the pipeline steps: step | rows_in | rows_out | seconds (1 decimal) | output.

    Args:
        pipeline (`Sequence[Mapping[str, Any]]`): `report["pipeline"]`, one mapping per step, in run order.

    Returns:
        `str`: the table, without a trailing newline.
    """
    rows = []
    for step in pipeline:
        output = step.get("output")
        rows.append(
            [
                _cell(step.get("step")),
                _cell(step.get("rows_in")),
                _cell(step.get("rows_out")),
                _cell(step.get("seconds"), digits=1),
                MISSING if output is None else f"`{_cell(output)}`",
            ]
        )
    return _markdown_table(["step", "rows_in", "rows_out", "seconds", "output"], rows, text_columns=(0, 4))


def _relative_link(target: str | os.PathLike, output_dir: Path) -> str:
    """`target` relative to `output_dir`, with forward slashes and URL-quoted, as a markdown link wants it."""
    try:
        relative = Path(os.path.relpath(Path(target).resolve(), output_dir.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return Path(target).resolve().as_uri()
    return quote(relative, safe="/")


def _summary_line(meta: Mapping[str, Any]) -> str:
    """One line with what identifies the run: template, frame, seed and total time, each only when known."""
    parts = []
    for key, label in (("template", "template"), ("frame", "frame")):
        if meta.get(key) is not None:
            parts.append(f"{label} `{meta[key]}`")
    if meta.get("seed") is not None:
        parts.append(f"seed {meta['seed']}")
    if _finite(meta.get("total_seconds")) is not None:
        parts.append(f"{float(meta['total_seconds']):.1f} s in total")
    return " · ".join(parts)


def write_report(
    report: Mapping[str, Any],
    output_dir: str | os.PathLike,
    *,
    images: Sequence[str | os.PathLike] = (),
    title: str = "trl-mig demo",
) -> dict[str, Path]:
    """Write `report.json`, `reward_curve.png` (when the report has GRPO rewards) and `report.md` into `output_dir`.

    `report.md` links every file relatively, so the folder can be moved, zipped or pushed to the Hub as is.

    Args:
        report (`Mapping[str, Any]`): the pipeline report (see the module docstring); any section may be missing.
        output_dir (`str` or `os.PathLike`): the folder to write into, created when needed.
        images (`Sequence[str | os.PathLike]`, *optional*, defaults to `()`): pictures for the gallery section (for
            example grounding panels); missing files are skipped with a warning rather than linked dead.
        title (`str`, *optional*, defaults to `"trl-mig demo"`): the markdown title.

    Returns:
        `dict[str, Path]`: `"json"` and `"markdown"`, plus `"plot"` when the reward curve was drawn.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False, default=_jsonable) + "\n"
    written = {"json": atomic_write(output_dir / "report.json", lambda handle: handle.write(text.encode("utf-8")))}
    plot = plot_reward_curve(report.get("reward_curve") or [], output_dir / "reward_curve.png")

    meta = report.get("meta") or {}
    stages = report.get("stages") or {}
    pipeline = report.get("pipeline") or []
    sections = [f"# {title}"]
    if summary := _summary_line(meta):
        sections.append(summary)
    sections.append("## Evaluation\n\n" + (stage_table_markdown(stages) if stages else "_No stage was evaluated._"))
    if pipeline:
        sections.append("## Pipeline\n\n" + pipeline_table_markdown(pipeline))
    if plot is not None:
        sections.append(f"## GRPO rewards\n\n![GRPO rewards]({_relative_link(plot, output_dir)})")
    gallery = []
    for image in images:
        if not Path(image).is_file():
            logger.warning("Gallery image %s does not exist; it is left out of report.md.", image)
            continue
        gallery.append(f"![{Path(image).stem}]({_relative_link(image, output_dir)})")
    if gallery:
        sections.append("## Gallery\n\n" + "\n\n".join(gallery))
    if meta:
        meta_json = json.dumps(meta, indent=2, ensure_ascii=False, default=_jsonable)
        sections.append(f"<details>\n<summary>Run metadata</summary>\n\n```json\n{meta_json}\n```\n\n</details>")
    markdown = "\n\n".join(sections) + "\n"
    written["markdown"] = atomic_write(output_dir / "report.md", lambda handle: handle.write(markdown.encode()))
    if plot is not None:
        written["plot"] = plot
    return written


def print_summary(
    title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], console: Any | None = None
) -> None:
    """Print `rows` as a rich table, the summary a long CLI command ends with.

    Cells are passed as `Text`, not markup, so a value such as `"[red]"` prints as written; floats get 3 decimals,
    `None` or a missing key the dash, and columns whose values are all numbers are right-aligned.

    Args:
        title (`str`): the table title.
        rows (`Sequence[Mapping[str, Any]]`): one mapping per row.
        columns (`Sequence[str]`): the keys to show, in order.
        console (`rich.console.Console`, *optional*): where to print; defaults to a console on stderr, so the
            summary never mixes with machine-readable stdout.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for column in columns:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        numeric = bool(values) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
        table.add_column(Text(column), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(Text(_format_value(row.get(column))) for column in columns))
    (console if console is not None else Console(stderr=True)).print(table)
