"""`trl_mig.reporting`: a real PNG from real matplotlib, tables with the right numbers, a report folder whose links
resolve after the fact, and nothing half-written left behind."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from trl_mig.io_utils import atomic_write
from trl_mig.reporting import (
    METRIC_COLUMNS,
    pipeline_table_markdown,
    plot_reward_curve,
    print_summary,
    stage_table_markdown,
    write_report,
)


MATPLOTLIB_BLUE = (0x1F, 0x77, 0xB4)  # default colour cycle: C0 is the total reward
MATPLOTLIB_ORANGE = (0xFF, 0x7F, 0x0E)  # C1: the first reward function
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _log_history(steps: int = 6) -> list[dict]:
    """GRPO logging entries shaped like TRL's, plus the entries a real `log_history` also holds."""
    history = [
        {
            "step": step,
            "reward": 0.2 + 0.1 * step,
            "reward_std": 0.05,
            "rewards/format_reward/mean": min(1.0, 0.5 + 0.1 * step),
            "rewards/format_reward/std": 0.1,
            "rewards/iou_reward/mean": 0.05 * step,
            "grounding/acc@0.5": 0.1,
            "loss": 0.01,
        }
        for step in range(1, steps + 1)
    ]
    history.append({"step": steps, "train_runtime": 12.0, "train_loss": 0.01})  # the end-of-training summary
    return history


def _report(reward_curve: list[dict] | None = None) -> dict:
    metrics = {name: 0.0 for name in METRIC_COLUMNS}
    return {
        "stages": {
            "base": {
                "metrics": {**metrics, "acc@0.5": 0.125, "miou": 0.2468, "wrong_image_rate": None},
                "rows_in": 16,
                "rows_out": 16,
                "seconds": 3.14,
            },
            "sft": {
                "metrics": {**metrics, "acc@0.5": 0.5, "miou": 0.4321},
                "rows_in": 16,
                "rows_out": 15,
                "seconds": 2.0,
            },
            "sft_rl": {"metrics": {**metrics, "acc@0.5": 0.6875}, "rows_in": 16, "rows_out": 16, "seconds": 2.26},
        },
        "pipeline": [
            {"step": "data", "rows_in": 0, "rows_out": 64, "seconds": 0.42, "output": "data/train"},
            {"step": "sft", "rows_in": 64, "rows_out": 64, "seconds": 11.95, "output": "checkpoints/sft"},
            {"step": "grpo", "rows_in": 64, "rows_out": 64, "seconds": 30.0, "output": "checkpoints/grpo"},
        ],
        "reward_curve": _log_history() if reward_curve is None else reward_curve,
        "meta": {
            "template": "qwen2_5_vl_grounding",
            "frame": "qwen2_5_vl",
            "pixel_limits": {"min_pixels": 3136, "max_pixels": 50176},
            "versions": {"trl": "1.16.0"},
            "seed": 42,
            "total_seconds": 48.77,
        },
    }


def _has_color(pixels: np.ndarray, color: tuple[int, int, int], tolerance: int = 8) -> bool:
    return bool((np.abs(pixels[..., :3].astype(int) - color) <= tolerance).all(axis=-1).any())


def _linked_files(markdown: str, output_dir: Path) -> list[Path]:
    links = [unquote(link) for link in IMAGE_LINK.findall(markdown)]
    assert all(not Path(link).is_absolute() and "://" not in link for link in links), links
    return [output_dir / link for link in links]


def _no_temp_files(folder: Path) -> None:
    leftovers = [path.name for path in folder.rglob("*") if path.name.startswith(".") or path.suffix == ".tmp"]
    assert leftovers == []


# --- plot_reward_curve ------------------------------------------------------------------------------------------------


def test_plot_reward_curve_writes_a_real_non_blank_png(tmp_path: Path) -> None:
    path = plot_reward_curve(_log_history(), tmp_path / "plots" / "curve.png", title="rewards")
    assert path == tmp_path / "plots" / "curve.png" and path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert 600 <= image.width <= 1200 and 300 <= image.height <= 800  # 7 x 4 inches at dpi 120
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, lines, band: far from a single colour
    assert _has_color(pixels, MATPLOTLIB_BLUE) and _has_color(pixels, MATPLOTLIB_ORANGE)
    _no_temp_files(tmp_path)


def test_plot_reward_curve_skips_gaps_and_works_without_std(tmp_path: Path) -> None:
    history = [
        {"step": 1, "reward": 0.1, "rewards/iou_reward/mean": None},
        {"step": 2, "reward": float("nan")},  # skipped: not a finite reward
        {"step": 3, "reward": 0.4, "rewards/iou_reward/mean": 0.3},
    ]
    path = plot_reward_curve(history, tmp_path / "curve.png")
    assert path is not None
    with Image.open(path) as image:
        image.verify()


@pytest.mark.parametrize(
    "history",
    [[], [{"step": 1, "loss": 0.3}, {"step": 2, "train_runtime": 1.0}], [{"step": 1, "reward": None}]],
)
def test_plot_reward_curve_returns_none_and_writes_nothing_without_rewards(tmp_path: Path, history) -> None:
    assert plot_reward_curve(history, tmp_path / "curve.png") is None
    assert list(tmp_path.iterdir()) == []


def test_import_is_cheap_and_plotting_leaves_pyplot_alone(tmp_path: Path) -> None:
    # In a fresh interpreter: this test session may already hold matplotlib or pyplot.
    code = (
        "import sys, trl_mig.reporting as r\n"
        "assert 'matplotlib' not in sys.modules and 'rich' not in sys.modules, 'heavy import at module level'\n"
        f"assert r.plot_reward_curve([{{'step': 1, 'reward': 0.5}}], {str(tmp_path / 'c.png')!r}) is not None\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c.png").is_file()


# --- markdown tables --------------------------------------------------------------------------------------------------


def test_stage_table_has_one_row_per_stage_with_rounded_numbers_and_dashes() -> None:
    table = stage_table_markdown(_report()["stages"])
    lines = table.splitlines()
    assert lines[0] == "| stage | " + " | ".join(METRIC_COLUMNS) + " | rows_in | rows_out | seconds |"
    assert lines[1].startswith("| --- | ---: |")
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| base", "| sft", "| sft_rl"]  # the report's order
    base = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert base[1] == "0.125" and base[METRIC_COLUMNS.index("miou") + 1] == "0.247"
    assert base[METRIC_COLUMNS.index("wrong_image_rate") + 1] == "–"
    assert base[-3:] == ["16", "16", "3.1"]
    assert "| 0.688 |" in lines[4] and lines[3].endswith("| 16 | 15 | 2.0 |")


def test_stage_table_custom_columns_missing_metrics_and_escaped_names() -> None:
    stages = {"a|b": {"metrics": {"miou": 1}}, "partial": {"rows_in": None}}
    table = stage_table_markdown(stages, columns=("miou", "acc@0.9"))
    assert table.splitlines()[2] == "| a\\|b | 1 | – | – | – | – |"  # an integer stays an integer
    assert table.splitlines()[3] == "| partial | – | – | – | – | – |"


def test_pipeline_table() -> None:
    table = pipeline_table_markdown(_report()["pipeline"] + [{"step": "eval", "seconds": None}])
    lines = table.splitlines()
    assert lines[0] == "| step | rows_in | rows_out | seconds | output |"
    assert lines[1] == "| --- | ---: | ---: | ---: | --- |"  # numbers right-aligned, names and paths left
    assert lines[2] == "| data | 0 | 64 | 0.4 | `data/train` |"
    assert lines[3] == "| sft | 64 | 64 | 11.9 | `checkpoints/sft` |"  # 11.95 is 11.949999... in binary
    assert lines[5] == "| eval | – | – | – | – |"


# --- write_report -----------------------------------------------------------------------------------------------------


def test_write_report_writes_three_files_whose_links_resolve(tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    gallery = output_dir / "gallery panels"  # a space: the link must be quoted and still resolve
    gallery.mkdir(parents=True)
    panels = []
    for index, color in enumerate(["red", "blue"]):
        panels.append(gallery / f"panel_{index}.png")
        Image.new("RGB", (32, 24), color).save(panels[-1])
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 8)).save(outside)
    report = _report()

    written = write_report(report, output_dir, images=[*panels, outside, tmp_path / "missing.png"], title="My run")

    assert written == {
        "json": output_dir / "report.json",
        "markdown": output_dir / "report.md",
        "plot": output_dir / "reward_curve.png",
    }
    assert all(path.is_file() for path in written.values())
    assert json.loads(written["json"].read_text()) == report
    assert written["json"].read_text().startswith('{\n  "stages": {\n    "base"')  # indent 2, the report's key order

    markdown = written["markdown"].read_text()
    assert markdown.startswith("# My run\n")
    assert "template `qwen2_5_vl_grounding`" in markdown and "seed 42" in markdown and "48.8 s" in markdown
    assert stage_table_markdown(report["stages"]) in markdown
    assert pipeline_table_markdown(report["pipeline"]) in markdown
    assert "<details>" in markdown and '"max_pixels": 50176' in markdown and "</details>" in markdown
    assert "](gallery%20panels/panel_0.png)" in markdown and "](../elsewhere.png)" in markdown
    linked = _linked_files(markdown, output_dir)
    assert [path.resolve() for path in linked] == [
        written["plot"].resolve(),
        panels[0].resolve(),
        panels[1].resolve(),
        outside.resolve(),
    ]  # the missing image is left out rather than linked dead
    assert all(path.is_file() for path in linked)
    _no_temp_files(output_dir)


def test_write_report_of_a_partial_run_has_no_plot(tmp_path: Path) -> None:
    report = {"stages": {"base": {"metrics": {"acc@0.5": None}}}, "reward_curve": []}
    written = write_report(report, tmp_path)
    assert set(written) == {"json", "markdown"} and not (tmp_path / "reward_curve.png").exists()
    markdown = written["markdown"].read_text()
    assert "reward_curve.png" not in markdown and "| base | – |" in markdown
    assert json.loads(written["json"].read_text()) == report
    assert write_report({}, tmp_path / "empty")["markdown"].read_text().count("No stage was evaluated") == 1


def test_write_report_overwrites_and_serialises_numpy_scalars(tmp_path: Path) -> None:
    write_report(_report(), tmp_path)
    report = {"stages": {"sft": {"metrics": {"miou": np.float32(0.5)}, "rows_in": np.int64(3)}}}
    written = write_report(report, tmp_path)
    assert json.loads(written["json"].read_text()) == {"stages": {"sft": {"metrics": {"miou": 0.5}, "rows_in": 3}}}
    _no_temp_files(tmp_path)


def test_atomic_write_keeps_the_old_file_and_no_temp_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail_halfway(handle) -> None:
        handle.write(b"{ half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, fail_halfway)
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]


# --- print_summary ----------------------------------------------------------------------------------------------------


def test_print_summary_formats_floats_and_dashes() -> None:
    console = Console(file=io.StringIO(), width=200)
    rows = [
        {"stage": "base", "acc@0.5": 0.125, "miou": 0.24681, "rows": 16},
        {"stage": "[red]sft[/red]", "acc@0.5": None, "miou": 0.5, "rows": 15},
    ]
    print_summary("Demo summary", rows, ["stage", "acc@0.5", "miou", "rows"], console=console)
    text = console.file.getvalue()
    assert "Demo summary" in text
    assert "0.125" in text and "0.247" in text and "0.500" in text and "16" in text
    assert "[red]sft[/red]" in text  # printed as written, not read as markup
    sft_line = next(line for line in text.splitlines() if "sft" in line)
    assert "–" in sft_line and "15" in sft_line


def test_print_summary_defaults_to_stderr(capsys) -> None:
    print_summary("On stderr", [{"x": 1.0}], ["x"])
    captured = capsys.readouterr()
    assert captured.out == "" and "On stderr" in captured.err and "1.000" in captured.err
